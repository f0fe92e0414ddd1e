"""Studio handlers called directly on a tiny model: scrubbing, renders and exports, grid, uploads, projection
+ animation, edits, the trainer process, model loading, and errors as messages."""

import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

import gradio as gr
import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from core.generator import z_from_seed
from core.motion import Motion
from core.styles import style_offsets
from projection.photo import to_tensor
from projection.testing import TinyLPIPS
from studio import backend as backend_mod
from studio import tab_animate, tab_edit, tab_generate, tab_model, tab_train, training_runs
from studio.backend import Backend
from studio.common import display, ui_errors
from studio.inputs import StudioError, parse_seeds
from studio.testing import tiny_backend, tiny_checkpoint, write_bad_uploads, write_photo, write_video_zip
from studio.training_runs import TrainingError, TrainingProcess, error_from_log
from studio.uploads import UploadError, check_image, extract_zip


@pytest.fixture(scope="module")
def be(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # this module's own weights cache (global directions are cached)
        mp.setenv("SGV_CACHE", str(tmp_path_factory.mktemp("cache")))
        b = tiny_backend(tmp_path_factory.mktemp("studio"))
        yield b
        b.training.stop(timeout=10)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return write_bad_uploads(tmp_path_factory.mktemp("bad"))


MP4_ERR = 15  # mean |error| (of 255 levels) H.264 leaves on these 16 px frames (measured ~7-12)


def _mp4(path) -> np.ndarray:
    return np.stack(imageio.mimread(path, format="FFMPEG")).astype(float)


def _err(a, b) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


def _assert_shows(actual, expected, candidates, what):
    """An mp4 frame/cell is near what it should show and nearer to it than to every other candidate."""
    errs = [_err(actual, c) for c in candidates]
    own = _err(actual, expected)
    assert own < MP4_ERR and own <= min(errs), (what, own, errs)


def _from_photo(G, ws, motion_seed: int, t: float) -> np.ndarray:
    """The Animate tab's frame: motion seed `motion_seed` passing through motion seed 0's frame at t = 0."""
    from core.render import to_uint8

    with torch.no_grad():
        motion = Motion.from_seeds([motion_seed], origin=(0, 0.0))
        img = G.synthesis(ws, torch.tensor([[t]], dtype=torch.float64), motion)
    return to_uint8(img[0, 0])


def _halves(img: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The two 16 px images of display(side_by_side(a, b)) (gap 4, upscaled k times), back at 16 px."""
    small = img[::k, ::k]
    return small[:, :16], small[:, 20:36]


def test_scrub_frame_is_one_synthesis_at_fractional_t(be):
    t = be.model_time(1.37, 0.0, 1.0)  # 1.37 s at 25 fps = model frame 34.25
    assert t == pytest.approx(34.25)
    img = tab_generate.scrub(be, 3, 5, 0.7, 1.37, 0, 1)
    raw = be.frame(3, 5, 0.7, t)
    assert raw.shape == (16, 16, 3) and raw.dtype == np.uint8
    assert np.array_equal(img, display(raw)) and img.shape[0] >= 256
    with torch.no_grad():  # parity with the core model called directly
        ws = be.G.mapping(torch.from_numpy(np.random.RandomState(3).randn(1, be.G.z_dim)).float(), None,
                          truncation_psi=0.7)
        ref = be.G.synthesis(ws, torch.tensor([[34.25]], dtype=torch.float64), Motion.from_seeds([5]))
    ref_u8 = ((ref[0, 0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(raw, ref_u8)
    assert np.array_equal(tab_generate.scrub(be, 3, 5, 0.7, 1.37, 0, 1), img)  # deterministic
    assert not np.array_equal(be.frame(3, 5, 0.7, 34.0), raw)  # fractional t is really used


def test_time_offset_slowmo_and_far_time(be):
    assert be.model_time(2.0, 60, 2.0) == pytest.approx(60 * 60 * 25 + 25.0)
    far = tab_generate.scrub(be, 0, 0, 1.0, 0.5, 60, 1)
    assert np.array_equal(far, display(be.frame(0, 0, 1.0, 60 * 60 * 25 + 12.5)))  # minute 60 + 0.5 s
    assert _err(far, tab_generate.scrub(be, 0, 0, 1.0, 0.5, 0, 1)) > 5  # another moment, another frame
    # 2x slow motion: output second 1.0 shows what second 0.5 shows at normal speed
    assert np.array_equal(tab_generate.scrub(be, 0, 0, 1.0, 1.0, 0, 2), tab_generate.scrub(be, 0, 0, 1.0, 0.5, 0, 1))
    with pytest.raises(StudioError):
        be.model_time(1.0, -1.0, 1.0)


def test_ws_cache_per_seed_and_truncation(be):
    a = be.ws_for(1, 0.5)
    assert be.ws_for(1, 0.5) is a
    assert not torch.equal(be.ws_for(1, 1.0), a)
    assert a.shape == (1, be.G.num_ws, be.G.w_dim)
    with torch.no_grad():  # the content seed's z through the mapping, truncated by psi
        ref = be.G.mapping(z_from_seed(1, be.G.z_dim), None, truncation_psi=0.5)
    assert torch.equal(a, ref)


def test_render_exports_every_format(be):
    from core.latent import load_latent

    video, files = tab_generate.render(be, 2, 1, 0.7, 0, 10, 1, 1.0, ["mp4", "gif", "png", "npz"], "s1")
    by_ext = {p.rsplit(".", 1)[1]: p for p in files}
    assert set(by_ext) == {"mp4", "gif", "zip", "npz"} and video == by_ext["mp4"]
    assert all(os.path.dirname(p) == str(be.session_dir("s1")) for p in files)
    # 1 s at 10 fps: model times 0, 2.5, ..., 22.5, each the scrubbed frame of that moment
    expected = [be.frame(2, 1, 0.7, j * 2.5) for j in range(10)]
    with zipfile.ZipFile(by_ext["zip"]) as z:
        names = sorted(z.namelist())
        pngs = [imageio.imread(z.read(n))[..., :3] for n in names]
    assert names == [f"{j:06d}.png" for j in range(10)]
    # lossless: the frames themselves; the render batches its frames, the scrubber draws one at a time, and
    # on some CPUs the two round a rare value differently (seen: one value off by 1 in 2 of 10 frames)
    diff = np.abs(np.stack(pngs).astype(int) - np.stack(expected))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
    gif = np.stack(imageio.mimread(by_ext["gif"]))[..., :3]
    assert gif.shape == (10, 16, 16, 3) and _err(gif, expected) < 2  # palette of a few colours
    reader = imageio.get_reader(video, format="FFMPEG")
    assert reader.get_meta_data()["codec"] == "h264" and reader.get_meta_data()["fps"] == 10
    reader.close()
    frames = _mp4(video)
    assert frames.shape == (10, 16, 16, 3)
    for j, f in enumerate(frames):  # in order, each near its own moment
        _assert_shows(f, expected[j], expected, f"mp4 frame {j}")
    latent = load_latent(by_ext["npz"])
    assert torch.equal(latent.ws, be.ws_for(2, 0.7)) and latent.motion_seed == 1 and latent.t == 0.0


def test_grid_rows_share_motion_columns_share_content(be):
    path = tab_generate.grid(be, "0-2", "4, 5", 0.7, 0, 5, 1, 0.4, "s1")
    frames = _mp4(path)
    assert frames.shape == (2, 32, 48, 3)  # 0.4 s at 5 fps: model times 0 and 5
    for j, t in enumerate((0.0, 5.0)):
        cells = {(c, m): be.frame(c, m, 0.7, t) for c in (0, 1, 2) for m in (4, 5)}
        for r, m in enumerate((4, 5)):  # row r: motion seed m; column c: content seed c
            for c in (0, 1, 2):
                cell = frames[j, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16]
                _assert_shows(cell, cells[c, m], list(cells.values()), f"frame {j} row {r} column {c}")


def test_bad_generate_inputs_are_messages(be):
    messages = []
    for call in (lambda: tab_generate.scrub(be, -1, 0, 0.7, 0, 0, 1),
                 lambda: tab_generate.scrub(be, 1.5, 0, 0.7, 0, 0, 1),
                 lambda: tab_generate.render(be, 0, 0, 0.7, 0, 25, 1, 0, ["mp4"]),
                 lambda: tab_generate.render(be, 0, 0, 0.7, 0, 25, 1, 1, []),
                 lambda: tab_generate.grid(be, "a,b", "0", 0.7, 0, 25, 1, 1)):
        with pytest.raises(gr.Error) as err:
            ui_errors(call)()
        messages.append(err.value.message)
    assert messages == ["content seed must be a whole number in 0 .. 2147483647, got -1",
                        "content seed must be a whole number in 0 .. 2147483647, got 1.5",
                        "duration (s) must be in 0.01 .. 60, got 0",
                        "pick at least one export format of mp4, gif, png, npz",
                        "content seeds: 'a' is not a whole number or a range like 3-6"]
    assert parse_seeds("0, 3, 5-7") == [0, 3, 5, 6, 7]


def test_unexpected_errors_are_summarised_not_tracebacks():
    @ui_errors
    def boom():
        raise KeyError("oops")

    with pytest.raises(gr.Error) as err:
        boom()
    assert "still running" in err.value.message and "KeyError" in err.value.message


def test_bad_uploads_get_clear_messages(be, bad, tmp_path):
    expected = {"text_as_jpg": "not a readable image", "empty": "empty", "huge": "megapixels"}
    for key, text in expected.items():
        with pytest.raises(UploadError, match=text):
            check_image(bad[key])
        with pytest.raises(gr.Error, match=text):
            ui_errors(tab_animate.preview)(be, str(bad[key]), False)
    with pytest.raises(UploadError, match="not a zip"):
        extract_zip(bad["not_a_zip"], tmp_path / "x")
    with pytest.raises(gr.Error, match="no videos"):
        ui_errors(tab_train.start)(be, "", str(bad["zip_without_videos"]), "tiny", "auto", 1, 1)


def _has_face_detector() -> bool:
    import cv2

    xml = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""), "haarcascade_frontalface_default.xml")
    return hasattr(cv2, "CascadeClassifier") and os.path.isfile(xml)


def test_photo_preview_and_face_crop(be, tmp_path):
    from PIL import Image

    photo = write_photo(tmp_path / "p.png")
    target = tab_animate.load_target(be, str(photo), face_crop=False)
    # the square 48 px photo at the model's 16 px, Lanczos-resized, and shown upscaled
    assert np.array_equal(target, np.asarray(Image.open(photo).convert("RGB").resize((16, 16), Image.LANCZOS)))
    assert np.array_equal(tab_animate.preview(be, str(photo), False), display(target))
    assert tab_animate.preview(be, None, False) is None
    if _has_face_detector():  # no face in the photo: the whole photo is used
        assert np.array_equal(tab_animate.load_target(be, str(photo), face_crop=True), target)
    else:  # an OpenCV without its Haar detector: a message saying what to install
        with pytest.raises(gr.Error, match="Haar face detector"):
            ui_errors(tab_animate.preview)(be, str(photo), True)


def test_animate_reports_progress_then_projection_and_animations(be, tmp_path):
    from core.latent import load_latent

    photo = write_photo(tmp_path / "p.png")
    target = tab_animate.load_target(be, str(photo), face_crop=False)
    outs = list(tab_animate.animate(be, str(photo), False, "W+", 4, "0, 1, 2", seconds=0.4, fps=10, fit=False))
    # Live progress: "step k/4" with k rising to 4 (queued previews may be merged), each preview showing
    # the target on the left.
    progress = outs[:-2]
    steps = [int(re.fullmatch(r"Projecting \(W\+\): step (\d)/4, LPIPS \d\.\d{3}", o["status"]).group(1))
             for o in progress]
    assert steps and steps == sorted(set(steps)) and steps[-1] == 4, steps
    assert all(np.array_equal(_halves(o["preview"], 8)[0], target) for o in progress)
    summary = r"Projection LPIPS \d\.\d{3}, PSNR -?\d+\.\d dB; generator not fitted"
    assert re.fullmatch(summary + r"\. Animating 3 motion seeds\.\.\.", outs[-2]["status"]), outs[-2]["status"]
    last = outs[-1]
    assert re.fullmatch(r"Done\. " + summary + r"; 3 animations \(motion seeds 0, 1, 2\)\.", last["status"]), \
        last["status"]
    state = last["state"]
    ws = torch.as_tensor(state["ws"])
    assert ws.shape == (1, be.G.num_ws, be.G.w_dim) and state["motion_seed"] == 0 and state["t"] == 0.0
    assert state["source"] == "projected photo"
    # target | reconstruction: the reconstruction is the projected latent rendered at t = 0, motion seed 0
    left, right = _halves(last["comparison"], 8)
    assert np.array_equal(left, target) and np.array_equal(right, be.frame(0, 0, 1.0, 0.0, ws=ws))
    # the video: that latent animated with motion seeds 0, 1, 2 side by side (0.4 s at 10 fps)
    frames = _mp4(last["video"])
    assert frames.shape == (4, 16, 48, 3)
    for j in range(4):  # every motion passes through the photo's frame (motion seed 0 at t = 0)
        tiles = [_from_photo(be.G, ws, s, j * 2.5) for s in (0, 1, 2)]
        for s in (0, 1, 2):
            _assert_shows(frames[j, :, s * 16:(s + 1) * 16], tiles[s], tiles, f"frame {j} motion seed {s}")
    assert np.array_equal(_from_photo(be.G, ws, 2, 0.0), be.frame(0, 0, 1.0, 0.0, ws=ws))
    latent = load_latent(last["latent"])
    assert torch.equal(latent.ws, ws) and latent.motion_seed == 0 and latent.mode == "w+"


def test_animate_fits_the_generator_to_the_photo(be, tmp_path):
    """Pivotal tuning on (the default): a tuning phase with live previews, a reconstruction closer to the
    photo than the projection's, animations and the latent file rendered from the tuned weights, and the
    loaded model untouched."""
    from core.latent import latent_generator, load_latent

    photo = write_photo(tmp_path / "p.png")
    target = tab_animate.load_target(be, str(photo), face_crop=False)
    weights = {k: v.clone() for k, v in be.G.state_dict().items()}
    outs = list(tab_animate.animate(be, str(photo), False, "W+", 4, "0, 1", seconds=0.4, fps=10, tune_steps=30))
    tuning = [o for o in outs if "Fitting the generator" in o["status"]]
    assert tuning and re.search(r"step 30/30, LPIPS \d\.\d{3}$", tuning[-1]["status"]), tuning[-1]["status"]
    last = outs[-1]
    m = re.fullmatch(r"Done\. Projection LPIPS (\d\.\d{3}), PSNR -?\d+\.\d dB; fitted generator: LPIPS (\d\.\d{3}), "
                     r"PSNR -?\d+\.\d dB; 2 animations \(motion seeds 0, 1\)\.", last["status"])
    assert m and float(m.group(2)) < float(m.group(1)), last["status"]
    assert all(torch.equal(v, weights[k]) for k, v in be.G.state_dict().items())  # the loaded model is untouched
    state = last["state"]
    ws = torch.as_tensor(state["ws"])
    G_tuned = be.generator_for(state)
    assert G_tuned is not be.G
    tuned_frame = be.frame(0, 0, 1.0, 0.0, ws=ws, G=G_tuned)
    left, right = _halves(last["comparison"], 8)
    assert np.array_equal(left, target) and np.array_equal(right, tuned_frame)
    lp = TinyLPIPS()
    assert float(lp(to_tensor(tuned_frame), to_tensor(target))) < float(
        lp(to_tensor(be.frame(0, 0, 1.0, 0.0, ws=ws)), to_tensor(target)))
    frames = _mp4(last["video"])  # the animations come from the tuned generator
    tiles = [_from_photo(G_tuned, ws, s, 7.5) for s in (0, 1)] + [_from_photo(be.G, ws, s, 7.5) for s in (0, 1)]
    for s in (0, 1):
        _assert_shows(frames[3, :, s * 16:(s + 1) * 16], tiles[s], tiles, f"motion seed {s}")
    latent = load_latent(last["latent"])  # the latent file references the tuned weights
    assert latent.tuned_weights == str(Path(state["tuned"]).resolve())
    with torch.no_grad():
        G_file = latent_generator(latent, be.G)
        times = torch.zeros(1, 1, dtype=torch.float64)
        assert torch.equal(G_file.synthesis(ws, times, [0]), G_tuned.synthesis(ws, times, [0]))


def test_animate_cancel_during_tuning_saves_nothing(be, tmp_path):
    photo = write_photo(tmp_path / "p.png")
    gen = tab_animate.animate(be, str(photo), False, "W", 2, "0", session="c2", tune_steps=500)
    for out in gen:
        if "Fitting the generator" in out["status"]:
            break
    before = set(be.session_dir("c2").iterdir())
    be.cancel("c2")
    rest = list(gen)
    m = re.fullmatch(r"Cancelled after (\d+) tuning steps; nothing was saved\.", rest[-1]["status"])
    assert m and int(m.group(1)) < 500 and "video" not in rest[-1]
    assert set(be.session_dir("c2").iterdir()) == before


def test_animate_cancel_stops_the_projection(be, tmp_path):
    photo = write_photo(tmp_path / "p.png")
    gen = tab_animate.animate(be, str(photo), False, "W", 200, "0", session="c1", fit=True)
    first = next(gen)
    assert "step" in first["status"]
    be.cancel("c1")
    before = set(be.session_dir("c1").iterdir())
    rest = list(gen)
    m = re.fullmatch(r"Cancelled after (\d+) projection steps\.", rest[-1]["status"])
    assert m and int(m.group(1)) < 200 and "video" not in rest[-1] and "latent" not in rest[-1]
    assert set(be.session_dir("c1").iterdir()) == before  # no video and no latent written


def _edited_frames(be, latent, times):
    with style_offsets(be.G, latent.style_offsets):
        return [be.frame(0, latent.motion_seed, 1.0, t, ws=latent.ws) for t in times]


def _check_edit(be, out, source_ws, motion_seed, t, method, prompt, frames):
    """The last update of an edit: its status, before | after, the latent file, the video of the edit."""
    from core.latent import load_latent

    assert re.fullmatch(rf"'{prompt}' \({method}\): CLIP similarity -?\d\.\d{{3}} -> -?\d\.\d{{3}} in .+ s\.",
                        out["status"]), out["status"]
    latent = load_latent(out["latent"])
    assert latent.motion_seed == motion_seed and latent.t == t and latent.mode == "w+"
    if method == "global directions":  # the latent stays, style offsets carry the edit
        assert torch.equal(latent.ws, source_ws) and latent.style_offsets
    else:  # latent optimization moves the latent itself
        assert latent.style_offsets == {} and float((latent.ws - source_ws).abs().max()) > 1e-3
    before_frame = be.frame(0, motion_seed, 1.0, t, ws=source_ws)
    after_frame = _edited_frames(be, latent, [t])[0]
    before, after = _halves(out["before_after"], 8)
    assert np.array_equal(before, before_frame) and np.array_equal(after, after_frame)
    assert _err(after_frame, before_frame) > 5  # the edit is applied, visibly
    video = _mp4(out["video"])
    times = [t + j * 2.5 for j in range(frames)]
    edited = _edited_frames(be, latent, times)
    plain = [be.frame(0, motion_seed, 1.0, s, ws=source_ws) for s in times]
    assert video.shape == (frames, 16, 16, 3)
    for j in range(frames):  # every frame carries the edit
        _assert_shows(video[j], edited[j], [edited[j], plain[j]], f"edit video frame {j}")


@pytest.mark.parametrize("method", tab_edit.METHODS)
def test_edit_on_generated_and_projected_frames(be, method):
    outs = list(tab_edit.edit(be, "a smiling face", method, "generated frame", 1, 2, 0.7, 3.5, None,
                              strength=6, beta=0.0, steps=3, seconds=0.4, fps=10))
    progress = [o["status"] for o in outs[:-1]]
    if method == "global directions":
        assert progress and all(s.startswith("Measuring each style channel's CLIP direction") for s in progress)
    else:
        assert progress and progress[-1].startswith("Optimizing: step 3/3, loss ")
    _check_edit(be, outs[-1], be.ws_for(1, 0.7), 2, 3.5, method, "a smiling face", frames=4)
    with pytest.raises(StudioError, match="no projected photo"):
        list(tab_edit.edit(be, "x", method, "projected photo", 0, 0, 0.7, 0.0, None))
    state = {"ws": be.ws_for(7, 1.0).numpy(), "motion_seed": 3, "t": 0.0}
    outs = list(tab_edit.edit(be, "blue sky", method, "projected photo", 0, 0, 0.7, 0.0, state, strength=6, beta=0.0,
                              steps=2, seconds=0.2, fps=10))
    _check_edit(be, outs[-1], be.ws_for(7, 1.0), 3, 0.0, method, "blue sky", frames=2)


def test_edit_without_clip_weights_shows_the_resolvers_message(be, tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path))
    monkeypatch.delenv("SGV_CLIP_WEIGHTS", raising=False)
    # An offline studio (launch.py --offline) with no CLIP weights: the resolver's instructions, no download.
    b2 = Backend(be.G, source="x", workdir=tmp_path / "w", runs_dir=tmp_path / "r", offline=True)
    with pytest.raises(gr.Error) as err:
        list(ui_errors(tab_edit.edit)(b2, "a smile", "global directions", "generated frame", 0, 0, 0.7, 0.0, None))
    msg = err.value.message
    for needle in ("Text editing needs CLIP weights", "downloads disabled", "SGV_CLIP_WEIGHTS",
                   str(tmp_path / "clip")):
        assert needle in msg, (needle, msg)
    assert not list(tmp_path.glob("w/*/*"))  # nothing was written


def test_launch_offline_flag_reaches_the_studio(tmp_path, monkeypatch):
    import launch
    import studio.app

    started = []
    monkeypatch.setattr(studio.app, "launch", lambda backend, **kw: started.append((backend, kw)))
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    for flags, offline in (([], False), (["--offline"], True)):
        assert launch.main(["--checkpoint", str(ckpt), "--device", "cpu", "--runs", str(tmp_path / "r")] + flags) == 0
        backend, kw = started[-1]
        try:
            assert kw["host"] == "127.0.0.1" and backend.info.source == str(ckpt)
            # the trainer it starts is offline too, and so are its weight resolvers (tested above)
            assert (backend.training.command("/d", "small", 1, 1)[-1] == "--offline") is offline
            assert backend.offline is offline
        finally:
            backend.cleanup()


def test_offline_studio_animate_without_lpips_weights_says_what_is_missing(be, tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path))
    monkeypatch.delenv("SGV_LPIPS_WEIGHTS", raising=False)
    b2 = Backend(be.G, source="x", workdir=tmp_path / "w", runs_dir=tmp_path / "r", offline=True)
    photo = write_photo(tmp_path / "p.png")
    with pytest.raises(gr.Error) as err:
        list(ui_errors(tab_animate.animate)(b2, str(photo), False, "W", 2, "0"))
    msg = err.value.message
    assert "LPIPS needs ImageNet vgg backbone weights" in msg and "downloads disabled" in msg, msg
    assert "SGV_LPIPS_WEIGHTS" in msg


def test_model_load_and_random_fallback(be, tmp_path, monkeypatch):
    monkeypatch.setattr(backend_mod, "DEFAULT_MODEL", tmp_path / "missing.safetensors")
    rnd = Backend.create(None, "cpu", workdir=tmp_path / "w", runs_dir=tmp_path / "r")
    assert rnd.info.random_weights and "random weights" in rnd.notice and rnd.G.img_resolution == 64
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors", seed=1)
    summary, cfg = tab_model.load(rnd, str(ckpt))
    assert cfg == rnd.G.cfg.to_dict() and cfg["name"] == "tiny" and not rnd.info.random_weights and rnd.notice == ""
    assert summary.startswith("**m.safetensors · 16x16 · tiny · cpu**") and f"`{ckpt}`" in summary
    # the loaded weights are the checkpoint's: its frames, not the random model's
    from_ckpt = tiny_backend(tmp_path / "b", checkpoint=ckpt)
    assert np.array_equal(rnd.frame(3, 1, 0.7, 2.0), from_ckpt.frame(3, 1, 0.7, 2.0))
    for bad_path, text in ((tmp_path / "nope.safetensors", "not found"), (tmp_path / "x.txt", "checkpoints are")):
        with pytest.raises(gr.Error, match=text):
            ui_errors(tab_model.load)(rnd, str(bad_path))
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(gr.Error, match="safetensors"):
        ui_errors(tab_model.load)(rnd, str(tmp_path / "broken.safetensors"))
    assert rnd.G.img_resolution == 16  # the failed loads left the loaded model alone


def test_trainer_crash_is_reported_from_its_log(tmp_path):
    proc = TrainingProcess(tmp_path / "runs")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc.start(str(empty), "tiny", 0.01, 1, extra={"workers": 0, "device": "cpu"})
    deadline = time.time() + 120
    while proc.status().running and time.time() < deadline:
        time.sleep(0.2)
    st = proc.status()
    assert st.state == "failed" and st.returncode == 2
    assert st.message.startswith(f"trainer failed (exit code 2): no readable videos found in '{empty}'"), st.message
    assert f"error: no readable videos found in '{empty}'" in proc.log_text()
    with pytest.raises(TrainingError, match="dataset not found"):
        proc.start(str(tmp_path / "missing"), "tiny", 1, 1)
    assert error_from_log("x\nTraceback...\nValueError: boom\n") == "ValueError: boom"
    assert error_from_log("error: no clips\n") == "no clips"


def test_stop_with_data_loader_workers_saves_a_snapshot_that_loads(tmp_path):
    """Stop reaches the trainer alone: its data-loader workers are shut down by the trainer, which
    finishes the step and writes a snapshot (signalling the whole group killed the workers first and the
    run failed with 'DataLoader worker ... killed by signal: Terminated', no snapshot)."""
    from PIL import Image

    from core.checkpoint import load_generator

    rng = np.random.default_rng(0)
    for v in range(4):  # a folder of frame folders at the tiny model's 16 px
        (tmp_path / "frames" / f"v{v}").mkdir(parents=True)
        base = rng.integers(0, 255, [16, 16, 3], dtype=np.uint8)
        for j in range(8):
            Image.fromarray(np.roll(base, j, axis=1)).save(tmp_path / "frames" / f"v{v}" / f"{j:06d}.png")
    data = tmp_path / "frames"
    proc = TrainingProcess(tmp_path / "runs")
    proc.start(str(data), "tiny", 1000, 1, extra={"workers": 2, "device": "cpu", "batch": 2,
                                                  "kimg_per_tick": 0.004, "snapshot_ticks": 1000,
                                                  "tensorboard": "false", "sample_videos": 1, "sample_frames": 2})
    deadline = time.time() + 180
    while time.time() < deadline and not (proc.run_dir() and (Path(proc.run_dir()) / "stats.jsonl").is_file()):
        assert proc.status().running, proc.log_text()
        time.sleep(0.5)
    st = proc.stop(timeout=120)
    assert st.state == "stopped", (st, proc.log_text())
    assert re.match(r"stopped at \d+(\.\d+)? kimg, snapshot network-\S+\.safetensors: ", st.message), st.message
    assert "Traceback" not in proc.log_text() and "killed by signal" not in proc.log_text()
    snap = training_runs.snapshots(st.run_dir)[0]
    assert load_generator(snap).img_resolution == 16


def test_training_command_flags(tmp_path):
    proc = TrainingProcess(tmp_path)
    cmd = proc.command("/d", "small", 12.5, 1, extra={"batch": 8, "snapshot_ticks": None})
    assert cmd[:3] == [sys.executable, "-m", "training"]
    assert cmd[cmd.index("--total-kimg") + 1] == "12.5" and cmd[cmd.index("--batch") + 1] == "8"
    assert "--snapshot-ticks" not in cmd
    resume = proc.command(None, "small", None, 1, resume="latest")
    assert resume[resume.index("--resume") + 1] == "latest" and "--data" not in resume
    with pytest.raises(ValueError, match="GPUs"):
        proc.command("/d", "small", 1, 0)
    assert "--offline" not in cmd
    # launch.py --offline: trainers started from the studio get the trainer's --offline flag as well
    assert TrainingProcess(tmp_path, offline=True).command("/d", "small", 12.5, 1)[-1] == "--offline"


def test_fine_tune_and_periodic_fvd_reach_the_trainer_command(be, tmp_path, monkeypatch):
    proc = TrainingProcess(tmp_path)
    weights = str(tiny_checkpoint(tmp_path / "w.safetensors"))
    cmd = proc.command("/d", "small", 5, 1, resume=weights)
    assert cmd[cmd.index("--resume") + 1] == weights and cmd[cmd.index("--data") + 1] == "/d"
    monkeypatch.chdir(tmp_path)  # relative paths reach the trainer (run from the repository root) resolved
    rel = proc.command("frames", "small", 5, 1, resume="w.safetensors")
    assert rel[rel.index("--resume") + 1] == weights and rel[rel.index("--data") + 1] == str(tmp_path / "frames")
    assert "--preset" not in cmd  # the model config comes from the weights
    calls = []
    monkeypatch.setattr(be.training, "start", lambda *a, **kw: calls.append((a, kw)) or
                        type("S", (), {"message": "running"})())
    data = tmp_path / "frames"
    (data / "v0").mkdir(parents=True)
    for j in range(3):  # one readable clip: the tab opens the dataset before starting anything
        imageio.imwrite(data / "v0" / f"{j:06d}.png", np.full((16, 16, 3), 40 * j, np.uint8))
    # "loaded" = the studio's model (a tiny checkpoint here), at its resolution; FVD every 3 ticks on 64 videos
    assert tab_train.start(be, str(data), None, "small", "auto", 5, 1, init="loaded", fvd_ticks=3,
                           fvd_videos=64) == "running"
    (args, kw), = calls
    assert kw["resume"] == be.info.source and args[0] == str(data)
    assert kw["extra"]["metrics"] == "fvd16" and kw["extra"]["metrics_ticks"] == 3
    assert kw["extra"]["metrics_num_videos"] == 64
    tab_train.start(be, str(data), None, "small", "auto", 5, 1)  # no FVD unless asked for
    assert "metrics" not in calls[-1][1]["extra"] and calls[-1][1]["resume"] is None
    with pytest.raises(StudioError, match="generates 16 px"):
        tab_train.start(be, str(data), None, "small", "64", 5, 1, init=weights)
    with pytest.raises(StudioError, match="not found"):
        tab_train.start(be, str(data), None, "small", "auto", 5, 1, init=str(tmp_path / "nope.pkl"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(StudioError, match="fine-tuning starts from"):
        tab_train.start(be, str(data), None, "small", "auto", 5, 1, init=str(tmp_path / "notes.txt"))
    monkeypatch.setattr(backend_mod, "DEFAULT_MODEL", tmp_path / "missing.safetensors")
    random_be = Backend.create(None, "cpu")
    with pytest.raises(StudioError, match="random weights"):
        tab_train.start(random_be, str(data), None, "small", "auto", 5, 1, init="loaded")


@pytest.mark.slow
def test_train_from_uploaded_zip_then_load_snapshot(be, tmp_path):
    """Prepare a zip of videos on the fly, train a few steps in the subprocess, load the snapshot."""
    z = write_video_zip(tmp_path / "videos.zip")
    msg = tab_train.start(be, "", str(z), "tiny", "auto", 0.012, 1, batch=2, kimg_per_tick=0.006,
                          snapshot_ticks=1, sample_ticks=1)
    assert "running" in msg
    deadline = time.time() + 240
    while be.training.status().running and time.time() < deadline:
        time.sleep(0.5)
    out = tab_train.refresh(be)
    assert be.training.status().state == "finished", out["log"]
    assert len(out["losses"]) > 0 and out["sample"] and out["snapshots"]
    stats = [json.loads(ln) for ln in open(f"{out['run_dir']}/stats.jsonl")]
    assert stats[-1]["kimg"] >= 0.012
    be.load(out["snapshots"][0])
    assert be.info.source == out["snapshots"][0]


def test_trainer_metrics_lines_are_read_as_metrics_not_ticks(tmp_path):
    from studio.training_runs import read_metrics, read_stats

    lines = [{"tick": 1, "kimg": 0.5}, {"kind": "metrics", "kimg": 0.5, "fvd16": 812.5}, {"tick": 2, "kimg": 1.0}]
    (tmp_path / "stats.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"tick\": 3, \"ki")
    assert read_stats(tmp_path) == [{"tick": 1, "kimg": 0.5}, {"tick": 2, "kimg": 1.0}]  # half line skipped
    (tmp_path / "metrics-1.000.json").write_text(json.dumps({"fvd16": 700.0, "num_videos": {"fvd16": 64}}))
    (tmp_path / "metrics-1.000.manifest.json").write_text(json.dumps({"format": "a manifest, not a result"}))
    (tmp_path / "metrics-manifests.jsonl").write_text(json.dumps({"kimg": 0.5, "format": "manifest"}) + "\n")
    assert read_metrics(tmp_path) == [{"kind": "metrics", "kimg": 0.5, "fvd16": 812.5, "file": "stats.jsonl"},
                                      {"fvd16": 700.0, "num_videos": {"fvd16": 64}, "file": "metrics-1.000.json"}]
    assert read_stats(None) == [] and read_metrics(None) == []


def test_edit_tab_says_up_front_when_clip_weights_are_missing(tmp_path, monkeypatch):
    """Offline with no CLIP file: the notice names `launch.py --clip-weights` before any edit is tried;
    with a weights file given to the studio there is no notice (and nothing is loaded to decide it)."""
    import launch

    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SGV_CLIP_WEIGHTS", raising=False)
    be = tiny_backend(tmp_path / "a", clip_factory=None, offline=True)
    notice = be.clip_notice()
    assert notice.startswith("**Text edits are unavailable:**") and "python launch.py --clip-weights FILE" in notice
    assert "downloads disabled" in notice and be._clip is None
    weights = tmp_path / "clip.safetensors"
    weights.write_bytes(b"x")
    assert tiny_backend(tmp_path / "b", clip_factory=None, offline=True, clip_weights=weights).clip_notice() == ""
    assert launch.parse_args(["--clip-weights", str(weights)]).clip_weights == str(weights)


def test_model_card_explains_the_model_and_where_photos_are_uploaded(tmp_path):
    """Model tab: resolution, training data, kimg, FVD and what photos work, from the checkpoint's metadata
    and its `.card.json`; the Animate tab shows the photo line; the bundled model has a card."""
    import json

    from core.checkpoint import save_checkpoint
    from studio.backend import DEFAULT_MODEL, random_generator

    G = random_generator("tiny")
    ckpt = save_checkpoint(tmp_path / "m.safetensors", {"G_ema": G}, G.cfg,
                           metadata={"fps": 25, "kimg": 12.5, "data": "my clips (3 videos)"})
    be = tiny_backend(tmp_path / "s", checkpoint=ckpt)
    text = tab_model.describe(be)
    assert "16x16" in text and "data: my clips (3 videos)" in text and "12.5 kimg" in text
    assert "FVD" not in text and "Photos: 16x16 model. Photos like the model's training data work best." in text
    (tmp_path / "m.card.json").write_text(json.dumps({"fvd16": 999, "photos": "Cats on sofas."}))
    text = tab_model.describe(be)
    assert "FVD 999" in text and tab_model.photo_hint(be) == "16x16 model. Cats on sofas."
    card = json.loads(DEFAULT_MODEL.with_suffix(".card.json").read_text())
    assert card["fvd16"] and "portrait" in card["photos"].lower()


def test_train_tab_checks_the_dataset_before_creating_a_run(be, tmp_path):
    """A bad path, a folder without videos, a text file named .mp4, a file that is not a zip: a message
    from the dataset reader, no trainer started, no run folder or log written."""
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("no videos here")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "clip.mp4").write_text("this is not a video")
    (tmp_path / "plain.txt").write_text("not a zip")
    runs = be.training.outdir
    before = set(runs.iterdir()) if runs.is_dir() else set()
    cases = {str(tmp_path / "missing"): "does not exist", str(tmp_path / "texts"): "no readable videos",
             str(tmp_path / "fake"): "no readable videos|cannot open video", str(tmp_path / "plain.txt"): "not a zip"}
    for path, message in cases.items():
        with pytest.raises(StudioError, match=message):
            tab_train.start(be, path, None, "tiny", "auto", 1, 1)
    assert be.training.status().state in ("idle", "stopped", "finished", "failed")
    assert not be.training.status().running
    assert (set(runs.iterdir()) if runs.is_dir() else set()) == before


@pytest.mark.skipif(not _has_face_detector(), reason="this OpenCV lacks its Haar face detector")
def test_face_crop_without_a_face_says_so(be, tmp_path):
    photo = write_photo(tmp_path / "p.png")
    outs = list(tab_animate.animate(be, str(photo), True, "W", 2, "0", seconds=0.2, fps=10, fit=False))
    assert outs[-1]["status"].startswith("No face found in the photo: the whole photo was used. Done.")
    outs = list(tab_animate.animate(be, str(photo), False, "W", 2, "0", seconds=0.2, fps=10, fit=False))
    assert outs[-1]["status"].startswith("Done.")


def test_train_tab_estimates_the_time_left_from_the_measured_speed(tmp_path, monkeypatch):
    """1000 kimg at 10 s/kimg with 10 kimg done: 9,900 s left, shown as '2 h 45 min'."""
    from studio.training_runs import TrainStatus

    be = tiny_backend(tmp_path / "s")
    run = tmp_path / "run"
    run.mkdir()
    (run / "stats.jsonl").write_text(json.dumps({"tick": 5, "kimg": 10.0, "sec_per_kimg": 10.0}) + "\n")
    monkeypatch.setattr(be.training, "status", lambda: TrainStatus("running", str(run), None, None, "running"))
    be.training.total_kimg = 1000.0
    assert "about 2 h 45 min left for 1000 kimg at this speed" in tab_train.refresh(be)["status"]
    be.training.total_kimg = 10.5
    assert "about 5 s left for 10.5 kimg" in tab_train.refresh(be)["status"]


def test_train_tab_plots_losses_fvd_and_a_strip_of_tick_samples(be, tmp_path):
    import imageio.v2 as imageio

    run = tmp_path / "00001-run"
    (run / "samples").mkdir(parents=True)
    lines = [{"tick": 1, "kimg": 0.5, "Loss/G/loss": 1.0, "Loss/D/loss": 0.5, "Loss/r1_penalty": 0.1},
             {"kind": "metrics", "kimg": 0.5, "fvd16": 900.0, "std": {"fvd16": 12.0}, "floor": {"fvd16": 400.0}},
             {"tick": 2, "kimg": 1.0, "Loss/G/loss": 0.8, "Loss/D/loss": 0.6, "Loss/r1_penalty": 0.2},
             {"kind": "metrics", "kimg": 1.0, "fvd16": 700.0}]
    (run / "stats.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for kimg, value in (("0.500", 40), ("1.000", 200)):
        imageio.mimwrite(run / "samples" / f"samples-{kimg}.mp4", [np.full((16, 16, 3), value, np.uint8)] * 2,
                         fps=5, macro_block_size=1)
    out = tab_train.refresh(be, str(run))
    assert set(out["losses"]["loss"]) == {"G/loss", "D/loss", "r1_penalty"}  # R1 included
    assert out["metrics"].values.tolist() == [[0.5, 900.0, "fvd16"], [1.0, 700.0, "fvd16"]]
    assert [c for _, c in out["strip"]] == ["0.500 kimg", "1.000 kimg"]
    assert abs(int(out["strip"][0][0].mean()) - 40) < 8 and abs(int(out["strip"][1][0].mean()) - 200) < 8
    assert "fvd16 900.00 +- 12.00 (floor 400.00)" in out["fvd"]
