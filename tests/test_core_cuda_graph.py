"""core/cuda_graph.py's bookkeeping on the CPU: the capture is replaced by a fake whose replay re-runs the
captured function on the graph's static input buffers, as a CUDA graph replays its kernels on them. So the
input plumbing (times, seeds and token windows copied into the buffers), the per-shape graphs, the copies
returned and the re-capture after a weight update are checked here; tests/test_core_gpu.py replays real
graphs on a GPU."""

import pytest
import torch

import core.cuda_graph as cuda_graph
from core.generator import Generator
from core.motion import Motion
from core.ops import weight_cache


class _FakeGraph:
    def __init__(self, fn, static, out):
        self.fn, self.static, self.out = fn, static, out

    def replay(self):
        self.out.copy_(self.fn(*self.static))


@pytest.fixture
def graphed(monkeypatch, tiny_cfg):
    captures = []

    def fake_capture(self, fn, static):
        with weight_cache.recording() as derived:
            out = fn(*static)
        captures.append(len(derived))
        return _FakeGraph(fn, static, out), static, out, derived

    monkeypatch.setattr(cuda_graph.GraphedSynthesis, "_capture", fake_capture)
    torch.manual_seed(0)
    G = Generator(tiny_cfg).eval()
    return G, cuda_graph.GraphedSynthesis(G.synthesis, per_video=True), captures


def test_replays_match_eager_synthesis_for_new_inputs(graphed):
    G, g, captures = graphed
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    t = torch.tensor([[0.0, 1.5, 9.0]] * 2, dtype=torch.float64)
    eager = lambda ws, t, m: G.synthesis(ws, t, m, per_video=True)  # noqa: E731
    with torch.no_grad():
        first = g(ws, t, [4, 5])
        kept = first.clone()
        second = g(ws.flip(0), t + 100, [6, 7])  # same shapes and window length: a replay
        assert len(captures) == 1 and captures[0] > 0  # the graph holds the cached tensors it reads
        torch.testing.assert_close(first, kept, rtol=0, atol=0)  # returned frames are copies
        torch.testing.assert_close(first, eager(ws, t, [4, 5]), rtol=0, atol=1e-5)
        torch.testing.assert_close(second, eager(ws.flip(0), t + 100, [6, 7]), rtol=0, atol=1e-5)
        far = torch.tensor([[3.0, 60.5, 700.0]] * 2, dtype=torch.float64)  # more codes: another graph
        torch.testing.assert_close(g(ws, far, [4, 5]), eager(ws, far, [4, 5]), rtol=0, atol=1e-5)
        noise = Motion.from_noise(torch.randn(2, 64, G.cfg.motion.z_dim))  # eager encoder, graphed synthesis
        torch.testing.assert_close(g(ws, t, noise), eager(ws, t, noise), rtol=0, atol=1e-5)
    assert len(captures) == 3 and len(g._graphs) == 3


def test_a_weight_update_is_seen_by_a_new_capture(graphed):
    G, g, captures = graphed
    ws = G.mapping(torch.randn(1, G.z_dim)).detach()
    t = torch.tensor([[2.0, 5.0]], dtype=torch.float64)
    with torch.no_grad():
        before = g(ws, t, [1])
        g(ws, t, [1])
        assert len(captures) == 1
        G.synthesis.b4.conv1.weight.mul_(1.5)  # EMA / optimizer step: the version counter moves
        after = g(ws, t, [1])
        assert len(captures) == 2 and len(g._graphs) == 1
        torch.testing.assert_close(after, G.synthesis(ws, t, [1], per_video=True), rtol=0, atol=1e-5)
    assert not torch.allclose(before, after)
    g.release()  # the graphs and their memory go; the next call captures again
    assert not g._graphs
    with torch.no_grad():
        torch.testing.assert_close(g(ws, t, [1]), after, rtol=0, atol=0)
    assert len(captures) == 3
