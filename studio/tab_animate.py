"""Animate a photo: project it into W / W+ at t = 0 (live reconstruction), fit the generator to it (pivotal
tuning, on by default), then animate the latent with several motion seeds."""


import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.render import Timeline
from projection.tuning import TuneOptions
from studio.backend import Backend
from studio.common import display, session_of, side_by_side, stream_job, ui_errors
from studio.inputs import StudioError, number, parse_seeds
from studio.uploads import IMAGE_SUFFIXES, check_image

MAX_STEPS = 1000
FAR_LPIPS = 0.3  # above this a reconstruction does not look like the photo: say so


def load_target(backend: Backend, upload, face_crop: bool) -> np.ndarray:
    """The uploaded photo as the projector will see it: uint8 `[R, R, 3]` at the model's resolution."""
    from projection.photo import load_photo

    path = check_image(upload)
    G = backend.G
    return load_photo(str(path), G.img_resolution, face=bool(face_crop), channels=G.img_channels)


def _has_face(upload) -> bool:
    from projection.photo import detect_face, open_image

    return detect_face(open_image(str(check_image(upload)))) is not None


def preview(backend: Backend, upload, face_crop: bool) -> np.ndarray | None:
    if upload is None:
        return None
    return display(load_target(backend, upload, face_crop))


def animate(backend: Backend, upload, face_crop: bool, mode: str, steps, motion_seeds: str, seconds: float = 3.0,
            fps: float = 25.0, session: str = "local", fit: bool = True, tune_steps=None) -> Iterator[dict]:
    """Project, optionally fit the generator to the photo (pivotal tuning), then animate. Yields dicts of
    partial results, the last one complete: {"status", "preview"} while working; then {"comparison",
    "video", "latent", "state", ...}. The loaded model is never changed: tuned weights are a per-photo
    file that the browser client's state and the latent file reference."""
    from projection.tuning import TuneOptions

    steps = number(steps, "projection steps", 1, MAX_STEPS, integer=True)
    tune_steps = number(tune_steps, "tuning steps", 1, MAX_STEPS, integer=True, default=TuneOptions.steps)
    mode = {"W": "w", "W+": "w+"}.get(mode, mode)
    if mode not in ("w", "w+"):
        raise StudioError(f"mode must be W or W+, got {mode!r}")
    seeds = parse_seeds(motion_seeds, "motion seeds", limit=8)
    seconds = number(seconds, "animation length (s)", 0.1, 20)
    fps = number(fps, "frame rate (fps)", 1, 60)
    target = load_target(backend, upload, face_crop)
    no_face = "No face found in the photo: the whole photo was used. " if face_crop and not _has_face(upload) else ""
    cancel = backend.cancel_event(session)
    cancel.clear()
    G = backend.G  # this job keeps the model it started with
    lpips_model = backend.lpips()

    result = yield from _project(backend, G, target, mode, steps, seeds[0], lpips_model, cancel)
    if result is None:
        return
    tuned = None
    if fit:
        tuned = yield from _tune(backend, G, result, TuneOptions(steps=tune_steps), lpips_model, cancel)
        if tuned is None:
            return
    out = backend.session_dir(session)
    stem = f"photo-{time.strftime('%H%M%S')}"
    recon, lp, psnr = result.reconstruction, result.lpips, result.psnr
    delta_path = None
    if tuned is not None:
        from core.tuned import save_delta

        delta_path = str(save_delta(out / f"{stem}-latent.tuned.safetensors", tuned.delta, backend.model_hash()))
        recon, lp, psnr = tuned.reconstruction, tuned.lpips, tuned.psnr
    state = {"ws": result.ws.numpy(), "motion_seed": seeds[0], "t": result.t, "source": "projected photo",
             "tuned": delta_path}
    fitted = f"fitted generator: LPIPS {lp:.3f}, PSNR {psnr:.1f} dB" if tuned else "generator not fitted"
    summary = f"Projection LPIPS {result.lpips:.3f}, PSNR {result.psnr:.1f} dB; {fitted}"
    if lp > FAR_LPIPS:
        summary += (f". ⚠ The reconstruction is far from the photo (LPIPS {lp:.2f} > {FAR_LPIPS}): this model "
                    f"draws {G.img_resolution}x{G.img_resolution} scenes like its training data (Model tab)")
    yield {"status": f"{summary}. Animating {len(seeds)} motion seeds...",
           "preview": display(side_by_side(result.target, recon))}
    video = _animate_latent(backend, backend.generator_for(state), result.ws, seeds, out / f"{stem}-motions.mp4",
                            seconds, fps, origin=(seeds[0], result.t))
    latent = backend.save_latent(out / f"{stem}-latent.npz", result.ws, seeds[0], result.t, result.mode,
                                 tuned=delta_path)
    yield {"status": f"{no_face}Done. {summary}; {len(seeds)} animations (motion seeds {', '.join(map(str, seeds))}).",
           "preview": display(side_by_side(result.target, recon)),
           "comparison": display(side_by_side(result.target, recon)),
           "video": str(video), "latent": str(latent), "state": state}


