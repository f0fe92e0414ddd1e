"""Model: load a checkpoint (ours or a released .pkl) and show its config."""

from __future__ import annotations

from studio.backend import Backend, StudioError
from studio.common import ui_errors
from studio.uploads import check_checkpoint


def load(backend: Backend, path: str | None, upload=None) -> tuple[str, dict]:
    """Load from an uploaded file if given, else from a path on the server; returns (summary, config)."""
    if upload:
        path = str(check_checkpoint(upload))
    if not path or not str(path).strip():
        raise StudioError("give a checkpoint path or upload a .safetensors / .pkl file")
    info = backend.load(str(path).strip())
    return describe(backend), info.config


def describe(backend: Backend) -> str:
    info = backend.info
    G = backend.G
    params = sum(p.numel() for p in G.parameters())
    return (f"**{info.summary}**  \nsource: `{info.source}`  \n{params / 1e6:.2f} M parameters · "
            f"num_ws {G.num_ws} · w_dim {G.w_dim} · data frame rate {backend.native_fps:g} fps")


def build(backend: Backend, on_model_loaded) -> dict:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            path = gr.Textbox(label="Checkpoint path on this machine", placeholder="runs/.../network-*.safetensors")
            upload = gr.File(label="…or upload a checkpoint", file_types=[".safetensors", ".pkl"])
            load_btn = gr.Button("Load", variant="primary")
        with gr.Column(scale=2, min_width=300):
            summary = gr.Markdown(describe(backend))
            config = gr.JSON(backend.info.config, label="Config")

    @ui_errors
    def on_load(p, u):
        load(backend, p, u)
        return on_model_loaded()

    return {"load_btn": load_btn, "inputs": [path, upload], "summary": summary, "config": config,
            "on_load": on_load}
