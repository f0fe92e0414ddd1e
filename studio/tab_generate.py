"""Generate: seeds, truncation, a continuous time scrubber, renders and a content x motion grid."""


import time

import numpy as np

from core.directions import GROUPS as D_GROUPS
from core.motion import default_loop
from core.render import Timeline
from studio import keyframes as kf_ui
from studio.backend import PSI_RANGE, Backend
from studio.common import Progress, display, number_input, session_of, ui_errors
from studio.controls import MIX_GROUPS, NUM_SEFA, STRENGTH, Controls, controlled_ws, generator_of, parse
from studio.controls import save as save_direction
from studio.inputs import number, parse_seeds, seed_number

MAX_DURATION = 60.0  # seconds of output per render


def timeline(backend: Backend, offset_minutes: float, fps: float, slowmo: float, duration: float) -> Timeline:
    duration = number(duration, "duration (s)", 0.01, MAX_DURATION)
    fps = number(fps, "frame rate (fps)", 1, 120)
    slowmo = number(slowmo, "slow motion", 1 / 64, 64)
    t0 = backend.model_time(0.0, offset_minutes, slowmo)
    return Timeline(t_offset=t0, duration=duration, fps=fps, slowmo=slowmo, native_fps=backend.native_fps)


def scrub(backend: Backend, seed, motion_seed, truncation_psi, seconds, offset_minutes, slowmo,
          controls: Controls | None = None, photo_state: dict | None = None) -> np.ndarray:
    """The frame at output second `seconds` (fractional) after the offset, with the content controls
    (studio.controls) applied: one synthesis call."""
    t = backend.model_time(seconds, offset_minutes, slowmo)
    ws = controlled_ws(backend, seed, truncation_psi, controls, photo_state)
    G = generator_of(backend, controls, photo_state)
    return display(backend.frame(seed, motion_seed, truncation_psi, t, ws=ws, G=G))


def render(backend: Backend, seed, motion_seed, truncation_psi, offset_minutes, fps, slowmo, duration, formats,
           session: str = "local", progress=None, controls: Controls | None = None,
           loop: bool = False, photo_state: dict | None = None) -> tuple[str | None, list[str]]:
    """Render one video (with the content controls) into the chosen formats; returns (mp4 or None, all files).
    `loop`: the whole video is one seamless loop (its last frame leads into its first)."""
    tl = timeline(backend, offset_minutes, fps, slowmo, duration)
    period = tl.num_frames * tl.step  # model frames of the whole video
    delta_z = backend.G.synthesis.motion_encoder.cfg.delta_z
    loop_frames = default_loop(period, delta_z) if loop else None
    cancel = backend.cancel_event(session)
    cancel.clear()
    ws = controlled_ws(backend, seed, truncation_psi, controls, photo_state)
    motion_seed = seed_number(motion_seed, "motion seed")
    from_photo = controls is not None and controls.photo
    source = "photo" if from_photo else f"seed{seed_number(seed, 'seed')}"
    stem = f"{source}-motion{motion_seed}-{time.strftime('%H%M%S')}"
    # a latent of the photo's fitted generator references its tuned weights, so it re-renders the same
    tuned = (photo_state or {}).get("tuned") if from_photo else None
    paths = backend.export(backend.session_dir(session), ws, [int(motion_seed)], tl, list(formats or []), stem,
                           callback=Progress(progress, cancel, "rendering frame"),
                           latent_meta={"motion_seed": int(motion_seed), "t": tl.t_offset, "tuned": tuned,
                                        "mode": "w+" if controls is not None and controls.active else "w"},
                           loop=loop_frames, G=generator_of(backend, controls, photo_state))
    video = paths.get("mp4")
    return (str(video) if video else None), [str(p) for p in paths.values()]


def grid(backend: Backend, content_seeds: str, motion_seeds: str, truncation_psi, offset_minutes, fps, slowmo,
         duration, session: str = "local", progress=None) -> str:
    tl = timeline(backend, offset_minutes, fps, slowmo, duration)
    cs, ms = parse_seeds(content_seeds, "content seeds"), parse_seeds(motion_seeds, "motion seeds")
    cancel = backend.cancel_event(session)
    cancel.clear()
    out = backend.session_dir(session) / f"grid-{time.strftime('%H%M%S')}.mp4"
    psi = number(truncation_psi, "truncation ψ", *PSI_RANGE)
    return str(backend.render_grid(out, cs, ms, psi, tl, Progress(progress, cancel, "grid frame")))


