"""Datasets (frames folder, zip, video files, corrupt files), the clip sampler, batches, prepare."""

import logging
import os
import zipfile

import cv2
import imageio.v2 as iio
import numpy as np
import pytest

from training.batches import ClipBatches
from training.dataset import DatasetError, VideoDataset, sample_clip_times
from training.prepare import PrepareConfig, prepare
from training.prepare import main as prepare_main


def _frame(v: int, j: int, size: int = 16) -> np.ndarray:
    """A frame whose colour encodes (video v, frame j) so reads can be checked."""
    img = np.zeros([size, size, 3], np.uint8)
    img[..., 0] = 10 * j
    img[..., 1] = 40 * v
    img[: size // 2, : size // 2, 2] = 200  # top-left marker, to check flips
    return img


def _make_frames_folder(root, lengths=(5, 8, 12), size=16):
    for v, n in enumerate(lengths):
        d = root / f"vid{v}"
        d.mkdir(parents=True)
        for j in range(n):
            cv2.imwrite(str(d / f"{j:06d}.png"), _frame(v, j, size)[:, :, ::-1])
    return root


def test_frames_folder_reads_requested_frames(tmp_path):
    ds = VideoDataset(_make_frames_folder(tmp_path / "ds"))
    assert len(ds) == 3 and ds.names == ["vid0", "vid1", "vid2"]
    assert [ds.num_frames(i) for i in range(3)] == [5, 8, 12]
    assert ds.resolution == 16 and ds.labels is None
    x = ds.read_frames(2, [0, 3, 11])
    assert x.shape == (3, 16, 16, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0, 0, 0], [0, 30, 110])
    assert (x[:, 0, 0, 1] == 80).all()
    with pytest.raises(DatasetError, match="out of range"):
        ds.read_frames(0, [5])


def test_zip_equals_folder_and_resizes(tmp_path):
    root = _make_frames_folder(tmp_path / "ds")
    zpath = tmp_path / "ds.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                z.write(p, os.path.relpath(p, root))
        z.writestr("dataset.json", '{"labels": [["vid0", 0], ["vid1", 2], ["vid2", 1]]}')
    a, b = VideoDataset(root), VideoDataset(zpath)
    assert a.names == b.names
    np.testing.assert_array_equal(a.read_frames(1, [2, 7]), b.read_frames(1, [2, 7]))
    assert b.labels.shape == (3, 3) and b.labels[1, 2] == 1
    small = VideoDataset(zpath, resolution=8, max_videos=2)
    assert len(small) == 2 and small.read_frames(0, [1]).shape == (1, 8, 8, 3)


