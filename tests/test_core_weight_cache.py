"""core/weight_cache.py: weight-derived tensors are reused at inference and never stale."""

import torch

from core.generator import Generator
from core.weight_cache import clear, derived, disabled


def _counting(fn):
    calls = []

    def wrapped(t):
        calls.append(1)
        return fn(t)
    return wrapped, calls


def test_reused_until_the_tensor_changes_in_place():
    p = torch.nn.Parameter(torch.randn(4, 3))
    fn, calls = _counting(lambda t: t * 2)
    with torch.no_grad():
        a = derived(p, "x2", fn)
        assert derived(p, "x2", fn) is a and len(calls) == 1
        p.add_(1.0)  # an optimizer step / EMA update bumps the version counter
        b = derived(p, "x2", fn)
    assert len(calls) == 2 and torch.equal(b, p.detach() * 2)
    with torch.no_grad():
        assert derived(p, "other tag", fn) is not b and len(calls) == 3


def test_recomputed_while_autograd_records_through_the_tensor():
    p = torch.nn.Parameter(torch.randn(4, 3))
    fn, calls = _counting(lambda t: t * 2)
    y = derived(p, "x2", fn)
    y2 = derived(p, "x2", fn)
    assert len(calls) == 2 and y.requires_grad and y is not y2
    (g,) = torch.autograd.grad(y.sum(), p)
    assert torch.equal(g, torch.full_like(p, 2.0))


def test_cached_under_inference_mode_is_usable_by_autograd_afterwards():
    p = torch.randn(4, 3)  # a frozen weight
    with torch.inference_mode():
        derived(p, "x2", lambda t: t * 2)
    x = torch.randn(3, requires_grad=True)
    out = derived(p, "x2", lambda t: t * 2) @ x
    (g,) = torch.autograd.grad(out.sum(), x)  # would raise for an inference tensor saved for backward
    assert torch.allclose(g, (p * 2).sum(0))


def test_generator_sees_loaded_weights_and_module_moves(tiny_cfg):
    torch.manual_seed(0)
    G = Generator(tiny_cfg).eval()
    torch.manual_seed(1)
    other = Generator(tiny_cfg).eval()
    ws = G.mapping(torch.randn(1, G.z_dim)).detach()
    t = torch.tensor([[0.0, 4.5]])
    with torch.no_grad():
        G.synthesis(ws, t, [3])  # fills the caches
        G.load_state_dict(other.state_dict())
        after = G.synthesis(ws, t, [3])
        want = other.synthesis(ws, t, [3])
        torch.testing.assert_close(after, want, rtol=0, atol=0)
        for param in G.parameters():  # new storage without a version bump (as .to(device) does)
            param.data = param.data * 1.5
        fresh = Generator(tiny_cfg).eval()
        fresh.load_state_dict(G.state_dict())
        torch.testing.assert_close(G.synthesis(ws, t, [3]), fresh.synthesis(ws, t, [3]), rtol=0, atol=0)


def test_clear_drops_what_a_write_behind_the_version_counter_left():
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        a = derived(layer.weight, "x2", lambda t: t * 2)
        layer.weight.data.fill_(1.0)  # .data writes do not bump the parameter's version
        assert derived(layer.weight, "x2", lambda t: t * 2) is a  # why clear() exists
        clear(layer)
        torch.testing.assert_close(derived(layer.weight, "x2", lambda t: t * 2), torch.full((2, 3), 2.0))


def test_disabled_computes_afresh():
    p = torch.randn(2, 2)
    fn, calls = _counting(lambda t: t + 1)
    with disabled():
        derived(p, "plus1", fn)
        derived(p, "plus1", fn)
    assert len(calls) == 2
