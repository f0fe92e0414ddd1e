"""Studio controls, measured on the bundled model: SeFa directions are real, loops are seamless, sliders are live.

    python bench/controls.py --out bench/results/controls.json [--browser] [--gif assets/controls.gif]

- directions: LPIPS (VGG) between a frame edited along a top SeFa direction and the unedited frame, for
  strengths 0.5 .. 3 (std of w), mean over 8 content seeds; the correlation of two top directions' edits
  (per-pixel mean |difference| maps at strength 2), mean over the seeds; the cached factorization == fresh;
- loops: L = 2 s at 25 fps, 3 motion seeds: LPIPS(last frame, first frame) / mean LPIPS of consecutive frames;
- --browser: slider move -> new frame shown, measured in Debian chromium (Playwright) for the time slider,
  a SeFa slider and the example slider, and for the style-mixing radio; median and p90.
- --gif: a README GIF made with these controls (a SeFa sweep and a seamless loop).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import directions as D  # noqa: E402
from core.checkpoint import load_generator  # noqa: E402
from core.generator import z_from_seed  # noqa: E402
from core.motion import Motion, default_loop  # noqa: E402
from core.render import Timeline, iter_frames, to_uint8  # noqa: E402
from editing.sefa import sefa_directions  # noqa: E402
from projection.lpips_weights import load_lpips  # noqa: E402
from projection.photo import to_tensor  # noqa: E402
from projection.projector import resize_for_lpips  # noqa: E402


@torch.no_grad()
def frame(G, ws, t=8.0, motion_seed=0) -> np.ndarray:
    return to_uint8(G.synthesis(ws, torch.tensor([[t]], dtype=torch.float64), [motion_seed])[0, 0])


@torch.no_grad()
def lpips(lp, a: np.ndarray, b: np.ndarray) -> float:
    x, y = to_tensor(a), to_tensor(b)
    return float(lp(resize_for_lpips(x, 256), resize_for_lpips(y, 256)).mean())


def directions(G, lp, seeds=range(8), strengths=(0.5, 1.0, 2.0, 3.0)) -> dict:
    dirs, values = sefa_directions(G, "all", 4, use_cache=False)
    cached, _ = sefa_directions(G, "all", 4)
    again, _ = sefa_directions(G, "all", 4)
    out = {"eigenvalues": [float(v) for v in values],
           "cached_equals_fresh": all(torch.equal(a.delta, b.delta) and torch.equal(a.delta, c.delta)
                                      for a, b, c in zip(dirs, cached, again))}
    for k in (0, 1):
        out[f"lpips_vs_strength_sefa{k}"] = {}
        for s in strengths:
            vals = []
            for seed in seeds:
                ws = G.mapping(z_from_seed([seed], G.z_dim), None, truncation_psi=0.7)
                vals.append(lpips(lp, frame(G, D.apply(ws, [(dirs[k], s)])), frame(G, ws)))
            out[f"lpips_vs_strength_sefa{k}"][str(s)] = float(np.mean(vals))
    corrs = []
    for seed in seeds:
        ws = G.mapping(z_from_seed([seed], G.z_dim), None, truncation_psi=0.7)
        base = frame(G, ws).astype(np.float64)
        maps = [np.abs(frame(G, D.apply(ws, [(dirs[k], 2.0)])) - base).mean(2).ravel() for k in (0, 1)]
        corrs.append(float(np.corrcoef(*maps)[0, 1]))
    out["difference_map_correlation_sefa0_sefa1"] = float(np.mean(corrs))
    out["difference_map_correlation_per_seed"] = corrs
    return out


def loops(G, lp, native_fps: float, motion_seeds=(0, 1, 2)) -> dict:
    tl = Timeline(duration=2.0, fps=25.0, native_fps=native_fps)
    period = tl.num_frames * native_fps / tl.fps
    period, blend = default_loop(period, G.synthesis.motion_encoder.cfg.delta_z)
    rows = []
    for m in motion_seeds:
        ws = G.mapping(z_from_seed([0], G.z_dim), None, truncation_psi=0.7)
        frames = [f[0] for f in iter_frames(G, ws, Motion.from_seeds([m], loop=(period, blend)), tl)]
        steps = [lpips(lp, a, b) for a, b in zip(frames[:-1], frames[1:])]
        seam = lpips(lp, frames[-1], frames[0])
        rows.append({"motion_seed": m, "seam_lpips": seam, "mean_step_lpips": float(np.mean(steps)),
                     "seam_ratio": seam / float(np.mean(steps)), "frames": len(frames)})
    return {"loop_seconds": 2.0, "fps": 25.0, "period_model_frames": period, "blend_model_frames": blend,
            "seeds": rows}


_RADIO_JS = """
async (label) => {
  const input = [...document.querySelectorAll('#ctl-mix input[type=radio]')].find(i => i.value === label);
  const before = document.querySelector('#gen-frame img').src;
  const t0 = performance.now();
  input.click();
  while (true) {
    const img = document.querySelector('#gen-frame img');
    if (img && img.src !== before && img.complete && img.naturalWidth > 0) {
      await img.decode().catch(() => {});
      return performance.now() - t0;
    }
    if (performance.now() - t0 > 30000) return -1;
    await new Promise(r => requestAnimationFrame(r));
  }
}
"""


def browser(moves: int = 25) -> dict:
    from studio.backend import Backend
    from studio.testing import CHROMIUM, slider_latencies, studio_page

    if not os.path.exists(CHROMIUM):
        return {"error": f"chromium not found at {CHROMIUM}"}
    backend = Backend.create(None, "cpu")
    values = [0.05 + 3.9 * ((k * 0.618034) % 1.0) for k in range(moves)]
    out = {}
    with studio_page(backend) as page:
        page.wait_for_selector("#gen-frame img", timeout=120_000)
        page.get_by_text("Directions, style mixing, truncation cutoff").click()
        page.wait_for_selector("#ctl-sefa0 input[type=range]", timeout=30_000)
        slider_latencies(page, "gen-time", [0.11, 0.23, 0.37, 0.41, 0.53])  # warm-up, not counted
        out["scrub"] = slider_latencies(page, "gen-time", values)
        out["sefa_slider"] = slider_latencies(page, "ctl-sefa0", [v - 2.0 for v in values])
        out["example_slider"] = slider_latencies(page, "ctl-example", [(v - 2.0) / 2 for v in values])
        mixing = []
        for k in range(moves):
            label = ("coarse", "middle", "fine", "none")[k % 4]
            mixing.append(page.evaluate(_RADIO_JS, label))  # click -> new frame decoded, timed in the page
        out["mixing_radio"] = mixing
    return {k: {"median_ms": statistics.median(v), "p90_ms": statistics.quantiles(v, n=10)[-1], "n": len(v)}
            for k, v in out.items()}


def gif(G, path: str, native_fps: float) -> None:
    """Left: a SeFa #0 sweep (-3 .. 3 std and back) on a moving video; right: a seamless 2 s loop."""
    import imageio.v2 as imageio

    dirs, _ = sefa_directions(G, "all", 4)
    ws = G.mapping(z_from_seed([3], G.z_dim), None, truncation_psi=0.7)
    n = 50
    strengths = 3 * np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False))
    period = n * native_fps / 25.0
    looped = Motion.from_seeds([1], loop=default_loop(period, G.synthesis.motion_encoder.cfg.delta_z))
    loop = [f[0] for f in iter_frames(G, ws, looped,
                                      Timeline(duration=2.0, fps=25.0, native_fps=native_fps))]
    frames = []
    for j, s in enumerate(strengths):
        with torch.no_grad():
            left = frame(G, D.apply(ws, [(dirs[0], float(s))]), t=j * native_fps / 25.0, motion_seed=1)
        frames.append(np.concatenate([left, loop[j]], axis=1).repeat(3, 0).repeat(3, 1))
    imageio.mimsave(path, frames, duration=40, loop=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "assets" / "default-model.safetensors"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "controls.json"))
    p.add_argument("--browser", action="store_true")
    p.add_argument("--gif", default=None)
    args = p.parse_args()
    from core.generate import native_fps_of

    G = load_generator(args.checkpoint)
    lp = load_lpips("vgg")
    native = native_fps_of(args.checkpoint)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads",
              "directions": directions(G, lp), "loops": loops(G, lp, native)}
    if args.browser:
        result["browser"] = browser()
    if args.gif:
        gif(G, args.gif, native)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