def _project(backend: Backend, G, target, mode, steps, motion_seed, lpips_model, cancel):
    """The projection job with live previews; returns its ProjectionResult, None when cancelled."""
    from projection.projector import project

    def run(callback):
        return project(G, target, steps=steps, mode=mode, motion_seed=motion_seed, lpips_model=lpips_model,
                       lpips_resolution=min(256, max(64, G.img_resolution)), w_avg_samples=backend.w_avg_samples,
                       device=backend.device, callback=callback, preview_every=max(1, steps // 20))

    result = yield from _live(backend, run, target, f"Projecting ({mode.upper()})", cancel)
    if result is not None and cancel.is_set():
        yield {"status": f"Cancelled after {result.steps} projection steps.", "preview": None}
        return None
    return result


def _tune(backend: Backend, G, projected, options, lpips_model, cancel):
    """The pivotal-tuning job with live previews; returns its TuneResult, None when cancelled."""
    from projection.tuning import tune

    def run(callback):
        return tune(G, projected.ws, projected.target, motion_seed=projected.motion_seed, t=projected.t,
                    options=options, lpips_model=lpips_model, lpips_resolution=min(256, max(64, G.img_resolution)),
                    device=backend.device, callback=callback, preview_every=max(1, options.steps // 20))

    head = f"Projected: LPIPS {projected.lpips:.3f}, PSNR {projected.psnr:.1f} dB. Fitting the generator"
    result = yield from _live(backend, run, projected.target, head, cancel)
    if result is not None and cancel.is_set():
        yield {"status": f"Cancelled after {result.steps} tuning steps; nothing was saved.", "preview": None}
        return None
    return result


def _live(backend: Backend, run, target, head: str, cancel):
    """Run `run(callback)` (a projector / tuner taking a step callback) in a job slot, yielding
    "{head}: step k/n, LPIPS x" with photo | current frame previews; returns its result."""
    def work(emit):
        def callback(step):
            if step.preview is not None:
                emit((step.step + 1, step.num_steps, step.lpips, step.preview))
            return not cancel.is_set()

        with backend.job():
            return run(callback)

    result = None
    for kind, item in stream_job(work):
        if kind == "update":
            done, total, lp, img = item
            yield {"status": f"{head}: step {done}/{total}, LPIPS {lp:.3f}",
                   "preview": display(side_by_side(target, img))}
        else:
            result = item
    return result


def _animate_latent(backend: Backend, G, ws, seeds, path, seconds: float, fps: float, origin=None):
    """Every motion seed's tile passes through `origin`'s frame (the photo's reconstruction) at its t."""
    from editing.animate import motion_variations

    with backend.job():
        tl = Timeline(duration=float(seconds), fps=float(fps), native_fps=backend.native_fps)
        return motion_variations(G, ws.to(backend.device), seeds, path, timeline=tl, origin=origin)


SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"  # served to the page (app.py)
SAMPLE_PHOTOS = sorted(SAMPLES_DIR.glob("*.png"))


def build(backend: Backend, latent_state) -> dict:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(label="Photo", file_types=list(IMAGE_SUFFIXES), type="filepath", elem_id="anim-upload")
            if SAMPLE_PHOTOS:  # held-out real frames of the bundled model's domain, as thumbnails
                samples = gr.Gallery([str(p) for p in SAMPLE_PHOTOS], label="Sample photos (click one)",
                                     columns=len(SAMPLE_PHOTOS), height=110, allow_preview=False,
                                     elem_id="anim-samples")

                def on_sample(evt: gr.SelectData):
                    return str(SAMPLE_PHOTOS[evt.index])

                samples.select(on_sample, None, upload, api_visibility="private", queue=False)
            from studio.tab_model import photo_hint

            gr.Markdown(photo_hint(backend), elem_id="anim-hint")
            face = gr.Checkbox(False, label="Crop to the face (OpenCV detector)")
            target = gr.Image(label="Target as the model sees it", interactive=False, height=220, format="png")
            with gr.Row():
                mode = gr.Radio(["W", "W+"], value="W+", label="Latent space")
                steps = gr.Slider(1, MAX_STEPS, 100, step=1, label="Projection steps", elem_id="anim-steps")
            fit = gr.Checkbox(True, label="Fit the generator to this photo (pivotal tuning: looks like the photo; "
                              "saved as a small per-photo file, the loaded model is not changed)",
                              elem_id="anim-fit")
            tune_steps = gr.Slider(1, MAX_STEPS, TuneOptions.steps, step=1, label="Tuning steps",
                                   elem_id="anim-tune-steps")
            seeds = gr.Textbox("0, 1, 2", label="Motion seeds (one animation each)")
            seconds = gr.Slider(0.5, 20, 3, step=0.5, label="Animation length (s)")
            with gr.Row():
                go = gr.Button("Animate", variant="primary", elem_id="anim-go")
                cancel_btn = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2, min_width=300):
            status = gr.Markdown("Upload a photo, then press Animate.", elem_id="anim-status")
            with gr.Row():
                live = gr.Image(label="Photo | reconstruction", interactive=False, height=260, format="png",
                                elem_id="anim-live")
                video = gr.Video(label="Animations from the photo (one per motion seed)", autoplay=True, loop=True,
                                 elem_id="anim-video")
            latent = gr.File(label="Latent (.npz)")

    @ui_errors
    def on_upload(u, f):
        return preview(backend, u, f)

    upload.change(on_upload, [upload, face], target, api_name="photo_preview", concurrency_id="light")
    face.change(on_upload, [upload, face], target, api_visibility="private", concurrency_id="light")

    @ui_errors
    def on_animate(u, f, m, n, s, sec, fit_on, tsteps, state, request: gr.Request):
        for out in animate(backend, u, f, m, n, s, sec, session=session_of(request), fit=bool(fit_on),
                           tune_steps=tsteps):
            yield (out["status"], out.get("preview", gr.skip()), out.get("video", gr.skip()),
                   out.get("latent", gr.skip()), out.get("state", state))

    ev = go.click(on_animate, [upload, face, mode, steps, seeds, seconds, fit, tune_steps, latent_state],
                  [status, live, video, latent, latent_state], api_name="animate", concurrency_id="device")

    def on_cancel(request: gr.Request):
        backend.cancel(session_of(request))

    cancel_btn.click(on_cancel, None, None, api_name="cancel_animate", queue=False)
    return {"upload": upload, "video": video, "event": ev}
