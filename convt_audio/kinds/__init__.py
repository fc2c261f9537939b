"""The layer kinds and their registry: ``type:`` name → kind class (README.md, "Configs").

Each kind is one class (:mod:`.base` says what it owns); importing this package registers them
all. A new kind is one class decorated with :func:`~.base.register` in a module imported here; a
new activation is one line of :data:`~.activations.ACTIVATIONS`.
"""

from __future__ import annotations

from .activations import ACTIVATIONS, ActivationSpec, SnakeBetaSpec, SnakeSpec
from .alias_free import AliasFreeSpec
from .base import KINDS, Kind, parse_layer, parse_sequence, register
from .blocks import REDUCTIONS, ParallelSpec, ResidualSpec
from .codebooks import CodebooksSpec
from .conv import CONV1D_PADDING_MODES, PADDING_MODES, Conv1dSpec, ConvTranspose1dSpec
from .istft import IstftSpec
from .linear import LinearSpec
from .lstm import LstmSpec
from .norm import LayerNormSpec, ScaleSpec
from .pqmf import PqmfSynthesisSpec

__all__ = [
    "ACTIVATIONS",
    "CONV1D_PADDING_MODES",
    "KINDS",
    "PADDING_MODES",
    "REDUCTIONS",
    "ActivationSpec",
    "AliasFreeSpec",
    "CodebooksSpec",
    "Conv1dSpec",
    "ConvTranspose1dSpec",
    "IstftSpec",
    "Kind",
    "LayerNormSpec",
    "LinearSpec",
    "LstmSpec",
    "ParallelSpec",
    "PqmfSynthesisSpec",
    "ResidualSpec",
    "ScaleSpec",
    "SnakeBetaSpec",
    "SnakeSpec",
    "parse_layer",
    "parse_sequence",
    "register",
]
