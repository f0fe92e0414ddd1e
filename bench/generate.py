"""Generator benchmarks: frames/s per preset, the modconv layouts, cost of far times, memory while streaming.

    python bench/generate.py                       # all three measurements on the current device
    python bench/generate.py --stream-minutes 10   # longer streaming run (memory must stay flat)

Prints figures; record them with the machine and date in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import weight_cache  # noqa: E402
from core.config import preset  # noqa: E402
from core.generator import Generator, z_from_seed  # noqa: E402
from core.motion import Motion  # noqa: E402
from core.render import Timeline, render_video  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def time_frames(G, device, t_values, batch: int, repeats: int, **synthesis_kwargs) -> float:
    """Fastest of `repeats` synthesis calls rendering `batch` videos at times `t_values` (the minimum is
    the estimate least disturbed by other load on a shared machine)."""
    z = z_from_seed(list(range(batch)), G.z_dim, device)
    ws = G.mapping(z)
    t = torch.tensor([t_values], dtype=torch.float64, device=device).expand(batch, -1)
    motion = Motion.from_seeds(list(range(batch)))
    G.synthesis(ws, t, motion, **synthesis_kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        G.synthesis(ws, t, motion, **synthesis_kwargs)
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_fps(device, presets, batch, repeats):
    print("== frames per second (batch of videos x 1 frame, t = 0)")
    for name in presets:
        G = Generator(preset(name)).eval().to(device)
        sec = time_frames(G, device, [0.0], batch, repeats)
        print(f"preset {name:>5}: {batch / sec:8.2f} frames/s  ({sec * 1000 / batch:.1f} ms/frame, batch {batch})")


LAYOUTS = {  # how the modulated convolutions run (core/synthesis.py)
    "grouped per frame": dict(fused_modconv=True),  # the reference's inference rule for fp32
    "shared conv": dict(fused_modconv=False),  # the default (NHWC on the CPU from 4 frames)
    "shared, NCHW": dict(fused_modconv=False, channels_last=False),
    "shared, no weight cache": dict(fused_modconv=False),  # core/weight_cache.py disabled
    "per video": dict(per_video=True),  # frame-major: one folded weight per video
}


def bench_layouts(device, name, repeats, shapes):
    print(f"== modconv layouts, preset {name}: frames/s for N videos x T frames (ratio to grouped per frame)")
    G = Generator(preset(name)).eval().to(device)
    for n, num_t in shapes:
        t_values = [float(j) for j in range(num_t)]
        best = dict.fromkeys(LAYOUTS, float("inf"))
        for _ in range(3):  # interleaved, so drifting background load hits all alike
            for label, kw in LAYOUTS.items():
                with weight_cache.disabled() if "no weight cache" in label else contextlib.nullcontext():
                    best[label] = min(best[label], time_frames(G, device, t_values, n, repeats, **kw))
        base = best["grouped per frame"]
        cells = ", ".join(f"{label} {n * num_t / sec:7.1f} ({base / sec:.2f}x)" for label, sec in best.items())
        print(f"  N={n} T={num_t}: {cells}")


def bench_far_time(device, name, repeats):
    print(f"== one frame at t = 90,000 (1 h at 25 fps) vs t = 0, preset {name}")
    G = Generator(preset(name)).eval().to(device)
    near = far = float("inf")
    for _ in range(3):  # interleaved, so drifting background load hits both alike
        near = min(near, time_frames(G, device, [0.0], 1, repeats))
        far = min(far, time_frames(G, device, [90000.0], 1, repeats))
    print(f"t=0: {near * 1000:.1f} ms, t=90000: {far * 1000:.1f} ms, ratio far/near = {far / near:.3f}")
    return far / near


def reference_far_time(repo: str, name: str, repeats: int):
    """The same measurement on the reference implementation (a local clone given by the user; nothing of
    it is part of this project). It needs omegaconf. Its generator recomputes motion codes for [0, t]."""
    import numpy as np

    sys.path[:0] = [repo, str(Path(repo) / "src")]
    from omegaconf import OmegaConf
    from src.training import networks

    cfg = preset(name)
    m, s = cfg.motion, cfg.synthesis
    gcfg = OmegaConf.create(dict(
        sampling=dict(type="random", num_frames_per_video=3, max_num_frames=1024), use_noise=False,
        input=dict(type="temporal"), w_dim=cfg.mapping.w_dim, z_dim=cfg.mapping.z_dim, c_dim=0,
        motion=dict(z_dim=m.z_dim, v_dim=m.z_dim, motion_z_distance=m.delta_z, gen_strategy="conv",
                    kernel_size=m.kernel_size, fourier=True),
        time_enc=dict(cond_type="concat_const", dim=m.num_freqs, min_period_len=m.min_period,
                      max_period_len=m.max_period)))
    RG = networks.Generator(c_dim=0, w_dim=cfg.mapping.w_dim, img_resolution=s.img_resolution, img_channels=3,
                            mapping_kwargs=dict(num_layers=2, cfg=gcfg), cfg=gcfg,
                            synthesis_kwargs=dict(channel_base=s.channel_base, channel_max=s.channel_max)).eval()
    z, c = torch.randn(1, cfg.mapping.z_dim), torch.zeros(1, 0)

    def run(t):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                RG(z, c, torch.tensor([[t]]), force_fp32=True)
            best = min(best, time.perf_counter() - t0)
        return best

    near, far = run(0.0), run(90000.0)
    print(f"reference: t=0: {near * 1000:.1f} ms, t=90000: {far * 1000:.1f} ms, ratio far/near = {far / near:.2f}"
          f" (motion codes for {int(np.ceil(90000 / m.delta_z)) + 22} tokens per frame)")


def bench_stream(device, name, minutes, fps):
    print(f"== streaming {minutes:g} min at {fps:g} fps to mp4, preset {name}")
    G = Generator(preset(name)).eval().to(device)
    tl = Timeline(duration=minutes * 60, fps=fps)
    marks, start = [], time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def cb(done, total):
        if done % max(1, total // 10) == 0 or done == total:
            marks.append((done, time.perf_counter() - start, rss_mb()))

    with tempfile.TemporaryDirectory() as tmp:
        out = render_video(G, Path(tmp) / "long.mp4", tl, content_seeds=[0], motion_seeds=[0], callback=cb)
        size = out.stat().st_size
    for done, sec, mb in marks:
        print(f"  frame {done:6d} (t = {tl.times(done - 1)[0]:9.1f}): {sec:7.1f} s elapsed, RSS {mb:7.1f} MB")
    rss = [m[2] for m in marks]
    print(f"RSS first/last/max: {rss[0]:.0f} / {rss[-1]:.0f} / {max(rss):.0f} MB; mp4 {size / 2**20:.1f} MiB")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--presets", default="tiny,small,256")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--far-preset", default="small")
    p.add_argument("--layout-preset", default="small")
    p.add_argument("--layout-shapes", default="1x1,4x1,1x8,4x8", help="N videos x T frames, comma-separated")
    p.add_argument("--stream-preset", default="small")
    p.add_argument("--stream-minutes", type=float, default=1.0)
    p.add_argument("--stream-fps", type=float, default=25.0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadiest on a busy machine)")
    p.add_argument("--reference-repo", default=None, help="local clone of universome/stylegan-v to compare")
    p.add_argument("--skip", default="", help="comma list of fps,layouts,far,stream to skip")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), {os.cpu_count()} cpus, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    skip = set(args.skip.split(","))
    if "fps" not in skip:
        bench_fps(device, args.presets.split(","), args.batch, args.repeats)
    if "layouts" not in skip:
        shapes = [tuple(int(v) for v in item.split("x")) for item in args.layout_shapes.split(",")]
        bench_layouts(device, args.layout_preset, args.repeats, shapes)
    if "far" not in skip:
        bench_far_time(device, args.far_preset, args.repeats)
        if args.reference_repo:
            reference_far_time(args.reference_repo, args.far_preset, args.repeats)
    if "stream" not in skip:
        bench_stream(device, args.stream_preset, args.stream_minutes, args.stream_fps)


if __name__ == "__main__":
    main()
