"""Video inversion figures: reconstruction, collapse, interpolation, continuation and time per clip.

    python bench/video_inversion.py --checkpoint assets/default-model.safetensors \
        --out bench/results/video_inversion.json --gif assets/video-inversion.gif

Per clip (first 32 frames at 64x64, the bundled model, the defaults of projection.video.VideoOptions with
tuning on):
- reconstruction: mean per-frame LPIPS (VGG, the projector's) and PSNR, untuned and tuned; seconds;
- collapse: mean consecutive-frame LPIPS of the reconstruction over the real clip's (1 = same motion);
- interpolation: invert the even frames only, render the odd frames' timestamps, compare with the held-back
  odd frames 1..29, against the mean of the two neighbouring frames and against ffmpeg's motion-compensated
  `minterpolate` (the binary inside imageio-ffmpeg) run on the even frames at half the rate;
- continuation: 32 frames past the end; the seam (last inverted frame -> first new one) LPIPS over the real
  clip's mean consecutive LPIPS.
Clips: the four held-out Weizmann clips (assets/samples names them) and the first two talking-head videos in
name order (out of the model's domain; the defaults are not tuned to them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import load_generator  # noqa: E402
from core.generate import native_fps_of  # noqa: E402
from core.render import to_uint8 as frames_to_uint8  # noqa: E402
from projection.lpips_weights import load_lpips  # noqa: E402
from projection.photo import to_tensor  # noqa: E402
from projection.projector import psnr_uint8, resize_for_lpips  # noqa: E402
from projection.video import Clip, VideoOptions, invert_clip, read_clip  # noqa: E402
from projection.video.invert import mean_step_lpips  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WEIZMANN = ["0/00000067.jpg", "1/00000065.jpg", "3/00000069.jpg", "4/00000071.jpg"]
TALKING = ["d0.mp4", "d10.mp4"]


@torch.no_grad()
def lpips_frames(lp, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x, y = (torch.cat([to_tensor(f) for f in v]) for v in (a, b))
    return lp(resize_for_lpips(x, 256), resize_for_lpips(y, 256)).reshape(-1).numpy()


@torch.no_grad()
def render(G, inv, times: np.ndarray) -> np.ndarray:
    Gr = inv.G if inv.G is not None else G
    out = Gr.synthesis(inv.ws, torch.from_numpy(times)[None], inv.motion())[0]
    return frames_to_uint8(out)


def minterpolate(frames: np.ndarray, fps: float) -> np.ndarray:
    """ffmpeg's motion-compensated interpolation of `frames` (at fps) to 2 x fps, lossless PNG in and out."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as d:
        for i, f in enumerate(frames):
            Image.fromarray(f).save(os.path.join(d, f"in{i:04d}.png"))
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-framerate", f"{fps:g}", "-i",
               os.path.join(d, "in%04d.png"), "-vf", f"minterpolate=fps={2 * fps:g}:mi_mode=mci:mc_mode=aobmc:vsbmc=1",
               os.path.join(d, "out%04d.png")]
        subprocess.run(cmd, check=True)
        names = sorted(n for n in os.listdir(d) if n.startswith("out"))
        return np.stack([np.asarray(Image.open(os.path.join(d, n)).convert("RGB")) for n in names])


def interpolation(G, clip: Clip, lp, opts: VideoOptions) -> dict:
    even = Clip(frames=clip.frames[0::2], times=clip.times[0::2], fps=clip.fps / 2, name=clip.name + ":even")
    inv = invert_clip(G, even, opts, lpips_model=lp)
    odd = np.arange(1, len(clip.frames) - 1, 2)  # frames with both neighbours
    real = clip.frames[odd]
    ours = render(G, inv, clip.times[odd])
    blend = ((clip.frames[odd - 1].astype(np.float64) + clip.frames[odd + 1]) / 2).round().astype(np.uint8)
    mi = minterpolate(np.concatenate([even.frames, even.frames[-1:]]), 12.5)  # ffmpeg drops the last steps
    assert np.abs(mi[0].astype(int) - even.frames[0]).mean() < 2, "minterpolate output is not aligned"
    mci = mi[odd]
    out = {}
    for name, frames in (("inverted", ours), ("linear_blend", blend), ("minterpolate", mci)):
        out[name] = {"lpips": float(lpips_frames(lp, frames, real).mean()), "psnr": psnr_uint8(frames, real)}
    out["seconds"] = inv.seconds
    return out


def one_clip(G, path: Path, lp, opts: VideoOptions, native_fps: float) -> tuple[dict, np.ndarray]:
    clip = read_clip(path, G.img_resolution, max_frames=32, native_fps=native_fps)
    started = time.perf_counter()
    inv = invert_clip(G, clip, opts, lpips_model=lp)
    seconds = time.perf_counter() - started
    real_step = mean_step_lpips(clip.frames, lp)
    step = float(np.median(np.diff(clip.times)))
    after = render(G, inv, clip.times[-1] + step * np.arange(1, 33))
    seam = float(lpips_frames(lp, inv.frames[-1:], after[:1])[0])
    slow = render(G, inv, np.arange(0, clip.times[-1] + 1e-9, step / 2))
    row = {"clip": str(path.relative_to(DATA)), "frames": len(clip.frames), "notes": clip.notes,
           "untuned_lpips": inv.untuned_lpips, "lpips": inv.lpips, "psnr": inv.psnr,
           "motion_ratio": inv.motion_ratio, "seconds": seconds, "real_step_lpips": real_step,
           "seam_lpips": seam, "seam_ratio": seam / real_step,
           "continuation_step_ratio": mean_step_lpips(after, lp) / real_step,
           "interpolation": interpolation(G, clip, lp, opts)}
    print(json.dumps(row), flush=True)
    n = 64
    real_panel = np.concatenate([clip.frames, np.repeat(clip.frames[-1:], n - len(clip.frames), 0)])
    ours_panel = np.concatenate([inv.frames, after])[:n]
    slow_panel = np.concatenate([slow, np.repeat(slow[-1:], max(0, n - len(slow)), 0)])[:n]
    return row, np.concatenate([real_panel, ours_panel, slow_panel], axis=2)  # [64, H, 3W, 3]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="assets/default-model.safetensors")
    p.add_argument("--out", default="bench/results/video_inversion.json")
    p.add_argument("--gif", default=None, help="write a before/after GIF of the Weizmann clips here")
    p.add_argument("--only", default=None, help="comma-separated subset: weizmann, talking")
    args = p.parse_args()
    torch.set_num_threads(2)
    G = load_generator(args.checkpoint)
    lp = load_lpips("vgg")
    opts = VideoOptions(tune=True)
    native = native_fps_of(args.checkpoint)
    groups = {"weizmann": [DATA / "weizmann-actions" / c for c in WEIZMANN],
              "talking": [DATA / "talking-heads" / "videos" / c for c in TALKING]}
    chosen = args.only.split(",") if args.only else list(groups)
    rows, panels = [], []
    for group in chosen:
        for path in groups[group]:
            row, panel = one_clip(G, path, lp, opts, native)
            rows.append(dict(row, group=group))
            if group == "weizmann":
                panels.append(panel)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads", "options": repr(opts), "clips": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.gif and panels:
        import imageio.v2 as imageio

        grid = np.concatenate(panels, axis=1)  # clips stacked vertically
        imageio.mimsave(args.gif, list(grid), duration=80, loop=0)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
