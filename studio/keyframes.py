"""The Generate tab's keyframe timeline: pin the current content (seed, truncation and every control) at the
current time, scrub across the timeline, render it, save it as a project file that `core.generate
--keyframes` renders bit for bit (core.keyframes)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from core.keyframes import (
    EASINGS,
    KeyframeError,
    Keyframes,
    check_compatible,
    load_keyframes,
    render_keyframes,
    save_keyframes,
)
from studio.backend import Backend
from studio.common import display
from studio.controls import Controls, controlled_ws
from studio.inputs import StudioError, number, seed_number


def add(backend: Backend, k: Keyframes | None, second, seed, truncation_psi, controls: Controls | None,
        photo_state: dict | None = None, easing: str = "linear") -> Keyframes:
    """A copy of `k` with the current content pinned at output second `second` (replacing one there)."""
    second = number(second, "keyframe time (s)", 0, 3600)
    if controls is not None and controls.photo and (photo_state or {}).get("tuned"):
        raise StudioError("keyframes render with the loaded model; this photo has a fitted generator of its own. "
                          "Animate it without 'Fit the generator', or keyframe seeds")
    if easing not in EASINGS:
        raise StudioError(f"easing must be one of {', '.join(EASINGS)}")
    out = copy.deepcopy(k) if k is not None else Keyframes()
    try:
        out.add(float(second), controlled_ws(backend, seed, truncation_psi, controls, photo_state), easing)
    except KeyframeError as exc:
        raise StudioError(str(exc)) from None
    return out


def rows(k: Keyframes | None) -> list[list]:
    """The table shown in the tab: [second, easing into the next keyframe]."""
    return [[round(s, 3), e] for s, e in zip(k.seconds, k.easing)] if k else []


def frame(backend: Backend, k: Keyframes, seconds, motion_seed, offset_minutes, slowmo) -> np.ndarray:
    """The timeline's frame at output second `seconds` (what scrubbing shows with the timeline on)."""
    seconds = number(seconds, "time (s)", 0, 3600)
    t = backend.model_time(seconds, offset_minutes, slowmo)
    ws = k.ws_at(np.array([float(seconds)]))
    return display(backend.frame(0, motion_seed, 1.0, t, ws=ws))


def configure(backend: Backend, k: Keyframes | None, motion_seed, fps, duration, slowmo, offset_minutes) -> Keyframes:
    """The timeline with the tab's render settings (motion seed, fps, duration, slow motion, time offset)."""
    if not k or not k.seconds:
        raise StudioError("add a keyframe first (set the content, move the time slider, press Add keyframe)")
    out = copy.deepcopy(k)
    out.motion_seed = seed_number(motion_seed, "motion seed")
    out.fps = number(fps, "frame rate (fps)", 1, 120)
    out.duration = number(duration, "duration (s)", 0.04, 600)
    out.slowmo = number(slowmo, "slow motion", 1 / 64, 64)
    out.t_offset = backend.model_time(0.0, offset_minutes, out.slowmo)
    return out


def render(backend: Backend, k: Keyframes, fmt: str = "mp4", session: str = "local", callback=None) -> Path:
    if fmt not in ("mp4", "gif"):
        raise StudioError("render keyframes as mp4 or gif")
    out = backend.session_dir(session) / f"keyframes-{time.strftime('%H%M%S')}.{fmt}"
    with backend.job():
        return render_keyframes(backend.G, k, out, backend.native_fps, callback)


def save(backend: Backend, k: Keyframes, session: str = "local") -> Path:
    return save_keyframes(backend.session_dir(session) / f"keyframes-{time.strftime('%H%M%S')}.npz", k)


def load(backend: Backend, upload) -> Keyframes:
    from studio.uploads import check_npz

    try:
        k = load_keyframes(check_npz(upload, "keyframes project"))
        check_compatible(k, backend.G)
    except KeyframeError as exc:
        raise StudioError(str(exc)) from None
    return k
