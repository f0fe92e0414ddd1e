"""Studio handlers called directly on a tiny model: scrubbing, renders and exports, grid, uploads, projection
+ animation, edits, the trainer process, model loading, and errors as messages."""

import json
import sys
import time
import zipfile

import gradio as gr
import numpy as np
import pytest
import torch

from core.motion import Motion
from studio import backend as backend_mod
from studio import tab_animate, tab_edit, tab_generate, tab_model, tab_train
from studio.backend import Backend, StudioError, parse_seeds
from studio.common import display, ui_errors
from studio.testing import tiny_backend, tiny_checkpoint, write_bad_uploads, write_photo, write_video_zip
from studio.training_runs import TrainingError, TrainingProcess, error_from_log
from studio.uploads import UploadError, check_image, extract_zip


@pytest.fixture(scope="module")
def be(tmp_path_factory):
    b = tiny_backend(tmp_path_factory.mktemp("studio"))
    yield b
    b.training.stop(timeout=10)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return write_bad_uploads(tmp_path_factory.mktemp("bad"))


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
    assert far.shape[0] >= 256 and not np.array_equal(far, tab_generate.scrub(be, 0, 0, 1.0, 0.5, 0, 1))
    with pytest.raises(StudioError):
        be.model_time(1.0, -1.0, 1.0)


def test_ws_cache_per_seed_and_truncation(be):
    a = be.ws_for(1, 0.5)
    assert be.ws_for(1, 0.5) is a
    assert not torch.equal(be.ws_for(1, 1.0), a)
    assert a.shape == (1, be.G.num_ws, be.G.w_dim)


def test_render_exports_every_format(be):
    video, files = tab_generate.render(be, 2, 1, 0.7, 0, 10, 1, 1.0, ["mp4", "gif", "png", "npz"], "s1")
    by_ext = {p.rsplit(".", 1)[1]: p for p in files}
    assert set(by_ext) == {"mp4", "gif", "zip", "npz"} and video == by_ext["mp4"]
    import imageio.v2 as imageio

    reader = imageio.get_reader(video, format="FFMPEG")
    assert reader.get_meta_data()["codec"] == "h264"
    assert reader.count_frames() == 10
    with zipfile.ZipFile(by_ext["zip"]) as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == 10
    with np.load(by_ext["npz"]) as z:
        assert np.allclose(z["ws"], be.ws_for(2, 0.7).numpy())
    gif = imageio.mimread(by_ext["gif"])
    assert len(gif) == 10 and gif[0].shape[:2] == (16, 16)
    # the first exported frame is the scrubbed frame at t = 0
    assert np.abs(reader.get_data(0).astype(int) - be.frame(2, 1, 0.7, 0.0).astype(int)).mean() < 12


def test_grid_rows_share_motion_columns_share_content(be):
    path = tab_generate.grid(be, "0-2", "4, 5", 0.7, 0, 5, 1, 0.4, "s1")
    import imageio.v2 as imageio

    frames = imageio.mimread(path, format="FFMPEG")
    assert len(frames) == 2 and frames[0].shape[:2] == (32, 48)


def test_bad_generate_inputs_are_messages(be):
    for call in (lambda: tab_generate.scrub(be, -1, 0, 0.7, 0, 0, 1),
                 lambda: tab_generate.scrub(be, 1.5, 0, 0.7, 0, 0, 1),
                 lambda: tab_generate.render(be, 0, 0, 0.7, 0, 25, 1, 0, ["mp4"]),
                 lambda: tab_generate.render(be, 0, 0, 0.7, 0, 25, 1, 1, []),
                 lambda: tab_generate.grid(be, "a,b", "0", 0.7, 0, 25, 1, 1)):
        with pytest.raises(gr.Error) as err:
            ui_errors(call)()
        assert "Traceback" not in err.value.message and err.value.message
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


def test_photo_preview_and_face_crop(be, tmp_path):
    photo = write_photo(tmp_path / "p.png")
    target = tab_animate.load_target(be, str(photo), face_crop=False)
    assert target.shape == (16, 16, 3) and target.dtype == np.uint8
    try:  # no face in the photo: the whole photo is used, unless this OpenCV lacks its face detector
        cropped = tab_animate.load_target(be, str(photo), face_crop=True)
        assert np.array_equal(cropped, target)
    except Exception as exc:
        with pytest.raises(gr.Error, match="face"):
            ui_errors(tab_animate.preview)(be, str(photo), True)
        assert "Haar" in str(exc)


