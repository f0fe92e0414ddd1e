"""Synthesis replayed from a CUDA graph: one launch per call instead of hundreds of small kernel launches.

For seeded motion (the studio, the renderer, the metrics) the graph covers the motion encoder too: the
host works out which token windows the times need (`MotionMappingNetwork.plan`, index tensors with
fixed shapes for a given (N videos, T frames, window length)), and the graph runs the token hash, the
motion mapping, the time encoder and the synthesis from (ws, seeds, plan). Explicit motion noise or a
class label keeps the encoder eager and graphs the synthesis from (ws, motion codes). Windows are padded
to a multiple of `round_to` codes, so a few graphs serve a whole timeline. Outputs are copies, so a
later replay never changes frames already returned.

The weight-derived tensors (fp16 copies, pre-normalized weights, demodulation sums of squares, EqLR
scaling: core/ops/weight_cache.py) are computed once, outside the graph, and read by every replay: a
graph that recomputed them would run ~50 more small kernels per call. An in-place update of any
parameter or buffer (EMA, an optimizer step, load_state_dict) changes its version counter: the next call
sees it and captures afresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from core.motion import Motion, MotionPlan
from core.ops import weight_cache
from core.synthesis import SynthesisNetwork, _as_times


class GraphedSynthesis:
    """`GraphedSynthesis(G.synthesis)(ws, t, motion)` == `G.synthesis(ws, t, motion)` (eval, no grad).

    Keyword arguments (`per_video`, `channels_last`, `fused_modconv`, ...) go to
    `SynthesisNetwork.frames` and are fixed for the captured graphs. Keeps up to `max_graphs` shapes.
    In-place updates of the parameters are seen (the graphs are captured again); replacing a parameter's
    storage behind its version counter (`param.data = ...`) is not: build a new GraphedSynthesis then.
    `cache_weights=False` recomputes the weight-derived tensors inside the graph at every replay, and
    `graph_motion=False` keeps the motion encoder eager (the earlier behaviours, kept so that
    bench/ops_gpu.py can time the differences).
    """

    def __init__(self, synthesis: SynthesisNetwork, max_graphs: int = 4, cache_weights: bool = True,
                 graph_motion: bool = True, round_to: int = 4, **frames_kwargs):
        self.synthesis, self.max_graphs, self.kwargs = synthesis, max_graphs, frames_kwargs
        self.cache_weights, self.graph_motion, self.round_to = cache_weights, graph_motion, round_to
        self._graphs: dict[tuple, tuple] = {}
        self._tensors = list(synthesis.parameters()) + list(synthesis.buffers())  # listing them costs ~0.3 ms
        self._state = None  # the tensors' versions when the graphs were captured

    def release(self) -> None:
        """Drop the captured graphs, and with them their memory pools (the next call captures again)."""
        self._graphs.clear()

    @torch.no_grad()
    def __call__(self, ws: torch.Tensor, t, motion, c: torch.Tensor | None = None) -> torch.Tensor:
        """ws `[N, num_ws, w_dim]`, t `[N, T]` (best on the host: no GPU wait) -> frames `[N, T, C, H, W]`."""
        assert not self.synthesis.training, "capture the eval-mode synthesis"
        n = ws.shape[0]
        t = _as_times(t, n, ws.device)
        motion = Motion.coerce(motion, n)
        encoder = self.synthesis.motion_encoder
        if not self.graph_motion or motion.seeds is None or c is not None:
            return self.frames(ws, encoder(t, motion, c=c))  # [N*T, v_dim] codes computed eagerly
        plan = encoder.plan(t, round_to=self.round_to)

        def forward(ws, seeds, sample, first, rows, rel, times):
            codes = encoder.encode(MotionPlan(sample, first, plan.count, rows, rel, times), Motion.unchecked(seeds))
            return self.synthesis.frames(ws, codes, **self.kwargs)
        inputs = [ws.to(torch.float32), motion.seeds, plan.sample, plan.first, plan.rows, plan.rel, plan.t]
        return self._replay(("motion", plan.count), forward, inputs)

    @torch.no_grad()
    def frames(self, ws: torch.Tensor, motion_v: torch.Tensor) -> torch.Tensor:
        """ws `[N, num_ws, w_dim]` + motion codes `[N*T, v_dim]` -> frames `[N, T, C, H, W]`."""
        return self._replay(("codes",), lambda ws, v: self.synthesis.frames(ws, v, **self.kwargs),
                            [ws.to(torch.float32), motion_v])

    def _replay(self, kind: tuple, fn: Callable, inputs: list[torch.Tensor]) -> torch.Tensor:
        """fn(*inputs) from the graph captured for these input shapes (captured now if there is none)."""
        device = inputs[0].device
        key = (*kind, device, *((tuple(x.shape), x.dtype) for x in inputs))
        if self.cache_weights:  # ~50 us of host work: the graphs read weight-derived tensors computed before
            state = weight_cache.version_state(self._tensors)
            if state != self._state:
                self._graphs.clear()
                self._state = state
        if key not in self._graphs:
            if len(self._graphs) >= self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = self._capture(fn, [x.detach().to(device).clone() for x in inputs])
        graph, static, out, _derived = self._graphs[key]
        for buffer, x in zip(static, inputs, strict=True):
            buffer.copy_(x, non_blocking=True)  # host index tensors: staged, no wait for the GPU's queue
        graph.replay()
        return out.clone()

    def _capture(self, fn: Callable, static: list[torch.Tensor]):
        device = static[0].device
        assert device.type == "cuda", "CUDA graphs need the model on a CUDA device"
        # cache_weights=False: weight-derived tensors are recomputed inside the graph (weight_cache.disabled),
        # so replays see in-place weight updates without a new capture.
        recompute = weight_cache.disabled() if not self.cache_weights else contextlib.nullcontext()
        if self.cache_weights:  # fill the weight cache on the replays' stream (its tensors outlive the warm-up)
            fn(*static)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), recompute:  # warm-up: cuDNN picks its algorithms
            for _ in range(2):
                fn(*static)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), recompute, weight_cache.recording() as derived:
            out = fn(*static)
        return graph, static, out, derived  # `derived`: the cached tensors the graph reads, kept alive
