"""Model: load a checkpoint (ours or a released .pkl) and show its config."""

from __future__ import annotations

import json
from pathlib import Path

from studio.backend import Backend
from studio.common import ui_errors
from studio.inputs import StudioError
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
    """The model card: what the checkpoint is, what it was trained on and how well, what photos work."""
    info = backend.info
    G = backend.G
    params = sum(p.numel() for p in G.parameters())
    meta, card = _metadata(info.source), _card(info.source)
    lines = [f"**{info.summary}**", f"source: `{info.source}`",
             f"{params / 1e6:.2f} M parameters · num_ws {G.num_ws} · w_dim {G.w_dim} · data frame rate "
             f"{backend.native_fps:g} fps"]
    if card.get("summary"):
        lines.append(card["summary"])
    trained = [f"data: {meta['data']}" if meta.get("data") else "",
               f"{float(meta['kimg']):g} kimg" if meta.get("kimg") is not None else "",
               f"{float(meta['train_minutes']):g} min on {meta.get('device', '?')}"
               if meta.get("train_minutes") else "",
               f"FVD {card['fvd16']} ({card.get('fvd_protocol', 'FVD_16')})" if card.get("fvd16") else ""]
    if any(trained):
        lines.append("Training: " + " · ".join(t for t in trained if t))
    lines.append(f"Photos: {photo_hint(backend)}")
    return "  \n".join(lines)


def photo_hint(backend: Backend) -> str:
    """One line for where photos are uploaded: what this model can draw."""
    if backend.info.random_weights:
        return "random weights: projections will not resemble any photo."
    res = backend.G.img_resolution
    card = _card(backend.info.source)
    return f"{res}x{res} model. " + card.get("photos", "Photos like the model's training data work best.")


def _metadata(source: str) -> dict:
    if not str(source).endswith(".safetensors"):
        return {}
    from core.checkpoint import CheckpointError, read_header

    try:
        return json.loads(read_header(source).get("metadata", "{}"))
    except (CheckpointError, ValueError):
        return {}


def _card(source: str) -> dict:
    """`<checkpoint stem>.card.json` next to the checkpoint (the bundled model has one), else {}."""
    path = Path(source).with_suffix(".card.json")
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


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
