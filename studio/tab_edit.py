"""Edit: a text prompt applied to a generated or projected frame (StyleCLIP latent optimization or global
directions), before / after, and the edit animated over time."""


import time
from collections.abc import Iterator

import torch

from core.render import Timeline
from studio.backend import Backend
from studio.common import display, session_of, side_by_side, stream_job, ui_errors
from studio.inputs import StudioError, number, seed_number

METHODS = ("global directions", "latent optimization")
SOURCES = ("generated frame", "projected photo")


def source_latent(backend: Backend, source: str, seed, motion_seed, truncation_psi, t: float,
                  state: dict | None) -> tuple[torch.Tensor, int, float]:
    """(ws [1, num_ws, w_dim], motion seed, model time t) of the frame to edit."""
    if source == "projected photo":
        if not state or state.get("ws") is None:
            raise StudioError("no projected photo in this session yet: animate a photo first (Animate tab)")
        ws = torch.as_tensor(state["ws"], dtype=torch.float32)
        G = backend.G
        if tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
            raise StudioError("the projected photo belongs to another model; project it again")
        return ws, int(state.get("motion_seed", 0)), float(state.get("t", 0.0))
    if source != "generated frame":
        raise StudioError(f"unknown source {source!r}")
    return backend.ws_for(seed, truncation_psi).cpu(), seed_number(motion_seed, "motion seed"), float(t)


def edit(backend: Backend, prompt: str, method: str, source: str, seed, motion_seed, truncation_psi, t: float,
         state: dict | None, strength: float = 4.0, beta: float = 0.1, steps: int = 40, l2: float = 0.001,
         seconds: float = 2.0, fps: float = 25.0, session: str = "local") -> Iterator[dict]:
    """Yields {"status", "preview"} updates, then {"before_after", "video", "latent", "status"}."""
    from editing.animate import motion_variations
    from editing.styleclip import compute_global_directions, global_edit, latent_edit

    prompt = (prompt or "").strip()
    if not prompt:
        raise StudioError("type a prompt, e.g. 'a smiling face'")
    if method not in METHODS:
        raise StudioError(f"method must be one of {', '.join(METHODS)}")
    steps = number(steps, "steps", 1, 500, integer=True)
    strength = number(strength, "strength α", -100, 100)
    beta = number(beta, "disentanglement β", 0, 1)
    l2 = number(l2, "stay-close weight λ_L2", 0, 100)
    seconds = number(seconds, "animation length (s)", 0.1, 20)
    fps = number(fps, "frame rate (fps)", 1, 60)
    ws, mseed, t = source_latent(backend, source, seed, motion_seed, truncation_psi, t, state)
    clip = backend.clip()  # ClipWeightsError (offline, no weights) becomes the resolver's message in the UI
    cancel = backend.cancel_event(session)
    cancel.clear()
    photo_state = state if source == "projected photo" else None  # its tuned weights, if it has them
    G = backend.private_G(photo_state)  # style offsets hook into the model: edit a copy, scrubbing goes on

    def work(emit):
        with backend.job():
            if method == "global directions":
                def progress(done, total):
                    if cancel.is_set():
                        raise InterruptedError("cancelled")
                    emit((f"Measuring each style channel's CLIP direction (once per model): {done}/{total}", None))

                directions = compute_global_directions(G, clip, num_images=backend.edit_num_images,
                                                       callback=progress)
                return global_edit(G, ws, prompt, clip, directions, alpha=float(strength), beta=float(beta),
                                   motion_seed=mseed, t=t)

            def callback(step, loss, preview):
                emit((f"Optimizing: step {step + 1}/{steps}, loss {loss:.4f}", preview))
                return not cancel.is_set()

            return latent_edit(G, ws, prompt, clip, steps=int(steps), l2_lambda=float(l2), motion_seed=mseed, t=t,
                               callback=callback)

    before = backend.frame(0, mseed, 1.0, t, ws=ws, G=backend.generator_for(photo_state))
    result = None
    try:
        for kind, item in stream_job(work):
            if kind == "update":
                text, img = item
                yield {"status": text, "preview": display(img) if img is not None else None}
            else:
                result = item
    except InterruptedError:
        result = None
    if result is None or cancel.is_set():
        yield {"status": "Cancelled.", "preview": None}
        return
    out = backend.session_dir(session)
    stem = f"edit-{time.strftime('%H%M%S')}"
    with backend.job():
        tl = Timeline(t_offset=t, duration=float(seconds), fps=float(fps), native_fps=backend.native_fps)
        video = motion_variations(G, result.ws.to(backend.device), [mseed], out / f"{stem}.mp4", timeline=tl,
                                  offsets=result.style_offsets or None)
    latent = backend.save_latent(out / f"{stem}-latent.npz", result.ws, mseed, t, "w+", result.style_offsets,
                                 tuned=(photo_state or {}).get("tuned"))
    yield {"status": f"'{prompt}' ({method}): CLIP similarity {result.similarity_before:.3f} -> "
                     f"{result.similarity_after:.3f} in {result.seconds:.1f} s.",
           "before_after": display(side_by_side(before, result.image)), "video": str(video), "latent": str(latent)}


