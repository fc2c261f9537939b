"""The whole-signal forward in torch: padding modes, layers, init, and :class:`Stack`.

A :class:`Stack` pairs validated specs (:mod:`convt_audio.specs`) with their tensors (one
``{"weight", "bias", "alpha"}`` dict per layer) and runs the reference computation that
streaming must reproduce. Tensors are ``[batch, channels, frames]`` throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from .errors import InputTooShortError, UsageError
from .specs import (  # noqa: F401  (re-exported: the engine's public names)
    ACTIVATIONS,
    CONV_TYPES,
    PADDING_MODES,
    ActivationSpec,
    Conv1dSpec,
    ConvTranspose1dSpec,
    LayerSpec,
    ParallelSpec,
    ResidualSpec,
    SnakeSpec,
    StackShape,
    _ConvSpec,
    chain,
    index_paths,
    leaves,
    nest,
    parameter_count,
    spec_fields,
)
from .specs import forward as forward_specs

MAX_INIT_PARAMETERS = 1 << 30  # 4 GiB of float32: far past any vocoder (HiFi-GAN V1: 13.9 M)

_POINTWISE = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu, "silu": F.silu}


def activation(spec: ActivationSpec, x: torch.Tensor) -> torch.Tensor:
    """Apply a pointwise activation (leaky_relu's negative_slope, elu's alpha)."""
    if spec.type == "leaky_relu":
        return F.leaky_relu(x, 0.01 if spec.parameter is None else float(spec.parameter))
    if spec.type == "elu":
        return F.elu(x, 1.0 if spec.parameter is None else float(spec.parameter))
    return _POINTWISE[spec.type](x)


# --------------------------------------------------------------------------------------------
# the padding modes


def extend(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """Extend ``x [..., frames]`` by ``left``/``right`` frames exactly as ``numpy.pad`` does.

    ``zeros`` → constant 0, ``reflect`` → ``reflect``, ``replicate`` → ``edge``, ``circular`` →
    ``wrap``, including extensions longer than the signal (numpy reflects or wraps again).
    """
    if left == 0 and right == 0:
        return x
    frames = x.shape[-1]
    if mode == "zeros":
        return F.pad(x, (left, right))
    j = torch.arange(-left, frames + right, device=x.device)
    if mode == "replicate":
        index = j.clamp(0, frames - 1)
    elif mode == "circular":
        index = j.remainder(frames)
    elif mode == "reflect":
        if frames == 1:
            index = torch.zeros_like(j)
        else:
            period = 2 * (frames - 1)
            m = j.remainder(period)
            index = torch.where(m < frames, m, period - m)
    else:  # pragma: no cover - specs are validated
        raise ValueError(mode)
    return x.index_select(-1, index)


# --------------------------------------------------------------------------------------------
# whole-signal forward


def conv_transpose1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: ConvTranspose1dSpec
) -> torch.Tensor:
    """Whole-signal transposed convolution with the padding modes README.md defines ("Padding modes"), ``[B, C_in, L]`` in.

    The input is extended per ``padding_mode``, transposed-convolved with no padding, and the
    ``padding`` crop taken from the result (bias-only frames where ``output_padding`` reaches
    past it). With ``zeros`` this equals ``torch.nn.functional.conv_transpose1d``.
    """
    frames = x.shape[-1]
    out_frames = spec.output_frames(frames)
    if out_frames < 1:
        raise InputTooShortError(
            f"input too short: {spec.where} ({spec.type}) gets {frames} frames and needs at least "
            f"{spec.min_input_frames()}"
        )
    left, right = spec.extension()
    full = F.conv_transpose1d(
        extend(x, left, right, spec.padding_mode),
        weight,
        None,
        spec.stride,
        0,
        0,
        spec.groups,
        spec.dilation,
    )
    offset = spec.padding + left * spec.stride
    y = full[..., offset : offset + out_frames]
    if y.shape[-1] < out_frames:
        y = F.pad(y, (0, out_frames - y.shape[-1]))
    if bias is not None:
        y = y + bias[:, None]
    return y


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: Conv1dSpec) -> torch.Tensor:
    """Whole-signal convolution: extend by ``padding`` per ``padding_mode``, then no padding."""
    frames = x.shape[-1]
    if spec.output_frames(frames) < 1:
        raise InputTooShortError(
            f"input too short: {spec.where} ({spec.type}) gets {frames} frames and needs at least "
            f"{spec.min_input_frames()}"
        )
    x = extend(x, spec.padding, spec.padding, spec.padding_mode)
    return F.conv1d(x, weight, bias, spec.stride, 0, spec.dilation, spec.groups)


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return x + torch.sin(alpha * x) ** 2 / (alpha + 1e-9)


# --------------------------------------------------------------------------------------------
# initialisation


def init_params(spec: LayerSpec, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """PyTorch's default initialisation: weight and bias ~ U(−√k, √k), k = 1 / fan_in.

    fan_in is ``(C_out/groups)·K`` for ConvTranspose1d and ``(C_in/groups)·K`` for Conv1d; snake's
    alpha starts at 1.
    """
    params: dict[str, torch.Tensor] = {}
    if isinstance(spec, _ConvSpec):
        bound = 1.0 / math.sqrt(spec.fan_in())
        for name, shape in spec.tensor_shapes().items():
            t = torch.empty(shape, dtype=torch.float32)
            t.uniform_(-bound, bound, generator=generator)
            params[name] = t
    elif isinstance(spec, SnakeSpec):
        params["alpha"] = torch.ones(1, spec.channels, 1)
    return params


# --------------------------------------------------------------------------------------------
# a stack


@dataclass
class Stack(StackShape):
    """Layer specs with their tensors: the whole-signal reference and the streaming source.

    Parameters
    ----------
    specs : sequence of layer and block specs, validated and channel-chained.
    params : one ``{name: tensor}`` dict per leaf layer (``weight``, ``bias``, ``alpha``), depth
        first through blocks (:func:`~convt_audio.specs.leaves`).
    """

    specs: tuple
    params: list

    def __post_init__(self) -> None:
        self.specs = tuple(self.specs)
        self.params = list(self.params)
        if len(self.params) != len(list(leaves(self.specs))):
            raise ValueError("one params dict per leaf layer is needed")
        for spec in self.specs:
            spec.validate()
        chain(self.specs)
        self.nested = nest(self.specs, self.params)

    @property
    def leaves(self) -> list:
        """The leaf layers, depth first: ``params[i]`` belongs to ``leaves[i]``."""
        return list(leaves(self.specs))

    @classmethod
    def initialised(cls, specs: Sequence[LayerSpec], seed: int | None = None) -> "Stack":
        """PyTorch's default initialisation of every leaf, reproducible by ``seed`` (0 ≤ seed < 2⁶³).

        Refuses, before allocating, a stack of more than ``MAX_INIT_PARAMETERS`` parameters.
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 63):
            raise UsageError(f"seed: must be an integer in [0, 2**63), got {seed!r}")
        total = sum(parameter_count(spec) for spec in specs)
        if total > MAX_INIT_PARAMETERS:
            raise UsageError(
                f"the stack holds {total:,} parameters ({total * 4 / 2**30:.1f} GiB in float32); "
                f"at most {MAX_INIT_PARAMETERS:,} are initialised"
            )
        generator = torch.Generator()
        generator.manual_seed(0 if seed is None else seed)
        return cls(tuple(specs), [init_params(s, generator) for s in leaves(specs)])

    def parameter_count(self) -> int:
        return sum(math.prod(t.shape) for p in self.params for t in p.values())

    # -- tensors -----------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Stack":
        """A copy with every tensor moved (the specs are shared)."""
        params = [{k: v.to(device=device, dtype=dtype) for k, v in p.items()} for p in self.params]
        return Stack(self.specs, params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-signal forward of ``x [batch, in_channels, frames]``."""
        self.check_frames(x.shape[-1])
        return forward_specs(self.specs, self.nested, x)

    __call__ = forward

    def state_dict(self, names: Sequence[Mapping[str, str]] | None = None) -> dict[str, torch.Tensor]:
        """Tensors named ``<i>.<name>`` (or per ``names``, one dict per leaf), as ``nn.Sequential``
        names them; inside blocks ``<i>.<j>.<name>`` (residual) and ``<i>.<b>.<j>.<name>`` (parallel)."""
        keys = index_paths(self.specs)
        out = {}
        for i, params in enumerate(self.params):
            for name, tensor in params.items():
                out[names[i][name] if names else f"{keys[i]}.{name}"] = tensor
        return out
