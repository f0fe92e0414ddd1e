"""Hostile numbers on the command lines: one clear line, exit code 2 (argparse) or the CLI's error code,
no traceback, nothing written."""

import pytest

from core.generate import main as generate_main
from projection.__main__ import main as projection_main
from training.prepare import main as prepare_main


@pytest.mark.parametrize("argv, message", [
    (["--seeds", str(2**70)], "seeds are whole numbers in 0 .. 4294967295"),
    (["--seeds", "0-99999999"], "at most 4096 seeds"),
    (["--seeds", "abc"], "bad seed list 'abc'"),
    (["--motion-seeds", "-3"], "bad seed list"),
])
def test_generate_refuses_absurd_seeds(tmp_path, capsys, argv, message):
    out = tmp_path / "v.mp4"
    with pytest.raises(SystemExit) as exc:
        generate_main(["--checkpoint", "assets/default-model.safetensors", "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_projection_refuses_absurd_motion_seeds(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as exc:
        projection_main([str(tmp_path / "p.jpg"), "--checkpoint", "m.safetensors", "--motion-seed", seed,
                         "--out", str(tmp_path / "l.npz")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--motion-seed must be in 0 .. 2147483647" in err
    assert list(tmp_path.iterdir()) == []


def test_prepare_refuses_an_absurd_resolution(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    rc = prepare_main([str(tmp_path / "src"), str(tmp_path / "dst"), "--resolution", "100000"])
    err = capsys.readouterr().err
    assert rc == 2 and "resolution must be in 4 .. 1024" in err and "Traceback" not in err
    assert not (tmp_path / "dst").exists()


def test_projection_cli_and_studio_share_one_photo_size_limit(tmp_path, capsys):
    """A 50-megapixel photo: refused by the CLI with the studio's message, before decoding."""
    from studio.testing import write_bad_uploads
    from studio.uploads import UploadError, check_image

    huge = write_bad_uploads(tmp_path / "bad")["huge"]
    assert projection_main([str(huge), "--checkpoint", "assets/default-model.safetensors", "--steps", "1",
                            "--out", str(tmp_path / "l.npz")]) == 2
    cli = capsys.readouterr().err.strip().removeprefix("error: ")
    with pytest.raises(UploadError) as studio:
        check_image(str(huge))
    assert cli == str(studio.value) == "huge.png is 8000x6250 (50 megapixels); the limit is 40 megapixels: " \
                                       "downscale it first"
    assert not (tmp_path / "l.npz").exists()


def test_weight_files_that_fail_the_safe_loader_say_not_a_weights_file(tmp_path, capsys):
    """Torch's own text (which suggests weights_only=False, i.e. running the file) never reaches the user."""
    from editing.clip_weights import ClipWeightsError, load_clip
    from studio.testing import write_photo

    junk = tmp_path / "weights.pt"
    junk.write_text("not a weights file")
    photo = write_photo(tmp_path / "p.png")
    assert projection_main([str(photo), "--checkpoint", "assets/default-model.safetensors", "--steps", "1",
                            "--lpips-weights", str(junk), "--out", str(tmp_path / "l.npz")]) == 2
    err = capsys.readouterr().err
    assert "weights.pt is not a LPIPS backbone weights file" in err and "weights_only" not in err
    for name in ("weights.pt", "weights.safetensors"):
        (tmp_path / name).write_text("not a weights file")
        with pytest.raises(ClipWeightsError, match=f"{name} is not a CLIP weights file") as exc:
            load_clip(weights=tmp_path / name, allow_download=False)
        assert "weights_only" not in str(exc.value)


def test_prepare_takes_the_zips_the_studio_takes_and_refuses_unsafe_ones(tmp_path, capsys):
    """`training.prepare` accepts a zip of videos (as the Train tab's upload does), through the same safe
    extraction; a zip with a `..` path is refused before anything is written."""
    import zipfile

    from studio.testing import write_video_zip
    from training.dataset import VideoDataset

    clips = write_video_zip(tmp_path / "clips.zip", num_videos=2, frames=6, size=24)
    assert prepare_main([str(clips), str(tmp_path / "ds"), "--resolution", "16"]) == 0
    ds = VideoDataset(str(tmp_path / "ds"))
    assert len(ds) == 2 and ds.read_frames(0, [0]).shape == (1, 16, 16, 3)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../outside.mp4", b"x")
    assert prepare_main([str(evil), str(tmp_path / "ds2"), "--resolution", "16"]) == 2
    assert "unsafe path" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists() and not (tmp_path / "outside.mp4").exists()


class _Shell:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        import os

        return os.system, (self.cmd,)


def test_every_model_loading_cli_refuses_a_malicious_pickle(tmp_path, capsys):
    """The same refusal, one line and exit code 2 from each CLI that takes a checkpoint; nothing runs."""
    import pickle

    from core.convert import main as convert_main
    from training.__main__ import main as train_main
    from training.metrics.__main__ import main as metrics_main

    marker = tmp_path / "SHELL_RAN"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _Shell(f"touch {marker}")}))
    photo = tmp_path / "p.png"
    from studio.testing import write_photo

    write_photo(photo)
    runs = {
        "core.generate": lambda: generate_main(["--checkpoint", str(evil), "--out", str(tmp_path / "v.mp4")]),
        "core.convert": lambda: convert_main([str(evil), str(tmp_path / "m.safetensors")]),
        "projection": lambda: projection_main([str(photo), "--checkpoint", str(evil), "--out",
                                               str(tmp_path / "l.npz")]),
        "training.metrics": lambda: metrics_main(["--checkpoint", str(evil), "--data", str(tmp_path),
                                                  "--metrics", "fvd16"]),
        "training": lambda: train_main(["--data", str(tmp_path), "--outdir", str(tmp_path / "runs"), "--resume",
                                        str(evil), "--workers", "0"]),
    }
    for name, run in runs.items():
        rc = run()
        err = capsys.readouterr().err
        assert rc == 2 and "refusing" in err and "Traceback" not in err, (name, rc, err)
    assert not marker.exists()
    assert {p.name for p in tmp_path.iterdir()} <= {"evil.pkl", "p.png", "runs"}
