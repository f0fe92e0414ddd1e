"""Direct controls of the content latent, live: discovered directions (SeFa, no CLIP needed), a direction by
example (seed A - seed B), loaded direction files, style mixing from a second seed and truncation with a
layer cutoff. One function turns the controls into ws, so the scrubbed frame, the rendered video and a saved
direction all see the same latent."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core import directions as D
from studio.backend import PSI_RANGE, Backend
from studio.inputs import StudioError, number, seed_number

NUM_SEFA = 4  # sliders shown for the top discovered directions
STRENGTH = 5.0  # slider range: +- this many standard deviations of w along a direction
MIX_GROUPS = ("none", "coarse", "middle", "fine")


@dataclass(frozen=True)
class Controls:
    group: str = "all"  # layers the discovered directions act on
    sefa: tuple[float, ...] = ()  # strengths of the top directions, in std of w
    example: tuple[int, int, float] | None = None  # (seed A, seed B, strength): ws + s * (ws_A - ws_B)
    files: tuple[tuple[str, float], ...] = ()  # loaded direction files and their strengths
    mix_seed: int = 0
    mix_group: str = "none"  # layers taken from mix_seed's latent
    cutoff: int | None = None  # truncation only on ws indices below this (None: all layers)
    photo: bool = False  # start from the Animate tab's projected photo instead of the seed
    example_photo: bool = False  # the example's A is the projected photo instead of seed A

    @property
    def active(self) -> bool:
        return bool(any(self.sefa) or (self.example and self.example[2]) or any(a for _, a in self.files)
                    or self.mix_group != "none" or self.cutoff is not None or self.photo)


def parse(group="all", sefa=(), ex_a=0, ex_b=1, ex_strength=0.0, files=(), mix_seed=0, mix_group="none",
          cutoff=None, num_ws: int = 0, photo: bool = False, example_photo: bool = False) -> Controls:
    """UI values -> Controls, each checked (bad values raise StudioError with the field's name)."""
    if group not in D.GROUPS:
        raise StudioError(f"layer group must be one of {', '.join(D.GROUPS)}")
    if mix_group not in MIX_GROUPS:
        raise StudioError(f"style mixing layers must be one of {', '.join(MIX_GROUPS)}")
    strengths = tuple(number(s, "direction strength", -STRENGTH * 4, STRENGTH * 4, default=0.0) for s in sefa)
    ex = number(ex_strength, "example strength", -10, 10, default=0.0)
    example = (seed_number(ex_a, "example seed A"), seed_number(ex_b, "example seed B"), ex) if ex else None
    cut = number(cutoff, "truncation cutoff", 0, max(num_ws, 1), integer=True, default=num_ws)
    return Controls(group=group, sefa=strengths, example=example,
                    files=tuple((str(p), number(a, "direction strength", -100, 100)) for p, a in files),
                    mix_seed=seed_number(mix_seed, "mixing seed") if mix_group != "none" else 0,
                    mix_group=mix_group, cutoff=None if cut >= num_ws else cut, photo=bool(photo),
                    example_photo=bool(example_photo))


def controlled_ws(backend: Backend, seed, truncation_psi, controls: Controls | None,
                  photo_state: dict | None = None) -> torch.Tensor:
    """ws `[1, num_ws, w_dim]` of a content seed (or, with `controls.photo`, of the Animate tab's photo,
    kept untruncated unless a cutoff is set) with the controls applied (cheap: w math, no synthesis)."""
    if controls is None or not controls.active:
        return backend.ws_for(seed, truncation_psi)
    psi = number(truncation_psi, "truncation ψ", *PSI_RANGE)
    G = backend.G
    if controls.photo:
        ws = photo_ws(backend, photo_state)
        if controls.cutoff is not None:
            ws = D.truncate(ws, G.mapping.w_avg, psi, controls.cutoff)
    elif controls.cutoff is None:
        ws = backend.ws_for(seed, psi)
    else:
        ws = D.truncate(backend.ws_for(seed, 1.0), G.mapping.w_avg, psi, controls.cutoff)
    if controls.mix_group != "none":
        ws = D.mix(ws, backend.ws_for(controls.mix_seed, psi), G, controls.mix_group)
    edits = []
    if any(controls.sefa):
        found = backend.directions(controls.group, NUM_SEFA)
        edits += [(d, a) for d, a in zip(found, controls.sefa) if a]
    if controls.example:
        a, b, s = controls.example
        photo = photo_ws(backend, photo_state) if controls.example_photo else None
        edits.append((example_direction(backend, a, b, photo), s))
    edits += [(backend.direction_file(p), a) for p, a in controls.files if a]
    try:
        return D.apply(ws, edits)
    except D.DirectionError as exc:
        raise StudioError(str(exc)) from None


def photo_ws(backend: Backend, photo_state: dict | None) -> torch.Tensor:
    if not photo_state or photo_state.get("ws") is None:
        raise StudioError("no projected photo yet: animate one in the Animate tab first")
    ws = torch.as_tensor(photo_state["ws"], dtype=torch.float32).to(backend.device)
    if tuple(ws.shape[1:]) != (backend.G.num_ws, backend.G.w_dim):
        raise StudioError("the projected photo belongs to another model; project it again")
    return ws


def generator_of(backend: Backend, controls: Controls | None, photo_state: dict | None):
    """The loaded model, or the photo's fitted copy (pivotal tuning) when the controls start from the photo."""
    return backend.generator_for(photo_state) if controls is not None and controls.photo else backend.G


def example_direction(backend: Backend, seed_a, seed_b, photo: torch.Tensor | None = None) -> D.Direction:
    """ws(A) - ws(B): A a seed, or the projected photo's ws when `photo` is given."""
    from editing.sefa import direction_by_example

    a, b = seed_number(seed_a, "example seed A"), seed_number(seed_b, "example seed B")
    ws_a, name_a = (backend.ws_for(a, 1.0), f"seed {a}") if photo is None else (photo, "the photo")
    return direction_by_example(ws_a, backend.ws_for(b, 1.0), name=f"{name_a} - seed {b}",
                                source=f"ws({name_a}) - ws(seed {b})")


def save(backend: Backend, which: str, controls: Controls, name: str, session: str = "local",
         photo_state: dict | None = None) -> Path:
    """Save one control as a direction file: "SeFa #k" (its unit strength) or "example"."""
    name = (name or "").strip() or "direction"
    if which == "example":
        if not controls.example:
            raise StudioError("set the example strength to something other than 0 first")
        photo = photo_ws(backend, photo_state) if controls.example_photo else None
        d = example_direction(backend, controls.example[0], controls.example[1], photo)
    elif which.startswith("SeFa #"):
        k = int(which.split("#")[1])
        d = backend.directions(controls.group, NUM_SEFA)[k]
    else:
        raise StudioError(f"unknown direction {which!r}")
    d = D.Direction(d.delta, name=name, source=d.source)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40]
    return D.save_direction(backend.session_dir(session) / f"{safe}-{time.strftime('%H%M%S')}.npz", d)
