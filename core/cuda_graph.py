"""Synthesis replayed from a CUDA graph: one launch per call instead of hundreds of small kernel launches.

The motion codes (host-side seeds, variable token windows) are computed eagerly; the synthesis from
(ws, motion codes), whose shapes are fixed for a given (N videos, T frames), is captured once per
shape and replayed. Outputs are copies, so a later replay never changes frames already returned.
"""

from __future__ import annotations

import torch

from core import weight_cache
from core.motion import Motion
from core.synthesis import SynthesisNetwork, _as_times


class GraphedSynthesis:
    """`GraphedSynthesis(G.synthesis)(ws, t, motion)` == `G.synthesis(ws, t, motion)` (eval, no grad).

    Keyword arguments (`per_video`, `channels_last`, `fused_modconv`, ...) go to
    `SynthesisNetwork.frames` and are fixed for the captured graphs. Keeps up to `max_graphs` shapes.
    In-place weight updates are seen by later replays; replacing a parameter's storage is not (build a
    new GraphedSynthesis then).
    """

    def __init__(self, synthesis: SynthesisNetwork, max_graphs: int = 4, **frames_kwargs):
        self.synthesis, self.max_graphs, self.kwargs = synthesis, max_graphs, frames_kwargs
        self._graphs: dict[tuple, tuple] = {}

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
        if key not in self._graphs:
            if len(self._graphs) >= self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = self._capture(ws, motion_v)
        graph, ws_in, v_in, out = self._graphs[key]
        ws_in.copy_(ws)
        v_in.copy_(motion_v)
        graph.replay()
        return out.clone()

    def _capture(self, ws: torch.Tensor, motion_v: torch.Tensor):
        ws_in = ws.detach().to(torch.float32).clone()
        v_in = motion_v.detach().clone()
        stream = torch.cuda.Stream(ws.device)
        stream.wait_stream(torch.cuda.current_stream(ws.device))
        # Weight-derived tensors are recomputed inside the graph (weight_cache.disabled): replays then
        # see in-place weight updates and never read a cached tensor that was freed since.
        with torch.cuda.stream(stream), weight_cache.disabled():  # warm-up: cuDNN picks its algorithms
            for _ in range(2):
                self.synthesis.frames(ws_in, v_in, **self.kwargs)
        torch.cuda.current_stream(ws.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), weight_cache.disabled():
            out = self.synthesis.frames(ws_in, v_in, **self.kwargs)
        return graph, ws_in, v_in, out