def test_animate_reports_progress_then_projection_and_animations(be, tmp_path):
    photo = write_photo(tmp_path / "p.png")
    outs = list(tab_animate.animate(be, str(photo), False, "W+", 4, "0, 1, 2", seconds=0.4, fps=10))
    assert any("step" in o["status"] for o in outs[:-1])
    assert any(o.get("preview") is not None for o in outs)
    last = outs[-1]
    assert last["comparison"].shape[1] > last["comparison"].shape[0]  # target | reconstruction
    state = last["state"]
    assert state["ws"].shape == (1, be.G.num_ws, be.G.w_dim) and state["motion_seed"] == 0
    import imageio.v2 as imageio

    frames = imageio.mimread(last["video"], format="FFMPEG")
    assert len(frames) == 4 and frames[0].shape[:2] == (16, 48)  # three motion seeds side by side
    with np.load(last["latent"]) as z:
        assert np.allclose(z["ws"], state["ws"])


def test_animate_cancel_stops_the_projection(be, tmp_path):
    photo = write_photo(tmp_path / "p.png")
    gen = tab_animate.animate(be, str(photo), False, "W", 200, "0", session="c1")
    first = next(gen)
    assert "step" in first["status"]
    be.cancel("c1")
    rest = list(gen)
    assert rest[-1]["status"].startswith("Cancelled") and "video" not in rest[-1]


@pytest.mark.parametrize("method", tab_edit.METHODS)
def test_edit_on_generated_and_projected_frames(be, method):
    outs = list(tab_edit.edit(be, "a smiling face", method, "generated frame", 1, 2, 0.7, 3.5, None,
                              strength=6, beta=0.0, steps=3, seconds=0.4, fps=10))
    last = outs[-1]
    assert "CLIP similarity" in last["status"]
    assert last["before_after"].shape[1] > last["before_after"].shape[0]
    with np.load(last["latent"]) as z:
        assert z["ws"].shape == (1, be.G.num_ws, be.G.w_dim)
    with pytest.raises(StudioError, match="no projected photo"):
        list(tab_edit.edit(be, "x", method, "projected photo", 0, 0, 0.7, 0.0, None))
    state = {"ws": be.ws_for(7, 1.0).numpy(), "motion_seed": 3, "t": 0.0}
    outs = list(tab_edit.edit(be, "blue sky", method, "projected photo", 0, 0, 0.7, 0.0, state, steps=2,
                              seconds=0.2, fps=10))
    assert "video" in outs[-1]


def test_edit_without_clip_weights_shows_the_resolvers_message(be, tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path))
    monkeypatch.delenv("SGV_CLIP_WEIGHTS", raising=False)
    import editing.clip_weights as cw

    monkeypatch.setattr(cw, "network_available", lambda *a, **k: False)
    b2 = Backend(be.G, source="x", workdir=tmp_path / "w", runs_dir=tmp_path / "r")
    with pytest.raises(gr.Error, match="CLIP weights"):
        list(ui_errors(tab_edit.edit)(b2, "a smile", "global directions", "generated frame", 0, 0, 0.7, 0.0, None))


def test_model_load_and_random_fallback(be, tmp_path, monkeypatch):
    monkeypatch.setattr(backend_mod, "DEFAULT_MODEL", tmp_path / "missing.safetensors")
    rnd = Backend.create(None, "cpu", workdir=tmp_path / "w", runs_dir=tmp_path / "r")
    assert rnd.info.random_weights and "random weights" in rnd.notice and rnd.G.img_resolution == 64
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors", seed=1)
    summary, cfg = tab_model.load(rnd, str(ckpt))
    assert cfg["name"] == "tiny" and not rnd.info.random_weights and rnd.notice == ""
    assert "m.safetensors" in summary
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
    assert st.state == "failed" and st.returncode == 1 and len(st.message) > 30
    with pytest.raises(TrainingError, match="dataset not found"):
        proc.start(str(tmp_path / "missing"), "tiny", 1, 1)
    assert error_from_log("x\nTraceback...\nValueError: boom\n") == "ValueError: boom"
    assert error_from_log("error: no clips\n") == "no clips"


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
    data.mkdir()
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
    assert [r["tick"] for r in read_stats(tmp_path)] == [1, 2]
    metrics = read_metrics(tmp_path)
    assert len(metrics) == 1 and metrics[0]["fvd16"] == 812.5
