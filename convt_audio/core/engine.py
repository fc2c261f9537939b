"""The contract of an engine: what runs a stack on arrays, whichever library computes it.

Every engine — torch (:class:`~convt_audio.model.engines.TorchEngine`), the NumPy resampler
engines (polyphase, FFT, spectral, and the chain that picks among them) and a config chained
with a resampler — is an :class:`Engine`: the stack's shape facts (:class:`StackShape`), a
``name`` (``--json``'s ``engine``), a ``device`` and a ``dtype``, the block size it prefers, the
input frames a leading ``circular`` layer needs up front, and ``open_stream(batch)``: a fresh
:class:`~convt_audio.core.streaming.StreamingModule` (``push``/``flush``/``reset``) per file
(``open_live_stream(batch)``: one that never holds a push's frames back).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from .shapes import StackShape
from .streaming import StreamingModule


class Engine(StackShape, ABC):
    """The abstract base of every engine; a subclass that leaves a member out cannot be made,
    and one without a ``name`` fails when its module is imported."""

    name: ClassVar[str]
    device: str
    dtype: np.dtype

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls) and not isinstance(getattr(cls, "name", None), str):
            raise TypeError(f"engine {cls.__name__} has no name (its class variable name)")

    @abstractmethod
    def preferred_chunk(self) -> int:
        """Input frames per block when the user names none."""

    @abstractmethod
    def leading_circular_frames(self) -> int:
        """The input's last frames a leading ``circular`` layer needs before the first block."""

    @abstractmethod
    def open_stream(self, batch: int, tail: np.ndarray | None = None) -> StreamingModule:
        """A fresh stream for ``batch`` signals (``tail``: the input's last frames, when needed)."""

    def open_live_stream(self, batch: int) -> StreamingModule:
        """A fresh stream whose every push hands out at once the frames it makes final: a live
        caller's (``model.stream()``), who is waiting for them. An engine that holds a block's
        frames back to overlap their copy with the next block (the torch engine on CUDA) does not
        here."""
        return self.open_stream(batch)


class NumpyEngine(Engine):
    """What the NumPy engines share: the CPU, a float dtype, their specs, and no circular layer
    (the stacks they take have none)."""

    device = "cpu"

    def __init__(self, specs, dtype: str = "float32"):
        self.specs = tuple(specs)
        self.dtype = np.dtype(dtype)

    def leading_circular_frames(self) -> int:
        return 0