def variations(backend: Backend, seed, truncation_psi, motion_seeds: str, offset_minutes, fps, slowmo, duration,
               controls: Controls | None = None, session: str = "local", progress=None,
               photo_state: dict | None = None) -> str:
    """The current content (controls applied) with several motion seeds, side by side, playing in sync."""
    from editing.animate import motion_variations

    tl = timeline(backend, offset_minutes, fps, slowmo, duration)
    seeds = parse_seeds(motion_seeds, "motion seeds", limit=8)
    ws = controlled_ws(backend, seed, truncation_psi, controls, photo_state)
    G = generator_of(backend, controls, photo_state)
    cancel = backend.cancel_event(session)
    cancel.clear()
    out = backend.session_dir(session) / f"variations-{time.strftime('%H%M%S')}.mp4"
    with backend.job():
        return str(motion_variations(G, ws, seeds, out, timeline=tl,
                                     callback=Progress(progress, cancel, "variations frame")))


def build(backend: Backend, photo_state=None) -> dict:
    """The tab's UI; returns the components other tabs read (seeds, truncation, time). `photo_state`: the
    page's projected photo (Animate tab), which the controls can start from."""
    import gradio as gr

    if photo_state is None:
        photo_state = gr.State(None)

    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            seed = number_input(0, "Content seed", precision=0, minimum=0, elem_id="gen-seed")
            motion = number_input(0, "Motion seed", precision=0, minimum=0, elem_id="gen-motion")
            psi = gr.Slider(0.0, 1.5, 0.7, step=0.05, label="Truncation ψ")
            with gr.Row():
                offset = number_input(0, "Time offset (minutes)", minimum=0, elem_id="gen-offset")
                jump = gr.Button("Jump to minute 60", size="sm")
            with gr.Row():
                fps = gr.Slider(1, 60, 25, step=1, label="Frame rate (fps)")
                slowmo = gr.Slider(0.25, 8, 1, step=0.05, label="Motion speed: slow motion × (continuous)")
            duration = gr.Slider(0.5, MAX_DURATION, 4, step=0.5, label="Duration (s)")
        with gr.Column(scale=1, min_width=300):
            frame = gr.Image(label="Frame", type="numpy", format="png", interactive=False, height=320,
                             elem_id="gen-frame")
            scrubber = gr.Slider(0, 4, 0, step=0.01, label="Time (s): drag to scrub",
                                 elem_id="gen-time")
    with gr.Row():
        formats = gr.CheckboxGroup(["mp4", "gif", "png", "npz"], value=["mp4"], label="Export",
                                   info="mp4 (H.264), GIF, zip of PNG frames, latent .npz (key ws)")
        loop = gr.Checkbox(False, label="Seamless loop (the last frame leads into the first)", elem_id="gen-loop")
        render_btn = gr.Button("Render video", variant="primary", elem_id="gen-render")
        cancel_btn = gr.Button("Cancel", variant="stop")
    with gr.Row():
        video = gr.Video(label="Video", autoplay=True, loop=True, elem_id="gen-video")
        files = gr.File(label="Downloads", file_count="multiple")
    with gr.Accordion("Directions, style mixing, truncation cutoff (live, no CLIP needed)", open=False):
        use_photo = gr.Checkbox(False, label="Start from the Animate tab's photo (its fitted generator too) instead of "
                                "the content seed", elem_id="ctl-photo")
        with gr.Row():
            group = gr.Radio(list(D_GROUPS), value="all", label="Discovered directions (SeFa) act on layers",
                             elem_id="ctl-group")
            cutoff = gr.Slider(0, backend.G.num_ws, backend.G.num_ws, step=1, elem_id="ctl-cutoff",
                               label="Truncation only on the first N layers (all = plain truncation)")
        with gr.Row():
            sefa = [gr.Slider(-STRENGTH, STRENGTH, 0, step=0.1, label=f"SeFa #{i} (std of w)", elem_id=f"ctl-sefa{i}")
                    for i in range(NUM_SEFA)]
        with gr.Row():
            ex_a = number_input(1, "Example: seed A", precision=0, minimum=0)
            ex_b = number_input(0, "minus seed B", precision=0, minimum=0)
            ex_photo = gr.Checkbox(False, label="A = the Animate tab's photo")
            ex_s = gr.Slider(-2, 2, 0, step=0.05, label="Direction by example (A - B) strength", elem_id="ctl-example")
        with gr.Row():
            mix_seed = number_input(1, "Style mixing: second seed", precision=0, minimum=0)
            mix_group = gr.Radio(list(MIX_GROUPS), value="none", label="Layers from the second seed",
                                 elem_id="ctl-mix")
        with gr.Row():
            dir_upload = gr.File(label="Load a direction (.npz)", file_types=[".npz"], type="filepath")
            dir_file = gr.State(None)  # its path (a state, so the scrub API keeps only optional parameters)
            dir_s = gr.Slider(-5, 5, 0, step=0.1, label="Loaded direction strength", elem_id="ctl-file")
        with gr.Row():
            save_which = gr.Dropdown([f"SeFa #{i}" for i in range(NUM_SEFA)] + ["example"], value="SeFa #0",
                                     label="Save direction")
            save_name = gr.Textbox("my-direction", label="Name")
            save_btn = gr.Button("Save", size="sm")
            saved = gr.File(label="Direction file (core.generate --direction FILE:STRENGTH)")
    with gr.Accordion("Keyframes: content pinned in time, interpolated in W+", open=False):
        keyframes = gr.State(None)
        with gr.Row():
            easing = gr.Radio(["linear", "ease-in-out"], value="ease-in-out", label="Easing into the next keyframe")
            add_btn = gr.Button("Add keyframe at the current time", elem_id="kf-add")
            clear_btn = gr.Button("Clear", size="sm")
        kf_table = gr.Dataframe(headers=["second", "easing"], label="Keyframes", interactive=False,
                                elem_id="kf-table")
        kf_preview = gr.Checkbox(False, label="Scrub across the keyframes (the time slider shows the timeline)",
                                 elem_id="kf-preview")
        with gr.Row():
            kf_format = gr.Radio(["mp4", "gif"], value="mp4", label="Render as")
            kf_render = gr.Button("Render keyframes", variant="primary", elem_id="kf-render")
            kf_save = gr.Button("Save project")
        with gr.Row():
            kf_video = gr.Video(label="Keyframes", autoplay=True, loop=True, elem_id="kf-video")
            kf_files = gr.File(label="Project (.npz; python -m core.generate --keyframes FILE) / video")
            kf_load = gr.File(label="Load a project (.npz)", file_types=[".npz"], type="filepath")
    with gr.Accordion("Motion variations and the content × motion grid", open=False):
        with gr.Row():
            var_motion = gr.Textbox("0-3", label="Motion seeds for the current content (side by side)")
            var_btn = gr.Button("Render variations", elem_id="gen-variations")
        var_video = gr.Video(label="Motion variations (in sync)", autoplay=True, loop=True, elem_id="var-video")
        with gr.Row():
            grid_content = gr.Textbox("0-3", label="Content seeds (columns)")
            grid_motion = gr.Textbox("0-2", label="Motion seeds (rows)")
            grid_btn = gr.Button("Render grid")
        grid_video = gr.Video(label="Grid", autoplay=True, loop=True)

    control_inputs = [group, *sefa, ex_a, ex_b, ex_s, dir_file, dir_s, mix_seed, mix_group, cutoff, use_photo,
                      ex_photo, photo_state]
    scrub_inputs = [seed, motion, psi, scrubber, offset, slowmo, keyframes, kf_preview, *control_inputs]

    def controls_of(values) -> tuple[Controls, dict | None]:
        """UI values of control_inputs -> (Controls, the Animate tab's photo state)."""
        g, *rest = values
        strengths, (a, b, es, f, fs, ms, mg, cut, ph, ex_ph, ph_state) = rest[:NUM_SEFA], rest[NUM_SEFA:]
        controls = parse(g, strengths, a, b, es, ((f, fs),) if f else (), ms, mg, cut, num_ws=backend.G.num_ws,
                         photo=bool(ph), example_photo=bool(ex_ph))
        return controls, ph_state

    @ui_errors
    def on_scrub(s, m, p, sec, off, slow, kf, kf_on, *ctl):
        if kf_on and kf is not None:
            return kf_ui.frame(backend, kf, sec, m, off, slow)
        return scrub(backend, s, m, p, sec, off, slow, *controls_of(ctl))

    @ui_errors
    def on_add(kf, sec, s, p, e, *ctl):
        out = kf_ui.add(backend, kf, sec, s, p, *controls_of(ctl), easing=e)
        return out, kf_ui.rows(out)

    add_btn.click(on_add, [keyframes, scrubber, seed, psi, easing, *control_inputs], [keyframes, kf_table],
                  api_name="add_keyframe", concurrency_id="light")
    clear_btn.click(lambda: (None, []), None, [keyframes, kf_table], api_visibility="private")

    @ui_errors
    def on_kf_render(kf, m, f, dur, slow, off, fmt, request: gr.Request, progress=gr.Progress()):
        k = kf_ui.configure(backend, kf, m, f, dur, slow, off)
        cancel = backend.cancel_event(session_of(request))
        cancel.clear()
        path = kf_ui.render(backend, k, fmt, session_of(request), Progress(progress, cancel, "keyframe frame"))
        return str(path), [str(path)]

    kf_render.click(on_kf_render, [keyframes, motion, fps, duration, slowmo, offset, kf_format],
                    [kf_video, kf_files], api_name="render_keyframes", concurrency_id="device")

    @ui_errors
    def on_kf_save(kf, m, f, dur, slow, off, request: gr.Request):
        k = kf_ui.configure(backend, kf, m, f, dur, slow, off)
        return [str(kf_ui.save(backend, k, session_of(request)))]

    kf_save.click(on_kf_save, [keyframes, motion, fps, duration, slowmo, offset], kf_files,
                  api_name="save_keyframes", concurrency_id="light")

    @ui_errors
    def on_kf_load(upload):
        if upload is None:
            return gr.skip(), gr.skip()
        k = kf_ui.load(backend, upload)
        return k, kf_ui.rows(k)

    kf_load.change(on_kf_load, kf_load, [keyframes, kf_table], api_visibility="private", concurrency_id="light")

    # The scrubber: `input` fires while dragging; "always_last" drops stale positions so the frame keeps up.
    # queue=False: a plain HTTP request, no queue round trips (the backend's lock serialises renders).
    scrub_kwargs = dict(fn=on_scrub, inputs=scrub_inputs, outputs=frame, show_progress="hidden",
                        trigger_mode="always_last", queue=False)
    scrubber.input(api_name="scrub", **scrub_kwargs)
    # Typed values go through the queue: Gradio shows a handler's error as a toast only for queued events
    # (a bad seed typed here was rejected silently, leaving a stale frame); typing needs no sub-100 ms path.
    typed_kwargs = {**scrub_kwargs, "queue": True, "concurrency_id": "light"}
    for comp in (seed, motion, psi, offset, slowmo, ex_a, ex_b, mix_seed):
        comp.change(api_visibility="private", **typed_kwargs)
    dir_upload.change(lambda u: u, dir_upload, dir_file, api_visibility="private", queue=False).then(
        api_visibility="private", **typed_kwargs)
    for comp in (*sefa, ex_s, dir_s, cutoff):  # sliders: live while dragging, the scrubber's fast path
        comp.input(api_visibility="private", **scrub_kwargs)
    for comp in (group, mix_group, kf_preview):
        comp.change(api_visibility="private", **scrub_kwargs)
    for comp in (use_photo, ex_photo):  # queued: "no projected photo yet" must reach the user as a toast
        comp.change(api_visibility="private", **typed_kwargs)

    @ui_errors
    def on_save(request: gr.Request, which, name, *ctl):  # request first: Gradio injects it by position
        controls, ph = controls_of(ctl)
        return str(save_direction(backend, which, controls, name, session_of(request), ph))

    save_btn.click(on_save, [save_which, save_name, *control_inputs], saved, api_name="save_direction",
                   concurrency_id="light")
    duration.change(lambda d: gr.Slider(maximum=float(d)), duration, scrubber, api_visibility="private",
                    show_progress="hidden")
    jump.click(lambda: 60, None, offset, api_visibility="private")

    @ui_errors
    def on_render(request: gr.Request, s, m, p, off, f, slow, dur, fm, lp, *ctl):
        controls, ph = controls_of(ctl)
        return render(backend, s, m, p, off, f, slow, dur, fm, session_of(request), gr.Progress(), controls, bool(lp),
                      ph)

    render_ev = render_btn.click(on_render, [seed, motion, psi, offset, fps, slowmo, duration, formats, loop,
                                             *control_inputs], [video, files], api_name="render",
                                 concurrency_id="device")

    @ui_errors
    def on_grid(c, m, p, off, f, slow, dur, request: gr.Request, progress=gr.Progress()):
        return grid(backend, c, m, p, off, f, slow, dur, session_of(request), progress)

    grid_ev = grid_btn.click(on_grid, [grid_content, grid_motion, psi, offset, fps, slowmo, duration], grid_video,
                             api_name="grid", concurrency_id="device")

    @ui_errors
    def on_variations(request: gr.Request, s, p, ms, off, f, slow, dur, *ctl):
        controls, ph = controls_of(ctl)
        return variations(backend, s, p, ms, off, f, slow, dur, controls, session_of(request), gr.Progress(), ph)

    var_ev = var_btn.click(on_variations, [seed, psi, var_motion, offset, fps, slowmo, duration, *control_inputs],
                           var_video, api_name="variations", concurrency_id="device")

    def on_cancel(request: gr.Request):
        backend.cancel(session_of(request))

    cancel_btn.click(on_cancel, None, None, cancels=[render_ev, grid_ev, var_ev], api_name="cancel_render",
                     queue=False)
    return {"seed": seed, "motion": motion, "psi": psi, "time": scrubber, "offset": offset, "slowmo": slowmo,
            "fps": fps, "frame": frame, "scrub_fn": on_scrub, "scrub_inputs": scrub_inputs}
