"""Pointwise activations: one table of name → function and parameter defaults, and the snakes.

Adding a parameter-free activation is one line of :data:`ACTIVATIONS`; one with parameters
names them with their defaults, and the config takes them as keys of the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from ..errors import ConfigError
from .base import MAX_CHANNELS, Pointwise, check_int, check_keys, check_number, expect_channels, parse_key, register

# name -> (function of (torch.nn.functional, x, **parameters), {parameter: default})
ACTIVATIONS: dict[str, tuple[Callable, dict[str, float]]] = {
    "relu": (lambda F, x: F.relu(x), {}),
    "tanh": (lambda F, x: x.tanh(), {}),
    "sigmoid": (lambda F, x: x.sigmoid(), {}),
    "gelu": (lambda F, x: F.gelu(x), {}),
    "silu": (lambda F, x: F.silu(x), {}),
    "leaky_relu": (lambda F, x, negative_slope: F.leaky_relu(x, negative_slope), {"negative_slope": 0.01}),
    "elu": (lambda F, x, alpha: F.elu(x, alpha), {"alpha": 1.0}),
    "hardtanh": (lambda F, x, min_val, max_val: F.hardtanh(x, min_val, max_val), {"min_val": -1.0, "max_val": 1.0}),
    "clamp": (lambda F, x, min, max: x.clamp(min, max), {"min": -1.0, "max": 1.0}),  # BigVGAN v2's last step
}


@register
@dataclass(frozen=True, init=False)
class ActivationSpec(Pointwise):
    """A pointwise activation from :data:`ACTIVATIONS`, with its parameters (defaults filled in).

    ``ActivationSpec("leaky_relu", negative_slope=0.1)``; ``params`` holds ``(name, value)``
    pairs in the table's order.
    """

    type: str
    params: tuple = ()

    names: ClassVar[tuple] = tuple(ACTIVATIONS)

    def __init__(self, type: str, *, index: int = 0, path: str | None = None, **params) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "path", path)
        defaults = ACTIVATIONS[type][1] if type in ACTIVATIONS else {}
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise ConfigError(
                f"{self.where}.{unknown[0]}: unknown key for {type} (allowed: {sorted([*defaults, 'type'])})"
            )
        object.__setattr__(self, "params", tuple((name, params.get(name, value)) for name, value in defaults.items()))

    @classmethod
    def from_config(cls, name: str, entry: dict, index: int, where: str):
        parse_key(where, entry)  # accepted as on any leaf; an activation has no tensors to name
        check_keys(where, name, entry, list(ACTIVATIONS[name][1]))
        return cls(name, index=index, path=where, **entry)

    def validate(self) -> None:
        if self.type not in ACTIVATIONS:
            raise ConfigError(f"{self.where}.type: {self.type!r} is not an activation")
        for name, value in self.params:
            check_number(self.where, name, value)
        values = dict(self.params)
        for low, high in (("min_val", "max_val"), ("min", "max")):  # hardtanh's and clamp's bounds
            if low in values and values[low] > values[high]:
                raise ConfigError(f"{self.where}.{low}: {values[low]} is above {high} = {values[high]}")

    def forward(self, x, params=None):
        import torch.nn.functional as F

        function = ACTIVATIONS[self.type][0]
        return function(F, x, **{name: float(value) for name, value in self.params})


@dataclass(frozen=True)
class _Snake(Pointwise):
    """Shared by the snakes: a per-channel learned activation, tensors (1, channels, 1)."""

    channels: int
    key: str | None = None

    int_fields: ClassVar[tuple] = ("channels",)

    def validate(self) -> None:
        check_int(self.where, "channels", self.channels, 1, MAX_CHANNELS)

    def input_channels(self) -> int | None:
        return self.channels

    def out_channels_for(self, channels: int | None) -> int:
        return self.channels

    def check_channels(self, channels: int | None) -> int:
        expect_channels(self.where, "channels", self.channels, channels)
        return self.channels

    def init_params(self, generator=None) -> dict:
        import torch

        return {name: torch.ones(shape) for name, shape in self.tensor_shapes().items()}


@register
@dataclass(frozen=True)
class SnakeSpec(_Snake):
    """Snake ``y = x + sin²(αx)/(α + 1e-9)`` with a learned α of shape (1, C, 1)."""

    type: str = field(default="snake", init=False)
    names: ClassVar[tuple] = ("snake",)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"alpha": (1, self.channels, 1)}

    def forward(self, x, params):
        alpha = params["alpha"]
        return x + (alpha * x).sin() ** 2 / (alpha + 1e-9)
