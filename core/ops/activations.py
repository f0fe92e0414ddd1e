"""The activations bias_act knows: reference function, default alpha and default gain."""

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


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation("linear", lambda x, a: x, 0.0, 1.0),
    "relu": Activation("relu", lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation("lrelu", lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation("tanh", lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation("sigmoid", lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation("elu", lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation("selu", lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation("softplus", lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation("swish", lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}
