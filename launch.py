"""Start the StyleGAN-V Studio.

    python launch.py [--checkpoint PATH] [--device auto|cpu|cuda] [--host 127.0.0.1] [--port 7860]
                     [--share] [--auth USER:PASS] [--offline] [--clip-weights FILE]

Without --checkpoint the bundled assets/default-model.safetensors is used; when that file is missing the
studio starts with a randomly initialised `small` model and says so on the page. With --offline nothing is
downloaded: LPIPS and CLIP weights come from explicit files ($SGV_LPIPS_WEIGHTS, $SGV_CLIP_WEIGHTS) or the
cache, and training runs started from the studio get `--offline` too.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python launch.py", description="StyleGAN-V Studio (Gradio web UI)")
    ap.add_argument("--checkpoint", default=None, help=".safetensors (ours) or released .pkl")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    ap.add_argument("--auth", default=None, metavar="USER:PASS", help="require this login")
    ap.add_argument("--runs", default="runs", help="folder for training runs started from the studio")
    ap.add_argument("--max-jobs", type=int, default=1, help="heavy jobs at once on the device")
    ap.add_argument("--clip-weights", default=None, metavar="FILE", help="CLIP ViT-B/32 weights for text edits "
                    "(open_clip state dict, OpenAI .pt or safetensors); else $SGV_CLIP_WEIGHTS, the cache, a download")
    ap.add_argument("--offline", action="store_true", help="never download weights (LPIPS, CLIP, metric "
                    "detectors): explicit files and the cache only")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            print("error: --auth takes USER:PASS", file=sys.stderr)
            return 2
        auth = (user, password)
    if args.host not in ("127.0.0.1", "localhost") and auth is None:
        logging.warning("binding to %s without --auth: anyone who can reach this port can use the studio",
                        args.host)
    from studio.app import launch
    from studio.backend import Backend
    from studio.inputs import StudioError

    try:
        backend = Backend.create(args.checkpoint, args.device, runs_dir=args.runs, max_jobs=max(1, args.max_jobs),
                                 offline=args.offline, clip_weights=args.clip_weights)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # SIGTERM (a service manager, `kill`) ends like Ctrl+C: through launch()'s cleanup, which removes the
    # studio's temporary sgv-studio-* folder instead of leaving it behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    launch(backend, host=args.host, port=args.port, share=args.share, auth=auth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
