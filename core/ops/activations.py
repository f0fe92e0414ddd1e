"""The activations bias_act knows: reference function, default alpha and gain, and the CUDA kernel's index."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Activation:
    name: str
    func: object  # callable(x, alpha) -> tensor
    def_alpha: float
    def_gain: float
    cuda_ref: str  # "x" or "y": which tensor the CUDA kernel keeps for the gradient
    cuda_idx: int


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation("linear", lambda x, a: x, 0.0, 1.0, "", 1),
    "relu": Activation("relu", lambda x, a: F.relu(x), 0.0, math.sqrt(2), "y", 2),
    "lrelu": Activation("lrelu", lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), "y", 3),
    "tanh": Activation("tanh", lambda x, a: torch.tanh(x), 0.0, 1.0, "y", 4),
    "sigmoid": Activation("sigmoid", lambda x, a: torch.sigmoid(x), 0.0, 1.0, "y", 5),
    "elu": Activation("elu", lambda x, a: F.elu(x), 0.0, 1.0, "y", 6),
    "selu": Activation("selu", lambda x, a: F.selu(x), 0.0, 1.0, "y", 7),
    "softplus": Activation("softplus", lambda x, a: F.softplus(x), 0.0, 1.0, "y", 8),
    "swish": Activation("swish", lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), "x", 9),
}
