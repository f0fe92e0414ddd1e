"""Scrub latency of the studio: time-slider move -> new frame shown, measured in a real browser.

    python bench/scrub_latency.py [--checkpoint PATH] [--device cpu] [--moves 25]

Starts the studio (the bundled default model, or a random `small` model when that file is missing,
exactly as `python launch.py` does), opens it in Debian chromium (headless, via Playwright), moves the
time slider to `--moves` different fractional positions one after another and, inside the page, times
each from the `input` event to the moment the new frame's <img> is decoded. For reference it also times
the back end alone (one synthesis call per frame, in this process, no HTTP). Prints the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10) if len(ms) >= 2 else [ms[0]] * 9
    return (f"median {statistics.median(ms):.0f} ms, p10 {q[0]:.0f} ms, p90 {q[-1]:.0f} ms, "
            f"min {min(ms):.0f} ms, max {max(ms):.0f} ms (n={len(ms)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--moves", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from studio.backend import Backend
    from studio.testing import CHROMIUM, scrub_latencies, studio_page

    if not os.path.exists(CHROMIUM):
        print(f"chromium not found at {CHROMIUM}: apt-get install -y chromium", file=sys.stderr)
        return 1
    backend = Backend.create(args.checkpoint, args.device)
    print(f"model: {backend.info.summary}; torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    positions = [0.05 + 3.9 * ((k * 0.618034) % 1.0) for k in range(args.moves)]  # distinct, spread out

    from studio import tab_generate

    tab_generate.scrub(backend, 0, 0, 0.7, 0.0, 0, 1)  # warm-up
    server_ms = []
    for s in positions:
        t0 = time.perf_counter()
        tab_generate.scrub(backend, 0, 0, 0.7, s + 0.011, 0, 1)
        server_ms.append((time.perf_counter() - t0) * 1000)
    print(f"back end only (one synthesis + upscale, in process): {_summary(server_ms)}")

    with studio_page(backend) as page:
        scrub_latencies(page, [0.013, 0.027])  # warm-up (first requests open the queue connection)
        ms = scrub_latencies(page, positions)
    print(f"browser (slider input -> new frame decoded): {_summary(ms)}")
    print(f"goal <= 150 ms: {'met' if statistics.median(ms) <= 150 else 'NOT met'} (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
