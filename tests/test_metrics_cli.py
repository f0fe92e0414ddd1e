"""The metrics CLI: python -m training.metrics --checkpoint ... --data ... --metrics ..."""

import json

import numpy as np
import pytest


def _setup(tmp_path):
    core_config = pytest.importorskip("core.config")
    core_generator = pytest.importorskip("core.generator")
    core_checkpoint = pytest.importorskip("core.checkpoint")
    pytest.importorskip("training.dataset")
    from PIL import Image

    G = core_generator.Generator(core_config.preset("tiny"))
    ckpt = tmp_path / "G.safetensors"
    core_checkpoint.save_checkpoint(ckpt, {"G_ema": G}, G.cfg)
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for v in range(3):
        (data / f"vid{v}").mkdir(parents=True)
        for t in range(16 + v):
            img = rng.integers(0, 256, (G.img_resolution, G.img_resolution, 3), dtype=np.uint8)
            Image.fromarray(img).save(data / f"vid{v}" / f"{t:06d}.png")
    return ckpt, data


def test_cli_reports_missing_weights_clearly(tmp_path, monkeypatch, capsys):
    ckpt, data = _setup(tmp_path)
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    from training.metrics.__main__ import main

    rc = main(["--checkpoint", str(ckpt), "--data", str(data), "--metrics", "fvd16", "--num-videos", "2",
               "--offline", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "I3D weights (needed for FVD) not found" in err and "Fix:" in err
    rc = main(["--checkpoint", str(ckpt), "--data", str(data), "--metrics", "fvd7", "--device", "cpu"])
    assert rc == 2 and "unknown metric 'fvd7'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_end_to_end_with_real_i3d(tmp_path, capsys):
    ckpt, data = _setup(tmp_path)
    from training.metrics.__main__ import main

    out = tmp_path / "result.json"
    rc = main(["--checkpoint", str(ckpt), "--data", str(data), "--metrics", "fvd16", "--num-videos", "3",
               "--device", "cpu", "--out", str(out), "--no-cache"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["fvd16"] > 0 and res["num_videos"] == {"fvd16": 3} and res["full_protocol"] is False
