"""Hostile input to every studio handler, through the same `ui_errors` wrapper the page uses: each gives
one clear message (ours, not "Unexpected error"), writes nothing, and the studio keeps serving."""

import math

import gradio as gr
import pytest

from studio import tab_animate, tab_edit, tab_generate, tab_model, tab_train
from studio.common import ui_errors
from studio.testing import tiny_backend, write_bad_uploads, write_photo

BAD_NUMBERS = ["abc", -1, 2**70, math.nan, math.inf, None]
# values that are fine for these fields: a negative truncation extrapolates, a blank time or offset means 0
ALLOWED = {("scrub truncation", -1), ("scrub time", None), ("scrub offset", None)}


@pytest.fixture(scope="module")
def be(tmp_path_factory):
    b = tiny_backend(tmp_path_factory.mktemp("hostile"))
    yield b
    b.training.stop(timeout=10)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    (d / "frames" / "v0").mkdir(parents=True)
    for j in range(3):  # a readable dataset, so that the kimg cases reach the kimg check
        write_photo(d / "frames" / "v0" / f"{j:06d}.png", size=16)
    return {**write_bad_uploads(d), "photo": write_photo(d / "p.png"), "frames": d / "frames"}


def _cases(files):
    photo = str(files["photo"])
    cases = []
    for bad in BAD_NUMBERS:
        cases += [c for c in [
            ("scrub seed", tab_generate.scrub, (bad, 0, 0.7, 1.0, 0, 1)),
            ("scrub motion seed", tab_generate.scrub, (0, bad, 0.7, 1.0, 0, 1)),
            ("scrub truncation", tab_generate.scrub, (0, 0, bad, 1.0, 0, 1)),
            ("scrub time", tab_generate.scrub, (0, 0, 0.7, bad, 0, 1)),
            ("scrub offset", tab_generate.scrub, (0, 0, 0.7, 1.0, bad, 1)),
            ("render fps", tab_generate.render, (0, 0, 0.7, 0, bad, 1, 1.0, ["mp4"])),
            ("render duration", tab_generate.render, (0, 0, 0.7, 0, 10, 1, bad, ["mp4"])),
            ("render slow motion", tab_generate.render, (0, 0, 0.7, 0, 10, bad, 1.0, ["mp4"])),
            ("animate steps", lambda b, *a: list(tab_animate.animate(b, *a)), (photo, False, "W", bad, "0")),
            ("animate seconds", lambda b, *a: list(tab_animate.animate(b, *a)), (photo, False, "W", 2, "0", bad)),
            ("edit steps", lambda b, *a: list(tab_edit.edit(b, *a)),
             ("a face", "latent optimization", "generated frame", 0, 0, 0.7, 0.0, None, 4.0, 0.1, bad)),
            ("train kimg", tab_train.start, (str(files["frames"]), None, "tiny", "auto", bad, 1)),
            ("train GPUs", tab_train.start, (str(files["frames"]), None, "tiny", "auto", 1, bad)),
        ] if (c[0], bad) not in ALLOWED]
    for key in ("text_as_jpg", "empty", "huge"):
        cases.append((f"animate upload {key}", lambda b, *a: list(tab_animate.animate(b, *a)),
                      (str(files[key]), False, "W", 2, "0")))
    cases += [
        ("grid seeds", tab_generate.grid, ("0-3", "x", 0.7, 0, 10, 1, 1.0)),
        ("animate motion seeds", lambda b, *a: list(tab_animate.animate(b, *a)), (photo, False, "W", 2, "9-1")),
        ("load model /etc/passwd", tab_model.load, ("/etc/passwd",)),
        ("load model text file", tab_model.load, (None, str(files["text_as_jpg"]))),
        ("train zip without videos", tab_train.start, ("", str(files["zip_without_videos"]), "tiny", "auto", 1, 1)),
        ("train not a zip", tab_train.start, ("", str(files["not_a_zip"]), "tiny", "auto", 1, 1)),
        ("resume unknown run", tab_train.resume, ("no-such-run", None, 1)),
    ]
    return cases


def test_every_handler_answers_hostile_input_with_a_message(be, files):
    before = {p for p in be.workdir.rglob("*") if p.is_file()}
    failures = []
    for name, handler, args in _cases(files):
        try:
            ui_errors(handler)(be, *args)
        except gr.Error as exc:
            if str(exc.message).startswith("Unexpected error") or "Traceback" in str(exc.message):
                failures.append(f"{name}: {exc.message}")
            continue
        except Exception as exc:  # noqa: BLE001 (the point: nothing but gr.Error may escape)
            failures.append(f"{name}: {type(exc).__name__} escaped: {exc}")
            continue
        if name.startswith("resume"):  # resume starts a trainer process that fails on its own: stop it
            be.training.stop(timeout=30)
            continue
        failures.append(f"{name}: accepted")
    assert not failures, "\n".join(failures)
    written = {p for p in be.workdir.rglob("*") if p.is_file()} - before
    assert not [p for p in written if p.suffix in (".mp4", ".gif", ".npz", ".safetensors")], written
    assert be.frame(0, 0, 0.7, 0.0).shape[-1] == 3  # still serving


def test_upload_errors_name_the_file_not_the_servers_folders(be, tmp_path):
    """A photo whose header reads but whose pixels do not: the message names the file only (in the studio
    the folder is a server temp path)."""
    photo = write_photo(tmp_path / "cut.png", size=64)
    photo.write_bytes(photo.read_bytes()[:200])  # a valid header, truncated pixel data
    with pytest.raises(gr.Error) as exc:
        ui_errors(tab_animate.preview)(be, str(photo), False)
    assert str(exc.value.message).startswith("cut.png is not a readable image")
    assert str(tmp_path) not in str(exc.value.message)