def build(backend: Backend, gen: dict, latent_state, notice: str) -> dict:
    """`notice`: Backend.clip_notice(), what text edits lack ("" when CLIP weights can be had)."""
    import gradio as gr

    gr.Markdown(notice, visible=bool(notice), elem_id="edit-clip-notice")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Frame to edit",
                              info="generated: the Generate tab's seeds, truncation and time")
            prompt = gr.Textbox(label="Prompt", placeholder="a smiling face")
            method = gr.Radio(list(METHODS), value=METHODS[0], label="Method")
            with gr.Group(visible=True) as global_opts:
                strength = gr.Slider(-10, 10, 4, step=0.5, label="Strength α (global directions)")
                beta = gr.Slider(0, 0.5, 0.1, step=0.01, label="Disentanglement β (global directions)")
            with gr.Group(visible=False) as optim_opts:
                steps = gr.Slider(1, 200, 40, step=1, label="Steps (optimization)")
                l2 = gr.Slider(0, 0.05, 0.001, step=0.001, label="Stay-close weight λ_L2 (optimization)")
            method.change(lambda m: (gr.Group(visible=m == METHODS[0]), gr.Group(visible=m == METHODS[1])),
                          method, [global_opts, optim_opts], api_visibility="private", queue=False)
            seconds = gr.Slider(0.5, 10, 2, step=0.5, label="Animation length (s)")
            with gr.Row():
                go = gr.Button("Edit", variant="primary")
                cancel_btn = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2, min_width=300):
            status = gr.Markdown("Type a prompt and press Edit." if not notice else "Text edits need CLIP weights "
                                 "(see above).")
            live = gr.Image(label="Progress", interactive=False, height=220, format="png")
            before_after = gr.Image(label="Before | after", interactive=False, height=260, format="png")
            video = gr.Video(label="The edit over time", autoplay=True, loop=True)
            latent = gr.File(label="Edited latent (.npz)")

    def frame_time(sec, off, slow):
        return backend.model_time(sec, off, slow)

    @ui_errors
    def on_edit(src, p, m, a, b, n, lam, sec_anim, s, ms, psi, sec, off, slow, state, request: gr.Request):
        t = frame_time(sec, off, slow)
        for out in edit(backend, p, m, src, s, ms, psi, t, state, a, b, n, lam, sec_anim,
                        session=session_of(request)):
            yield (out["status"], out.get("preview", gr.skip()), out.get("before_after", gr.skip()),
                   out.get("video", gr.skip()), out.get("latent", gr.skip()))

    inputs = [source, prompt, method, strength, beta, steps, l2, seconds, gen["seed"], gen["motion"], gen["psi"],
              gen["time"], gen["offset"], gen["slowmo"], latent_state]
    ev = go.click(on_edit, inputs, [status, live, before_after, video, latent], api_name="edit",
                  concurrency_id="device")

    def on_cancel(request: gr.Request):
        backend.cancel(session_of(request))

    cancel_btn.click(on_cancel, None, None, api_name="cancel_edit", queue=False)
    return {"event": ev}
