"""Assemble the tabs into one Gradio app and launch it safely (localhost, queue, upload limits)."""

from __future__ import annotations

import logging

from studio import tab_animate, tab_edit, tab_generate, tab_model, tab_train, tab_video
from studio.backend import Backend
from studio.uploads import MAX_UPLOAD

log = logging.getLogger(__name__)

CSS = """
#notice {background: #fff4d6; border: 2px solid #e0a800; border-radius: 8px; padding: 4px 12px;}
#notice p {font-weight: 600; margin: 4px 0;}
#gen-frame img, #anim-live img, #video-live img, #video-frame img {image-rendering: pixelated; object-fit: contain;}
"""


def build_app(backend: Backend):
    import gradio as gr

    with gr.Blocks(title="StyleGAN-V Studio", analytics_enabled=False) as app:
        gr.Markdown("# StyleGAN-V Studio\nContinuous-time video generation: scrub time, animate photos, edit "
                    "with text, train.")
        notice = gr.Markdown(f"⚠️ {backend.notice}" if backend.notice else "", elem_id="notice",
                             visible=bool(backend.notice))
        latent_state = gr.State(None)  # the session's projected photo, shared by Animate and Edit
        clip_notice = backend.clip_notice()  # once: finding CLIP weights may probe the network
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                gen = tab_generate.build(backend, latent_state)
            with gr.Tab("Animate a photo", id="animate"):
                tab_animate.build(backend, latent_state)
            with gr.Tab("Video", id="video"):
                tab_video.build(backend, latent_state, clip_notice)
            with gr.Tab("Edit", id="edit"):
                tab_edit.build(backend, gen, latent_state, clip_notice)
            with gr.Tab("Train", id="train"):
                train = tab_train.build(backend, lambda: None)
            with gr.Tab("Model", id="model"):
                model = tab_model.build(backend, lambda: None)

        def after_load():
            text = f"⚠️ {backend.notice}" if backend.notice else ""
            return gr.Markdown(text, visible=bool(text)), tab_model.describe(backend), backend.info.config

        loaded_outputs = [notice, model["summary"], model["config"]]

        def load_from_model_tab(p, u):
            model["on_load"](p, u)
            return after_load()

        def load_snapshot(path):
            train["on_load"](path)
            return after_load()

        model["load_btn"].click(load_from_model_tab, model["inputs"], loaded_outputs, api_name="load_model",
                                concurrency_id="device")
        train["load_btn"].click(load_snapshot, train["snaps"], loaded_outputs, api_name="load_snapshot",
                                concurrency_id="device")
        # First frame on page load, so the Generate tab is never empty.
        app.load(gen["scrub_fn"], gen["scrub_inputs"], gen["frame"], api_visibility="private",
                 show_progress="hidden")
    # One heavy job per device at a time (projection, renders, edits); scrubbing and polling have their own
    # concurrency ids so they stay responsive while a job runs.
    app.queue(default_concurrency_limit=backend.max_jobs, max_size=64)
    return app


def launch(backend: Backend, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           auth: tuple[str, str] | None = None, block: bool = True, quiet: bool = False):
    """Start the server; returns (app, url). Binds to `host` (localhost by default); no share unless asked."""
    app = build_app(backend)
    _, url, share_url = app.launch(server_name=host, server_port=port, share=share, auth=auth,
                                   max_file_size=MAX_UPLOAD, prevent_thread_lock=True, quiet=True,
                                   show_error=False, css=CSS,
                                   allowed_paths=[str(backend.workdir), str(tab_animate.SAMPLES_DIR)],
                                   footer_links=["api", "settings"])
    if not quiet:
        where = share_url or url
        print(f"StyleGAN-V Studio running at {where} (model: {backend.info.summary}; Ctrl+C to stop)", flush=True)
    if block:
        try:
            app.block_thread()
        finally:
            backend.cleanup()
    return app, url
