"""Helpers shared by the tabs: errors as UI messages, background jobs with live updates, display sizes."""

from __future__ import annotations

import functools
import inspect
import logging
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

_OUR_PACKAGES = ("core", "projection", "editing", "training", "studio")
DISPLAY_SIZE = 256  # frames are upscaled (nearest) to at least this many pixels for the page


def message_for(exc: BaseException) -> str:
    """The text the user sees for an exception: ours speak for themselves, others get a short summary."""
    from studio.backend import JobCancelled

    if isinstance(exc, JobCancelled):
        return "Cancelled."
    if type(exc).__module__.split(".")[0] in _OUR_PACKAGES:
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Out of memory: try a shorter video, fewer seeds or a smaller model."
    log.error("unexpected error in a studio handler", exc_info=exc)
    return (f"Unexpected error ({type(exc).__name__}: {exc}). The studio is still running; the server log "
            "has the details.")


def ui_errors(fn: Callable) -> Callable:
    """Turn every exception of a handler (plain or generator) into a gr.Error message: never a traceback."""
    import gradio as gr

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise gr.Error(message_for(exc), print_exception=False) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise gr.Error(message_for(exc), print_exception=False) from None
    return wrapper


_DONE = object()


def stream_job(work: Callable[[Callable[[object], None]], object]) -> Iterator[tuple[str, object]]:
    """Run `work(emit)` in a thread; yield ("update", x) for every emit(x), then ("result", value).

    Long jobs report previews through emit while the Gradio generator handler turns them into live UI
    updates. An exception in the job is re-raised here, in the handler's thread.
    """
    q: queue.Queue = queue.Queue()
    box: dict = {}

    def run():
        try:
            box["result"] = work(lambda x: q.put(x))
        except BaseException as exc:  # handed over to the consumer thread
            box["error"] = exc
        finally:
            q.put(_DONE)

    threading.Thread(target=run, daemon=True, name="studio-job").start()
    while True:
        item = q.get()
        if item is _DONE:
            break
        # Only the latest of several queued previews matters to the page.
        while not q.empty():
            nxt = q.get()
            if nxt is _DONE:
                q.put(_DONE)
                break
            item = nxt
        yield "update", item
    if "error" in box:
        raise box["error"]
    yield "result", box.get("result")


def display(img: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """uint8 `[H, W, 3]` -> upscaled by an integer factor (nearest) so small models are visible."""
    assert img.dtype == np.uint8 and img.ndim == 3, (img.dtype, img.shape)
    k = max(1, -(-size // max(img.shape[0], img.shape[1])))
    return img if k == 1 else img.repeat(k, axis=0).repeat(k, axis=1)


def side_by_side(*imgs: np.ndarray, gap: int = 4) -> np.ndarray:
    """Images of equal height next to each other with a white gap."""
    h = max(i.shape[0] for i in imgs)
    parts = []
    for i, img in enumerate(imgs):
        if img.shape[0] != h:
            img = display(img, h)[:h]
        parts.append(img)
        if i < len(imgs) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def session_of(request) -> str:
    return getattr(request, "session_hash", None) or "local"


class Progress:
    """Adapter: core-style callback(done, total) -> gr.Progress (or any callable(frac, desc=...)),
    raising JobCancelled when the session's cancel event is set."""

    def __init__(self, progress: Callable | None, cancel: threading.Event | None, desc: str):
        self.progress, self.cancel, self.desc = progress, cancel, desc

    def __call__(self, done: int, total: int) -> None:
        from studio.backend import JobCancelled

        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelled("cancelled")
        if self.progress is not None:
            self.progress(done / max(total, 1), desc=f"{self.desc} {done}/{total}")


def number_input(value, label: str, **kwargs):
    """A gr.Number whose server side turns a non-number from an API client into a message naming the field
    (Gradio's own preprocessing fails on it with a TypeError that clients see as a generic "upstream app
    raised an exception"). The handlers validate ranges themselves (studio.inputs.number). The check wraps
    the instance's preprocess: subclassing a Gradio component makes Gradio write a .pyi next to this file."""
    import gradio as gr

    component = gr.Number(value, label=label, **kwargs)
    preprocess = component.preprocess

    def checked(payload):
        if payload is not None and not isinstance(payload, (int, float)):
            try:
                payload = float(payload)
            except (TypeError, ValueError):
                raise gr.Error(f"{label} must be a number, got {payload!r}", print_exception=False) from None
        if payload is not None and component.minimum is not None and payload < component.minimum:
            # Gradio's own check says the same but prints a traceback into the server log
            raise gr.Error(f"{label} must be >= {component.minimum:g}, got {payload!r}", print_exception=False)
        return preprocess(payload)

    component.preprocess = checked
    return component
