"""End to end: launch the studio on a free localhost port and drive every tab through gradio_client,
including bad uploads, which must be answered with a message while the server keeps serving."""

import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from studio.app import launch
from studio.testing import free_port, tiny_backend, tiny_checkpoint, write_bad_uploads, write_photo


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    backend = tiny_backend(root)
    app, url = launch(backend, port=free_port(), block=False, quiet=True)
    client = Client(url, verbose=False)
    yield backend, client, url, root
    backend.training.stop(timeout=20)
    app.close()


def _frame_dataset(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for v in range(2):
        d = root / "frames" / f"v{v}"
        d.mkdir(parents=True)
        base = rng.integers(0, 255, [16, 16, 3], dtype=np.uint8)
        for j in range(8):
            Image.fromarray(np.roll(base, j, axis=1)).save(d / f"{j:06d}.png")
    return root / "frames"


def test_binds_localhost_only(server):
    _, _, url, _ = server
    assert url.startswith("http://127.0.0.1:")


def test_user_errors_leave_no_traceback_in_the_server_log(server, capfd):
    """A user's mistake is a message for the user; the server log keeps tracebacks for real faults."""
    _, client, _, _ = server
    capfd.readouterr()
    for seed in (2**40, -5, "abc"):
        with pytest.raises(AppError, match="(?i)content seed must"):
            client.predict(seed, 0, 0.7, 1.0, 0, 1, api_name="/scrub")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_generate_tab(server):
    backend, client, _, _ = server
    # a non-number through the API: the field's own message, not "upstream app raised an exception"
    with pytest.raises(AppError, match="Content seed must be a number, got 'abc'"):
        client.predict("abc", 1, 0.7, 2.5, 0, 1, api_name="/scrub")
    frame = client.predict(3, 1, 0.7, 2.5, 0, 1, api_name="/scrub")
    from PIL import Image

    img = np.asarray(Image.open(frame).convert("RGB"))
    expected = backend.frame(3, 1, 0.7, backend.model_time(2.5))
    assert img.shape == (256, 256, 3) and np.array_equal(img[::16, ::16], expected)
    video, files = client.predict(3, 1, 0.7, 60, 10, 2, 0.5, ["mp4", "npz"], api_name="/render")
    assert Path(video["video"] if isinstance(video, dict) else video).suffix == ".mp4"
    assert sorted(Path(f).suffix for f in files) == [".mp4", ".npz"]
    grid = client.predict("0-1", "0-1", 0.7, 0, 4, 1, 0.5, api_name="/grid")
    assert Path(grid["video"] if isinstance(grid, dict) else grid).is_file()


def test_animate_and_edit_tabs(server):
    _, client, _, root = server
    photo = write_photo(root / "photo.png")
    preview = client.predict(handle_file(str(photo)), False, api_name="/photo_preview")
    assert Path(preview).is_file()
    status, live, video, latent = client.predict(handle_file(str(photo)), False, "W", 3, "0, 4", 0.5,
                                                 api_name="/animate")
    assert status.startswith("Done") and "LPIPS" in status
    assert Path(video["video"] if isinstance(video, dict) else video).is_file() and latent.endswith(".npz")
    # the projected photo stays in this client's session for the Edit tab
    out = client.predict("projected photo", "a smiling face", "latent optimization", 4, 0.1, 2, 0.001, 0.5, 0, 0,
                         0.7, 0, 0, 1, api_name="/edit")
    assert "CLIP similarity" in out[0] and out[4].endswith(".npz")
    out = client.predict("generated frame", "a sunny sky", "global directions", 5, 0.0, 2, 0.001, 0.5, 2, 3,
                         0.7, 1.5, 0, 1, api_name="/edit")
    assert "CLIP similarity" in out[0]


def test_train_tab_start_stop_refresh(server):
    backend, client, _, root = server
    data = _frame_dataset(root)
    msg = client.predict(str(data), None, "tiny", "auto", 1000, 1, 2, 0.004, 1, 1000, api_name="/train_start")
    assert msg.startswith("running")
    deadline = time.time() + 120
    while time.time() < deadline:
        status = client.predict(None, api_name="/train_refresh")[0]
        snaps = list(Path(backend.training.run_dir() or root / "none").glob("snapshots/network-*"))
        if "tick" in status and snaps:
            break
        time.sleep(1.0)
    else:
        pytest.fail(f"no tick within 120 s: {status}\n{backend.training.log_text()}")
    stopped = client.predict(api_name="/train_stop")
    assert stopped.startswith("stopped"), stopped
    out = client.predict(None, api_name="/train_refresh")  # status, losses, FVD plot, sample, strip, FVD text, ...
    status, losses, fvd = out[0], out[1], out[5]
    assert "stopped" in status and "FVD" in fvd
    assert len(losses["data"]) > 0
    with pytest.raises(AppError, match="already|does not exist"):
        client.predict(str(root / "missing"), None, "tiny", "auto", 1, 1, None, None, None, None,
                       api_name="/train_start")
    with pytest.raises(AppError, match="weights to fine-tune not found"):  # the fine-tune / FVD inputs
        client.predict(str(data), None, "tiny", "auto", 1, 1, None, None, None, None, str(root / "nope.pkl"), 2, 8,
                       api_name="/train_start")


def test_model_tab(server):
    backend, client, _, root = server
    ckpt = tiny_checkpoint(root / "other.safetensors", seed=5)
    notice, summary, config = client.predict(str(ckpt), None, api_name="/load_model")
    assert "other.safetensors" in summary and config["name"] == "tiny"
    assert backend.info.source == str(ckpt)
    with pytest.raises(AppError, match="not found"):
        client.predict(str(root / "nope.safetensors"), None, api_name="/load_model")


def test_bad_uploads_are_answered_and_the_server_keeps_serving(server):
    _, client, _, root = server
    bad = write_bad_uploads(root / "bad")
    for key, text in (("text_as_jpg", "not a readable image"), ("empty", "empty"), ("huge", "megapixels")):
        with pytest.raises(AppError, match=text):
            client.predict(handle_file(str(bad[key])), False, api_name="/photo_preview")
        with pytest.raises(AppError, match=text):
            client.predict(handle_file(str(bad[key])), False, "W", 2, "0", 0.5, api_name="/animate")
    for key, text in (("zip_without_videos", "no videos"), ("not_a_zip", "not a zip")):
        with pytest.raises(AppError, match=text):
            client.predict("", handle_file(str(bad[key])), "tiny", "auto", 1, 1, None, None, None, None,
                           api_name="/train_start")
    with pytest.raises(AppError, match="safetensors"):  # gradio checks the file type
        client.predict("", handle_file(str(bad["text_as_jpg"])), api_name="/load_model")
    assert Path(client.predict(0, 0, 0.7, 0.1, 0, 1, api_name="/scrub")).is_file()  # still serving


def test_sigterm_stops_launch_py_and_removes_its_temporary_folder(tmp_path):
    """A service manager's SIGTERM ends the studio like Ctrl+C: through its cleanup, so no sgv-studio-*
    folder is left in the temporary directory."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(root)}
    log = tmp_path / "launch.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "launch.py", "--checkpoint", str(ckpt), "--port", str(port),
                                 "--offline", "--runs", str(tmp_path / "runs")], cwd=root, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        # its own start-up line, not just any server answering on the port
        ready = f"StyleGAN-V Studio running at http://127.0.0.1:{port}/"
        deadline = time.time() + 120
        while ready not in log.read_text():
            assert proc.poll() is None, f"launch.py exited early:\n{log.read_text()[-2000:]}"
            assert time.time() < deadline, "the studio did not come up within 120 s"
            time.sleep(0.5)
        assert list(tmp_path.glob("sgv-studio-*")), "no temporary folder while running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
    finally:
        proc.kill()
    assert not list(tmp_path.glob("sgv-studio-*"))