def test_video_files_and_corrupt_file_skipped_with_one_warning(tmp_path, caplog):
    root = tmp_path / "videos"
    root.mkdir()
    frames = [np.full([24, 32, 3], 8 * j, np.uint8) for j in range(10)]
    w = cv2.VideoWriter(str(root / "a.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
    for f in frames:
        w.write(f)
    w.release()
    iio.mimsave(root / "b.gif", [np.full([16, 16, 3], 20 * j, np.uint8) for j in range(6)], duration=0.04)
    (root / "broken.mp4").write_bytes(os.urandom(2000))
    with caplog.at_level(logging.WARNING):
        ds = VideoDataset(root, resolution=16)
    assert ds.names == ["a.avi", "b.gif"]
    warnings = [r for r in caplog.records if "broken.mp4" in r.getMessage()]
    assert len(warnings) == 1
    assert [ds.num_frames(i) for i in range(2)] == [10, 6]
    x = ds.read_frames(0, [7, 2])  # center-cropped 24x32 -> 16x16, order kept
    assert x.shape == (2, 16, 16, 3)
    assert abs(int(x[0].mean()) - 56) <= 3 and abs(int(x[1].mean()) - 16) <= 3
    assert abs(int(ds.read_frames(1, [5]).mean()) - 100) <= 3


def test_missing_and_empty_paths_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        VideoDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no readable videos"):
        VideoDataset(tmp_path / "empty")


@pytest.mark.parametrize("length", [3, 4, 5, 9, 17, 40, 3000])
def test_sampler_distances_and_bounds(length):
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        offset, t = sample_clip_times(length, 3, rng)
        assert t.shape == (3,) and (np.diff(t) > 0).all()
        d = int(t[-1] - t[0])
        assert d in {2, 4, 8, 16, 32} and d <= length - 1
        assert t[0] >= 0 and t[-1] <= min(length, 1024) - 1
        assert 0 <= offset and offset + t[-1] <= length - 1
        assert (t == np.round(t)).all()
        seen.add(d)
        if length <= 1024:
            assert offset == 0
    assert seen == {d for d in (2, 4, 8, 16, 32) if d <= min(length, 1024) - 1}


def test_sampler_fractional_offsets_for_G():
    rng = np.random.default_rng(1)
    ts = [sample_clip_times(50, 3, rng, fractional=True)[1] for _ in range(50)]
    assert any(t[0] != np.round(t[0]) for t in ts)
    for t in ts:
        assert t[-1] <= 49 and np.allclose(np.diff(t), np.round(np.diff(t)))  # integer steps


def test_clip_batches_are_deterministic_per_step(tmp_path):
    ds = VideoDataset(_make_frames_folder(tmp_path / "ds"), xflip=True)
    batches = ClipBatches(ds, batch_size=4, num_frames=3, seed=7)
    a, b, c = batches[5], batches[5], batches[6]
    assert a["real"].shape == (4, 3, 3, 16, 16) and a["real_t"].shape == (4, 3)
    assert a["gen_t"].shape == (4, 3) and a["real_c"].shape == (4, 0)
    for k in a:
        assert (a[k] == b[k]).all()
    assert not (a["gen_t"] == c["gen_t"]).all()
    flips = [batches[s]["real"][:, 0, 2, 0, 0] == 200 for s in range(8)]  # marker at top-left unless flipped
    flips = np.concatenate([f.numpy() for f in flips])
    assert flips.any() and not flips.all()


def test_prepare_frame_strips_to_folder_and_zip(tmp_path, capsys):
    src = tmp_path / "strips" / "0"
    src.mkdir(parents=True)
    for n_frames, name in [(7, "a"), (4, "b"), (2, "short")]:
        strip = np.concatenate([_frame(1, j, 32) for j in range(n_frames)], axis=1)
        cv2.imwrite(str(src / f"{name}.jpg"), strip[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    summary = prepare(str(tmp_path / "strips"), str(tmp_path / "out"), PrepareConfig(resolution=16))
    assert summary.kept == [("0_a", 7), ("0_b", 4)]
    assert [s[0] for s in summary.skipped] == ["0_short"]
    ds = VideoDataset(tmp_path / "out")
    assert ds.names == ["0_a", "0_b"] and ds.resolution == 16
    assert abs(int(ds.read_frames(0, [5])[0, 12, 12, 0]) - 50) <= 4
    rc = prepare_main([str(tmp_path / "strips"), str(tmp_path / "out.zip"), "--resolution", "8",
                       "--max-frames", "4"])
    assert rc == 0 and "kept 3 clips" in capsys.readouterr().out
    dz = VideoDataset(tmp_path / "out.zip")
    assert dz.names == ["0_a_c000", "0_a_c001", "0_b"] and dz.resolution == 8
    assert [dz.num_frames(i) for i in range(3)] == [4, 3, 4]
    rc = prepare_main([str(tmp_path / "strips"), str(tmp_path / "held.zip"), "--resolution", "8",
                       "--exclude", "0_a,0_nonexistent"])
    assert rc == 0 and VideoDataset(tmp_path / "held.zip").names == ["0_b"]


def test_prepare_refuses_existing_destination_and_leaves_nothing_on_failure(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(DatasetError, match="already exists"):
        prepare(str(tmp_path), str(tmp_path / "out"), PrepareConfig(resolution=16))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(DatasetError, match="nothing usable"):
        prepare(str(tmp_path / "junk"), str(tmp_path / "o2"), PrepareConfig(resolution=16))
    assert sorted(os.listdir(tmp_path)) == ["junk", "out"]
