"""Video: invert a real clip (content + motion, then the generator fitted to its frames), then render it at
any instant and frame rate, past its end, looped, with the Animate tab's photo as content, or text-edited;
before | after side by side."""

import dataclasses
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.files import atomic_write
from core.motion import default_loop
from core.render import FrameWriter, Timeline, iter_frames, tile
from projection.video.clip import clip_duration
from projection.video.invert import VideoOptions
from studio.backend import Backend
from studio.common import display, session_of, side_by_side, stream_job, ui_errors
from studio.controls import photo_ws
from studio.inputs import StudioError, number
from studio.uploads import CLIP_SUFFIXES, check_clip

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples" / "clips"
SAMPLE_CLIPS = sorted(SAMPLES_DIR.glob("*.mp4"))
MAX_STEPS = 1000


def invert(backend: Backend, upload, max_frames=32, steps=None, fit: bool = True, tune_steps=None,
           session: str = "local") -> Iterator[dict]:
    """Read and invert a clip. Yields {"status", "preview"} while working, then {"status", "comparison"
    (an mp4: clip | reconstruction), "latent", "state"}. Nothing is saved when it is cancelled."""
    from projection.video import read_clip
    from projection.video.invert import invert_clip, save_inversion

    max_frames = number(max_frames, "frames to invert", 2, 256, integer=True)
    defaults = VideoOptions()
    steps = number(steps, "inversion steps", 1, MAX_STEPS, integer=True, default=defaults.steps)
    tune_steps = number(tune_steps, "tuning steps", 1, MAX_STEPS, integer=True,
                        default=defaults.tune_options.steps)
    path = check_clip(upload)
    G = backend.G  # this job keeps the model it started with
    clip = read_clip(path, G.img_resolution, max_frames=max_frames, native_fps=backend.native_fps)
    notes = "".join(f" Note: {n}." for n in clip.notes)
    options = dataclasses.replace(defaults, steps=steps, tune=bool(fit),
                                  tune_options=dataclasses.replace(defaults.tune_options, steps=tune_steps))
    cancel = backend.cancel_event(session)
    cancel.clear()
    lpips_model = backend.lpips()

    def work(emit):
        def callback(step):
            if step.preview is not None:
                emit((step.stage, step.step + 1, step.num_steps, step.lpips, step.preview))
            return not cancel.is_set()

        with backend.job():
            return invert_clip(G, clip, options, lpips_model=lpips_model, device=backend.device,
                               w_avg_samples=backend.w_avg_samples, callback=callback,
                               preview_every=max(1, steps // 20))

    stages = {"content": "Projecting the first frame", "motion": "Fitting content and motion to every frame",
              "tune": "Fitting the generator to the frames"}
    result = None
    for kind, item in stream_job(work):
        if kind == "update":
            stage, done, total, lp, img = item
            yield {"status": f"{stages[stage]}: step {done}/{total}, LPIPS {lp:.3f}.{notes}",
                   "preview": display(side_by_side(clip.frames[0], img))}
        else:
            result = item
    if result.cancelled:
        yield {"status": "Cancelled; nothing was saved.", "preview": None}
        return
    out = backend.session_dir(session)
    stem = f"clip-{time.strftime('%H%M%S')}"
    latent_path = save_inversion(out / f"{stem}.npz", result, G, backend.info.source)
    state = {"latent": str(latent_path), "tuned": str(latent_path.with_suffix(".tuned.safetensors"))
             if result.delta else None, "times": result.times.tolist(), "clip": str(out / f"{stem}-target.npy")}
    atomic_write(state["clip"], lambda tmp: np.save(tmp, result.target), suffix=".tmp.npy")
    comparison = _write_pairs(out / f"{stem}-comparison.mp4", result.target, result.frames, clip.fps, clip.times)
    fitted = f"; fitted generator LPIPS {result.lpips:.3f} (before fitting {result.untuned_lpips:.3f})" \
        if result.delta else ""
    status = (f"Done: {len(clip.frames)} frames, per-frame LPIPS {result.lpips:.3f}, PSNR {result.psnr:.1f} dB"
              f"{fitted}; the reconstruction moves {result.motion_ratio:.2f}x as much as the clip "
              f"({result.seconds:.0f} s).{notes}")
    yield {"status": status, "preview": display(side_by_side(result.target[0], result.frames[0])),
           "comparison": str(comparison), "latent": str(latent_path), "state": state}


def frame_at(backend: Backend, state: dict | None, t) -> np.ndarray:
    """The inverted clip's frame at model time t (any t >= 0: inside the clip, between frames, past its end)."""
    latent = _clip_latent(backend, state)
    t = number(t, "time (frames)", 0, 1e7)
    G = backend.generator_for(state)
    return display(backend.frame(0, 0, 1.0, t, ws=latent.ws, G=G, motion=latent.motion()))


def render(backend: Backend, state: dict | None, fps=25.0, slowmo=1.0, extend=0.0, loop: bool = False,
           photo_state: dict | None = None, use_photo: bool = False, prompt: str = "", strength=4.0,
           session: str = "local") -> dict:
    """Render the inverted clip: `fps` output frames per second, `slowmo` x slower, `extend` seconds past its
    end, as a seamless loop, with the Animate tab's photo as content and / or a text edit. Output: an mp4 with
    the clip (nearest real frame in time; black past its end) beside the rendering. -> {"video", "status"}."""
    from core.styles import style_offsets

    latent = _clip_latent(backend, state)
    fps = number(fps, "frame rate (fps)", 1, 120)
    slowmo = number(slowmo, "slow motion", 0.1, 16)
    extend = number(extend, "extension (s)", 0, 60)
    strength = number(strength, "edit strength", -100, 100)
    duration = float(latent.clip_duration)
    if use_photo:
        ws, G = photo_ws(backend, photo_state), backend.private_G(photo_state)
    else:
        ws, G = latent.ws, backend.private_G(state)
    loop_frames = default_loop(duration, G.synthesis.motion_encoder.cfg.delta_z) if loop else None
    motion = latent.motion(loop=loop_frames)
    seconds = duration / backend.native_fps * slowmo + extend
    timeline = Timeline(duration=seconds, fps=fps, slowmo=slowmo, native_fps=backend.native_fps)
    real = np.load(state["clip"])
    out = backend.session_dir(session) / f"clip-render-{time.strftime('%H%M%S')}.mp4"
    with backend.job():  # the text edit (minutes the first time per model) holds the device slot too
        offsets, edit_note = _text_edit(backend, G, ws, prompt, strength) if (prompt or "").strip() else ({}, "")
        with style_offsets(G, offsets):
            frames = iter_frames(G, ws.to(backend.device), motion, timeline)
            path = _write_pairs(out, real, frames, fps, np.asarray(state["times"]), timeline.times())
    what = "a seamless loop of the clip" if loop else f"the clip + {extend:g} s past its end"
    return {"video": str(path), "status": f"Rendered {what} at {fps:g} fps, {slowmo:g}x slow motion "
                                          f"({timeline.num_frames} frames){edit_note}."}


def _text_edit(backend: Backend, G, ws, prompt: str, strength: float) -> tuple[dict, str]:
    """StyleCLIP global directions: StyleSpace offsets for `prompt` (needs CLIP weights: says so if missing)."""
    from editing.styleclip import compute_global_directions, global_edit

    clip = backend.clip()
    directions = compute_global_directions(G, clip, num_images=backend.edit_num_images)
    result = global_edit(G, ws.to(backend.device), prompt.strip(), clip, directions, alpha=float(strength))
    return result.style_offsets, f", edited towards '{prompt.strip()}'"


def _write_pairs(path: Path, real: np.ndarray, frames, fps: float, real_times: np.ndarray,
                 times: np.ndarray | None = None) -> Path:
    """An mp4 of [clip frame | rendered frame] pairs. `times` (model time of each rendered frame) picks the
    nearest clip frame; None pairs them one to one. Past the clip's end the left side is black."""
    end = (real_times[-1] + clip_duration(real_times)) / 2  # half a frame interval past the last frame
    with FrameWriter(path, fps) as writer:
        for j, frame in enumerate(frames):
            frame = frame[0] if frame.ndim == 4 else frame
            if times is None:
                left = real[j]
            elif times[j] <= end:
                left = real[int(np.abs(real_times - times[j]).argmin())]
            else:
                left = np.zeros_like(real[0])
            writer.write(tile(np.stack([left, frame]), 1, 2))
    return path


def _clip_latent(backend: Backend, state: dict | None):
    """The clip's latent file, loaded once per file version, checked against the loaded model."""
    from core.latent import check_compatible

    if not state or not state.get("latent"):
        raise StudioError("invert a clip first (upload one or pick a sample, then press Invert)")
    try:
        latent = _load_latent(state["latent"], os.path.getmtime(state["latent"]))
    except OSError:
        raise StudioError("the inverted clip's files are gone: invert it again") from None
    check_compatible(latent, backend.G)  # a model loaded since: LatentFileError, shown as its message
    return latent


@functools.lru_cache(maxsize=16)
def _load_latent(path: str, mtime: float):
    """Scrubbing reads the latent on every slider move: from memory after the first (keyed by mtime)."""
    from core.latent import load_latent

    return load_latent(path)


def build(backend: Backend, photo_state, clip_notice: str) -> dict:
    import gradio as gr

    video_state = gr.State(None)
    defaults = VideoOptions()
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(label="Clip (video, GIF or a strip of frames)", file_types=list(CLIP_SUFFIXES),
                             type="filepath", elem_id="video-upload")
            if SAMPLE_CLIPS:
                samples = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[[p.name] for p in SAMPLE_CLIPS],
                                     label="Sample clips (held out from the bundled model's training)",
                                     type="index", elem_id="video-samples")

                def on_sample(i: int):
                    return str(SAMPLE_CLIPS[i])

                samples.click(on_sample, samples, upload, api_visibility="private", queue=False)
            with gr.Row():
                max_frames = gr.Slider(2, 128, 32, step=1, label="Frames to invert (from the start)",
                                       elem_id="video-frames")
                steps = gr.Slider(1, MAX_STEPS, defaults.steps, step=1, label="Inversion steps",
                                  elem_id="video-steps")
            fit = gr.Checkbox(True, label="Fit the generator to the frames (pivotal tuning)", elem_id="video-fit")
            tune_steps = gr.Slider(1, MAX_STEPS, defaults.tune_options.steps, step=1, label="Tuning steps",
                                   elem_id="video-tune-steps")
            with gr.Row():
                go = gr.Button("Invert", variant="primary", elem_id="video-go")
                cancel_btn = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2, min_width=300):
            status = gr.Markdown("Upload a clip or pick a sample, then press Invert (about 4 minutes for 32 frames "
                                 "on 2 CPU cores).", elem_id="video-status")
            with gr.Row():
                live = gr.Image(label="First frame | current fit", interactive=False, height=220, format="png",
                                elem_id="video-live")
                comparison = gr.Video(label="Clip | reconstruction", autoplay=True, loop=True,
                                      elem_id="video-comparison")
            latent = gr.File(label="Clip latent (.npz; render it with python -m core.generate --latent)")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            t = gr.Slider(0, 256, 0, step=0.05, label="Time t (model frames; past the clip's end it goes on)",
                          elem_id="video-t")
            frame = gr.Image(label="Frame at t", interactive=False, height=220, format="png", elem_id="video-frame")
        with gr.Column(scale=2, min_width=300):
            with gr.Row():
                fps = gr.Number(25, label="Output fps", minimum=1, maximum=120)
                slowmo = gr.Number(1, label="Slow motion (2 = half speed)", minimum=0.1, maximum=16)
                extend = gr.Number(0, label="Extend past the end (s)", minimum=0, maximum=60)
            with gr.Row():
                loop = gr.Checkbox(False, label="Seamless loop", elem_id="video-loop")
                use_photo = gr.Checkbox(False, label="Content from the Animate tab's photo")
            with gr.Row():
                prompt = gr.Textbox("", label="Text edit (optional; needs CLIP weights)", placeholder="a person in red")
                strength = gr.Number(4.0, label="Edit strength")
            if clip_notice:  # say up front that text edits need weights; everything else here works without
                gr.Markdown(clip_notice, elem_id="video-clip-notice")
            render_btn = gr.Button("Render", elem_id="video-render")
            rendered = gr.Video(label="Clip | rendering", autoplay=True, loop=True, elem_id="video-rendered")

    @ui_errors
    def on_invert(u, n, s, f, ts, request: gr.Request):
        for out in invert(backend, u, n, s, bool(f), ts, session=session_of(request)):
            yield (out["status"], out.get("preview", gr.skip()), out.get("comparison", gr.skip()),
                   out.get("latent", gr.skip()), out.get("state", gr.skip()))

    ev = go.click(on_invert, [upload, max_frames, steps, fit, tune_steps],
                  [status, live, comparison, latent, video_state], api_name="invert_clip", concurrency_id="device")

    @ui_errors
    def on_t(st, tt):
        return frame_at(backend, st, tt) if st else gr.skip()

    t.change(on_t, [video_state, t], frame, api_name="clip_frame", concurrency_id="light", queue=False)

    @ui_errors
    def on_render(st, f, sm, ex, lp, ph, use, pr, stg, request: gr.Request):
        out = render(backend, st, f, sm, ex, bool(lp), ph, bool(use), pr, stg, session=session_of(request))
        return out["video"], out["status"]

    render_btn.click(on_render, [video_state, fps, slowmo, extend, loop, photo_state, use_photo, prompt, strength],
                     [rendered, status], api_name="render_clip", concurrency_id="device")

    def on_cancel(request: gr.Request):
        backend.cancel(session_of(request))

    cancel_btn.click(on_cancel, None, None, api_name="cancel_invert", queue=False)
    return {"upload": upload, "event": ev}
