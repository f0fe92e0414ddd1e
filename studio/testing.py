"""Tiny stand-ins for the studio's tests and offline demos: a random tiny checkpoint, a backend with
toy LPIPS / CLIP, and the bad uploads the studio must answer with a message."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from studio.backend import Backend, random_generator


def tiny_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """A random `tiny` generator saved as a studio checkpoint (G_ema only)."""
    from core.checkpoint import save_checkpoint

    G = random_generator("tiny", seed=seed)
    with torch.no_grad():  # a non-zero w_avg makes truncation visible
        G.mapping.w_avg.copy_(torch.randn(G.mapping.w_avg.shape, generator=torch.Generator().manual_seed(seed)))
    return save_checkpoint(path, {"G_ema": G}, G.cfg, metadata={"fps": 25})


def tiny_backend(workdir: str | Path, checkpoint: str | Path | None = None, **kwargs) -> Backend:
    """A CPU backend on a tiny model with TinyLPIPS and a tiny random CLIP (no downloads)."""
    from editing.testing import tiny_clip
    from projection.testing import TinyLPIPS

    workdir = Path(workdir)
    ckpt = checkpoint or tiny_checkpoint(workdir / "tiny.safetensors")
    defaults = dict(lpips_factory=lambda device: TinyLPIPS().to(device),
                    clip_factory=lambda device: tiny_clip(image_size=32).to(device), w_avg_samples=256,
                    edit_num_images=2, workdir=workdir / "sessions", runs_dir=workdir / "runs",
                    train_defaults={"workers": 0, "tensorboard": "false", "sample_videos": 1, "sample_frames": 2})
    return Backend.create(str(ckpt), "cpu", **{**defaults, **kwargs})


def write_photo(path: str | Path, size: int = 48) -> Path:
    """A smooth colourful test photo (PNG)."""
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([x, y, 1 - x * y], -1) * 255
    Image.fromarray(img.astype(np.uint8)).save(path)
    return Path(path)


def write_bad_uploads(folder: str | Path) -> dict[str, Path]:
    """{"text_as_jpg", "empty", "huge", "zip_without_videos", "not_a_zip"} -> files."""
    from PIL import Image

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    out = {"text_as_jpg": d / "notes.jpg", "empty": d / "empty.png", "huge": d / "huge.png",
           "zip_without_videos": d / "novideos.zip", "not_a_zip": d / "fake.zip"}
    out["text_as_jpg"].write_text("this is not an image\n")
    out["empty"].write_bytes(b"")
    Image.new("1", (8000, 6250)).save(out["huge"])  # 50 megapixels, a few kB as a 1-bit PNG
    with zipfile.ZipFile(out["zip_without_videos"], "w") as z:
        z.writestr("readme.txt", "no videos in here")
        z.writestr("data/table.csv", "a,b\n1,2\n")
    buf = io.BytesIO(b"PK\x03\x04 this is not really a zip")
    out["not_a_zip"].write_bytes(buf.getvalue())
    return out


def write_video_zip(path: str | Path, num_videos: int = 2, frames: int = 12, size: int = 24) -> Path:
    """A zip of tiny mp4 videos (moving gradients) for the Train tab's prepare-on-the-fly path."""
    import imageio.v2 as imageio

    path = Path(path)
    tmp = path.parent / (path.stem + "-videos")
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for v in range(num_videos):
            base = rng.integers(0, 255, [size, size, 3], dtype=np.uint8)
            f = tmp / f"clip{v}.mp4"
            with imageio.get_writer(f, fps=25, codec="libx264", macro_block_size=8, pixelformat="yuv420p") as w:
                for j in range(frames):
                    w.append_data(np.roll(base, j, axis=1))
            z.write(f, f"videos/{f.name}")
    return path


# ------------------------------------------------------------------------------------------ browser helpers

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Move the time slider as a user would (set the range input, fire `input`), then wait until the frame's
# <img> shows a new, fully decoded picture; returns the milliseconds in between, measured in the page.
_SCRUB_JS = """
async ([sliderId, value]) => {
  const range = document.querySelector('#' + sliderId + ' input[type=range]');
  const img0 = document.querySelector('#gen-frame img');
  const before = img0 ? img0.src : null;
  const t0 = performance.now();
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  setter.call(range, String(value));
  range.dispatchEvent(new Event('input', {bubbles: true}));
  while (true) {
    const img = document.querySelector('#gen-frame img');
    if (img && img.src && img.src !== before && img.complete && img.naturalWidth > 0) {
      await img.decode().catch(() => {});
      return performance.now() - t0;
    }
    if (performance.now() - t0 > 30000) return -1;
    await new Promise(r => requestAnimationFrame(r));
  }
}
"""


def open_browser(playwright):
    """Debian's chromium, headless; never a downloaded browser."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def studio_page(backend: Backend):
    """The studio served on a free local port and one headless chromium page open on it; afterwards the
    browser, the server and any training run are closed."""
    from playwright.sync_api import sync_playwright

    from studio.app import launch

    app, url = launch(backend, port=free_port(), block=False, quiet=True)
    try:
        with sync_playwright() as p:
            browser = open_browser(p)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            yield page
            browser.close()
    finally:
        backend.training.stop(timeout=10)
        app.close()


def scrub_latencies(page, values) -> list[float]:
    """Browser-measured slider-move -> new-frame-shown latencies (ms), one per value (values must differ)."""
    return slider_latencies(page, "gen-time", values)


def slider_latencies(page, slider_id: str, values) -> list[float]:
    """Like scrub_latencies for any slider of the Generate tab whose move redraws #gen-frame."""
    page.wait_for_selector("#gen-frame img", timeout=120_000)
    out = []
    for v in values:
        ms = page.evaluate(_SCRUB_JS, [slider_id, float(v)])
        if ms < 0:
            raise TimeoutError(f"the frame did not update within 30 s after moving {slider_id} to {v}")
        out.append(ms)
    return out
