"""Plumbing shared by the weight resolvers (LPIPS, CLIP, I3D, Inception): the user cache and one fast
network check, so that every resolver looks in the same place and fails fast, the same way, offline."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path


def cache_dir() -> Path:
    """$SGV_CACHE if set, else ~/.cache/stylegan-v-studio."""
    env = os.environ.get("SGV_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stylegan-v-studio"


def network_available(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """One TCP connect to `host` (DNS included) bounded by `timeout`.

    There is no switch here: callers that must stay offline say so with their resolver's parameters
    (`allow_download=False`, `offline=True`, a `network_check` returning False), set by the entry points'
    `--offline` flags, and then this check is not reached at all.
    """
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    th = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    th.start()
    th.join(timeout)
    return bool(ok)
