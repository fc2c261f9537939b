"""Pointwise activations: one table of name → function and parameter defaults, and the snakes.

Adding a parameter-free activation is one line of :data:`ACTIVATIONS`; one with parameters
names them with their defaults, and the config takes them as keys of the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from ..core.errors import ConfigError
from .base import PerChannel, Pointwise, check_keys, check_number, parse_key, register

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

# name -> the same, written into a given tensor (torch, x, out, **parameters): no allocation, no
# copy. Each is checked against its row above with ``out`` a slice of a larger tensor in both
# layouts (tests/test_layers.py); gelu is not here: torch 2.13's gelu(out=) writes wrong values
# into a slice that is not contiguous. An activation without a row is computed, then copied.
ACTIVATIONS_INTO: dict[str, Callable] = {
    "relu": lambda torch, x, out: torch.clamp_min(x, 0, out=out),
    "tanh": lambda torch, x, out: torch.tanh(x, out=out),
    "sigmoid": lambda torch, x, out: torch.sigmoid(x, out=out),
    "silu": lambda torch, x, out: torch._C._nn.silu(x, out=out),
    "leaky_relu": lambda torch, x, out, negative_slope: torch._C._nn.leaky_relu(x, negative_slope, out=out),
    "elu": lambda torch, x, out, alpha: torch._C._nn.elu(x, alpha, out=out),
    "hardtanh": lambda torch, x, out, min_val, max_val: torch._C._nn.hardtanh(x, min_val, max_val, out=out),
    "clamp": lambda torch, x, out, min, max: torch.clamp(x, min, max, out=out),
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

    def forward_into(self, x, params, out) -> None:
        import torch

        into = ACTIVATIONS_INTO.get(self.type)
        if into is None:
            out.copy_(self.forward(x, params))
        else:
            into(torch, x, out, **{name: float(value) for name, value in self.params})


@dataclass(frozen=True)
class _Snake(PerChannel):
    """Shared by the snakes: per-channel learned tensors of shape (1, channels, 1) (a checkpoint's
    (channels,) loads too); with ``logscale`` the tensors hold logarithms (BigVGAN's
    ``alpha_logscale``: exp() is taken before use, and they start at 0 instead of 1)."""

    logscale: bool = False
    key: str | None = None

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.logscale, bool):
            raise ConfigError(f"{self.where}.logscale: must be true or false, got {self.logscale!r}")

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: (1, self.channels, 1) for name in self.tensor_names}

    def init_params(self, generator=None) -> dict:
        import torch

        start = torch.zeros if self.logscale else torch.ones
        return {name: start(shape) for name, shape in self.tensor_shapes().items()}

    def _scaled(self, tensor):
        return tensor.exp() if self.logscale else tensor


@register
@dataclass(frozen=True)
class SnakeSpec(_Snake):
    """Snake ``y = x + sin²(αx)/(α + 1e-9)`` with a learned α."""

    type: str = field(default="snake", init=False)
    names: ClassVar[tuple] = ("snake",)
    tensor_names: ClassVar[tuple] = ("alpha",)

    def forward(self, x, params, out=None):
        """``x + sin²(αx)/(α + 1e-9)``, computed step over step in one tensor (``out``, or a new
        one in ``x``'s layout): DAC's decoder has 25 snakes; five full-size temporaries each
        were most of what a block allocated, and all of what glibc's heap then kept."""
        import torch

        alpha = self._scaled(params["alpha"])
        return torch.mul(alpha, x, out=out).sin_().square_().div_(alpha + 1e-9).add_(x)

    def forward_into(self, x, params, out) -> None:
        self.forward(x, params, out)


@register
@dataclass(frozen=True)
class SnakeBetaSpec(_Snake):
    """BigVGAN's SnakeBeta ``y = x + sin²(αx)/(β + 1e-9)``: α sets the frequency, β the magnitude."""

    type: str = field(default="snake_beta", init=False)
    names: ClassVar[tuple] = ("snake_beta",)
    tensor_names: ClassVar[tuple] = ("alpha", "beta")

    def forward(self, x, params, out=None):
        """``x + sin²(αx)/(β + 1e-9)`` in one tensor (see :class:`SnakeSpec`)."""
        import torch

        alpha, beta = self._scaled(params["alpha"]), self._scaled(params["beta"])
        return torch.mul(x, alpha, out=out).sin_().square_().mul_(1.0 / (beta + 1e-9)).add_(x)

    def forward_into(self, x, params, out) -> None:
        self.forward(x, params, out)
