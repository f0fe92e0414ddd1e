"""Synthesis replayed from a CUDA graph: one launch per call instead of hundreds of small kernel launches.

The motion codes (host-side seeds, variable token windows) are computed eagerly; the synthesis from
(ws, motion codes), whose shapes are fixed for a given (N videos, T frames), is captured once per
shape and replayed. Outputs are copies, so a later replay never changes frames already returned.

The weight-derived tensors (fp16 copies, pre-normalized weights, demodulation sums of squares, EqLR
scaling: core/ops/weight_cache.py) are computed once, outside the graph, and read by every replay: a
graph that recomputed them would run ~50 more small kernels per call. An in-place update of any
parameter or buffer (EMA, an optimizer step, load_state_dict) changes its version counter: the next call
sees it and captures afresh.
"""

from __future__ import annotations

import contextlib

import torch

from core.motion import Motion
from core.ops import weight_cache
from core.synthesis import SynthesisNetwork, _as_times


class GraphedSynthesis:
    """`GraphedSynthesis(G.synthesis)(ws, t, motion)` == `G.synthesis(ws, t, motion)` (eval, no grad).

    Keyword arguments (`per_video`, `channels_last`, `fused_modconv`, ...) go to
    `SynthesisNetwork.frames` and are fixed for the captured graphs. Keeps up to `max_graphs` shapes.
    In-place updates of the parameters are seen (the graphs are captured again); replacing a parameter's
    storage behind its version counter (`param.data = ...`) is not: build a new GraphedSynthesis then.
    `cache_weights=False` recomputes the weight-derived tensors inside the graph at every replay (the
    previous behaviour, kept so that bench/ops_gpu.py can time the difference).
    """

    def __init__(self, synthesis: SynthesisNetwork, max_graphs: int = 4, cache_weights: bool = True,
                 **frames_kwargs):
        self.synthesis, self.max_graphs, self.kwargs = synthesis, max_graphs, frames_kwargs
        self.cache_weights = cache_weights
        self._graphs: dict[tuple, tuple] = {}
        self._tensors = list(synthesis.parameters()) + list(synthesis.buffers())  # listing them costs ~0.3 ms
        self._state = None  # the tensors' versions when the graphs were captured

    @torch.no_grad()
    def __call__(self, ws: torch.Tensor, t, motion, c: torch.Tensor | None = None) -> torch.Tensor:
        assert ws.is_cuda, "CUDA graphs need the model on a CUDA device"
        assert not self.synthesis.training, "capture the eval-mode synthesis"
        n = ws.shape[0]
        t = _as_times(t, n, ws.device)
        motion_v = self.synthesis.motion_encoder(t, Motion.coerce(motion, n), c=c)  # [N*T, v_dim]
        return self.frames(ws, motion_v)

    @torch.no_grad()
    def frames(self, ws: torch.Tensor, motion_v: torch.Tensor) -> torch.Tensor:
        key = (tuple(ws.shape), tuple(motion_v.shape), ws.device)
        if self.cache_weights:  # ~50 us of host work: the graphs read weight-derived tensors computed before
            state = weight_cache.version_state(self._tensors)
            if state != self._state:
                self._graphs.clear()
                self._state = state
        if key not in self._graphs:
            if len(self._graphs) >= self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = self._capture(ws, motion_v)
        graph, ws_in, v_in, out, _derived = self._graphs[key]
        ws_in.copy_(ws)
        v_in.copy_(motion_v)
        graph.replay()
        return out.clone()

    def _capture(self, ws: torch.Tensor, motion_v: torch.Tensor):
        ws_in = ws.detach().to(torch.float32).clone()
        v_in = motion_v.detach().clone()
        # cache_weights=False: weight-derived tensors are recomputed inside the graph (weight_cache.disabled),
        # so replays see in-place weight updates without a new capture.
        recompute = weight_cache.disabled() if not self.cache_weights else contextlib.nullcontext()
        if self.cache_weights:  # fill the weight cache on the replays' stream (its tensors outlive the warm-up)
            self.synthesis.frames(ws_in, v_in, **self.kwargs)
        stream = torch.cuda.Stream(ws.device)
        stream.wait_stream(torch.cuda.current_stream(ws.device))
        with torch.cuda.stream(stream), recompute:  # warm-up: cuDNN picks its algorithms, the cache fills
            for _ in range(2):
                self.synthesis.frames(ws_in, v_in, **self.kwargs)
        torch.cuda.current_stream(ws.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), recompute, weight_cache.recording() as derived:
            out = self.synthesis.frames(ws_in, v_in, **self.kwargs)
        return graph, ws_in, v_in, out, derived  # `derived`: the cached tensors the graph reads, kept alive
