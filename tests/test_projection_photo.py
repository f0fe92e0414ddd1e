"""Real-photo input handling: EXIF rotation, alpha, grayscale, 16-bit, odd sizes, junk files, face crop."""

import io

import numpy as np
import pytest
from PIL import Image

from projection.photo import PhotoError, face_crop, load_photo, open_image, square


def _two_tone(w=40, h=20):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)  # left half red
    arr[:, w // 2:] = (0, 0, 255)  # right half blue
    return arr


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(_two_tone())
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=95)
    upright = open_image(path)
    assert upright.size == (20, 40)  # portrait after rotation
    arr = load_photo(path, 16, fit="pad")
    top, bottom = arr[1, 8].astype(int), arr[-2, 8].astype(int)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((32, 32, 4), np.uint8)
    arr[:, :16] = (0, 255, 0, 255)  # opaque green left, fully transparent right
    path = tmp_path / "alpha.png"
    Image.fromarray(arr, "RGBA").save(path)
    out = load_photo(path, 16)
    assert out.shape == (16, 16, 3)
    assert tuple(out[8, 2]) == (0, 255, 0) and tuple(out[8, 13]) == (255, 255, 255)


def test_grayscale_and_16bit(tmp_path):
    Image.fromarray(np.full((20, 20), 77, np.uint8), "L").save(tmp_path / "g.png")
    g = load_photo(tmp_path / "g.png", 16)
    assert g.shape == (16, 16, 3) and (g == 77).all()
    arr16 = np.full((20, 20), 65535, np.uint16)
    arr16[:, :10] = 0
    Image.fromarray(arr16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_photo(tmp_path / "g16.png", 20)
    assert out[10, 2].tolist() == [0, 0, 0] and out[10, 17].tolist() == [255, 255, 255]  # rescaled, not clipped
    gray1 = load_photo(tmp_path / "g.png", 8, channels=1)
    assert gray1.shape == (8, 8, 1)


def test_any_size_and_aspect(tmp_path):
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[:, 500:3500] = 200  # the centre square (x 500..3500) is uniformly light
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=90)
    out = load_photo(tmp_path / "big.jpg", 16)
    assert out.shape == (16, 16, 3) and abs(int(out.mean()) - 200) <= 3  # center crop drops the dark sides
    padded = load_photo(tmp_path / "big.jpg", 16, fit="pad")
    assert padded.shape == (16, 16, 3) and padded.mean() < out.mean()
    Image.fromarray(np.full((10, 10, 3), 9, np.uint8)).save(tmp_path / "tiny.png")
    assert load_photo(tmp_path / "tiny.png", 32).shape == (32, 32, 3)
    assert load_photo(np.random.rand(5, 7, 3), 8).shape == (8, 8, 3)  # float array in [0, 1]
    buf = io.BytesIO()
    Image.fromarray(_two_tone()).save(buf, format="PNG")
    assert load_photo(buf.getvalue(), 8).shape == (8, 8, 3)  # raw bytes (an upload)
    assert square(Image.fromarray(_two_tone()), "pad").size == (40, 40)


def test_junk_inputs_give_clear_errors(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a picture")
    with pytest.raises(PhotoError, match="not a readable image"):
        load_photo(tmp_path / "notes.jpg", 16)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(PhotoError, match="empty"):
        load_photo(tmp_path / "empty.jpg", 16)
    with pytest.raises(PhotoError, match="does not exist"):
        load_photo(tmp_path / "missing.png", 16)
    with pytest.raises(PhotoError, match="fit"):
        load_photo(np.zeros((4, 6, 3), np.uint8), 4, fit="stretch")
    with pytest.raises(PhotoError, match="array"):
        load_photo(np.zeros((4, 6, 2), np.uint8), 4)


def test_face_crop_squares_the_box_like_the_faceforensics_preprocessing():
    img = Image.fromarray(np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8))
    crop = face_crop(img, (20, 30, 40, 70))  # 20 wide, 40 tall -> widened to 40 around the centre
    assert crop.size == (40, 40)
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(img)[30:70, 10:50])
    edge = face_crop(img, (60, 0, 80, 40))  # runs past the right border -> padded, still square
    assert edge.size == (40, 40)
    assert face_crop(img, (20, 30, 40, 70), margin=0.25).size == (60, 60)


def test_face_detection_finds_nothing_on_a_blank_image_or_explains_why_it_cannot():
    import cv2

    from projection.photo import detect_face

    blank = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    if hasattr(cv2, "CascadeClassifier"):
        assert detect_face(blank) is None
    else:  # OpenCV 5 wheels dropped the Haar detector: the error must say so and what to do
        with pytest.raises(PhotoError, match="Haar face detector.*opencv-python-headless<5"):
            detect_face(blank)
