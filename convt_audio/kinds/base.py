"""What every layer kind shares, and the registry that maps ``type:`` names to kinds.

A kind is one frozen dataclass that owns everything about itself: parsing (``from_config``),
validation, the tensors it needs (``tensor_shapes``) and their initialisation, its shape facts
(``out_channels_for``, ``output_frames``, ``rate``, ``input_span``, ``flops_per_frame``), its
whole-signal ``forward``, its streaming form (``streamer``) and its ``info`` columns. Nothing
else in the package switches on kinds: the shape algebra (:mod:`convt_audio.core.shapes`), the
streaming stack and ``info`` ask the kinds.

Importing a kind does not import torch; ``forward`` and ``streamer`` do when they run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import MISSING, dataclass, field, fields
from fractions import Fraction
from typing import Any, ClassVar, Iterator, Mapping

from ..core.errors import ConfigError

# Upper bounds, checked before anything is allocated: far above any published model (HiFi-GAN V1's
# largest layer is 512·256·16 = 2.1 M weights), far below what would exhaust memory.
MAX_CHANNELS = 1 << 16
MAX_KERNEL = 1 << 24  # a resampler's stage holds L × its taps per phase (44,101/88,200: 838k)
MAX_STRIDE = 1 << 20  # stride and dilation: every rate pair up to 768 kHz is one L/M
MAX_PADDING = 1 << 24
MAX_LAYER_WEIGHTS = 1 << 28  # 1 GiB of float32

KINDS: dict[str, type] = {}  # type name -> kind class, filled by @register


def register(cls: type) -> type:
    """Class decorator: make ``cls`` the kind for each name in ``cls.names``.

    A kind that leaves an abstract member of :class:`Kind` out, or names no ``type:``, fails
    here — when its module is imported — with a message naming what it lacks."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise TypeError(f"layer kind {cls.__name__} does not implement {', '.join(missing)}: every kind must")
    if not cls.names:
        raise TypeError(f"layer kind {cls.__name__} names no type: (its class variable names is empty)")
    for name in cls.names:
        if name in KINDS:
            raise RuntimeError(f"layer type {name!r} registered twice")
        KINDS[name] = cls
    return cls


def check_int(where: str, name: str, value, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{where}.{name}: must be {what}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where}.{name}: must be at most {maximum}, got {value!r}")


def check_number(where: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}.{name}: must be a finite number, got {value!r}")


def expect_channels(where: str, name: str, value: int, produced: int | None) -> None:
    """A layer's channel field must equal what the layer before it produces (when known)."""
    if produced is not None and value != produced:
        raise ConfigError(f"{where}.{name}: {value} does not match the {produced} channels the previous layer produces")


def scalar_int(value: Any) -> Any:
    """PyTorch's ``int or tuple``: ``3`` or ``[3]``."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return value[0]
    return value


def check_keys(where: str, kind: str, entry: Mapping, allowed, required=()) -> None:
    """Unknown keys and missing required ones, named with their YAML path."""
    for name in entry:
        if name not in allowed:
            raise ConfigError(f"{where}.{name}: unknown key for {kind} (allowed: {sorted([*allowed, 'type'])})")
    for name in required:
        if name not in entry:
            raise ConfigError(f"{where}.{name}: required for {kind}")


def parse_key(where: str, entry: dict) -> str | None:
    """A leaf's ``key:`` (its tensors' name instead of the index path), removed from ``entry``."""
    key = entry.pop("key", None)
    if key is not None and (not isinstance(key, (str, int)) or isinstance(key, bool) or key == ""):
        raise ConfigError(f"{where}.key: must be a non-empty string, got {key!r}")
    return None if key is None else str(key)


def parse_layer(entry: Any, index: int, where: str):
    """One entry of a ``layers:`` list, by the kind its ``type`` names (blocks recursively)."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be a mapping with a 'type', got {entry!r}")
    entry = dict(entry)
    name = entry.pop("type", None)
    if name is None:
        raise ConfigError(f"{where}.type: required (one of {sorted(KINDS)})")
    if not isinstance(name, str) or name not in KINDS:
        raise ConfigError(f"{where}.type: {name!r} is not one of {sorted(KINDS)}")
    spec = KINDS[name].from_config(name, entry, index, where)
    spec.validate()
    return spec


def parse_sequence(entries: Any, where: str) -> tuple:
    """A list of layers (a stack, a residual's ``layers``, a parallel's branch)."""
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: must be a non-empty list of layers, got {entries!r}")
    return tuple(parse_layer(entry, j, f"{where}[{j}]") for j, entry in enumerate(entries))


@dataclass(frozen=True)
class Kind(ABC):
    """The contract of a layer kind: an abstract base whose abstract members every kind gives —
    frames out for frames in (:meth:`output_frames`), the input frames an output span needs
    (:meth:`input_span`), the least input that gives one frame (:meth:`min_input_frames`) and
    the first layer a short input starves (:meth:`first_starved`), FLOPs per input frame
    (:meth:`flops_per_frame`), the whole-signal :meth:`forward` and the streaming form
    (:meth:`streamer`) — plus its ``names``. The rest has a default that is right for every
    kind (no tensors, no children, channels and rate unchanged). :class:`Pointwise` and
    :class:`~convt_audio.kinds.blocks.Block` give the abstract members for their families;
    :func:`register` refuses a kind that lacks one.

    Subclasses are frozen dataclasses; ``index`` and ``path`` (where the layer sits in its
    config) are keyword-only and not compared.
    """

    index: int = field(default=0, compare=False, kw_only=True)
    path: str | None = field(default=None, compare=False, kw_only=True)

    names: ClassVar[tuple] = ()  # the ``type:`` names this kind is registered under
    pointwise: ClassVar[bool] = False  # maps each frame on its own: same channels and frames, no state
    int_fields: ClassVar[tuple] = ()  # fields that take PyTorch's ``int or tuple`` (``3`` or ``[3]``)
    takes_codes: ClassVar[bool] = False  # a first layer that reads integer codes (not samples to scale)
    recurrent: ClassVar[bool] = False  # carries state from the whole past (beyond its receptive field)
    gemm_rows: ClassVar[int] = 0  # a matrix product over the frames: the rows (frames) it wants per call
    frames_last_tensors: ClassVar[tuple] = ()  # tensors its CPU streams take channels-last: stored so

    @property
    def where(self) -> str:
        """The YAML path of this layer, e.g. ``layers[4].branches[1][2]``."""
        return self.path or f"layers[{self.index}]"

    # -- config ----------------------------------------------------------------------------------
    @classmethod
    def config_fields(cls) -> dict[str, bool]:
        """The keys a config entry may hold, each with whether it is required."""
        return {
            f.name: f.default is MISSING and f.default_factory is MISSING
            for f in fields(cls)
            if f.init and f.name not in ("index", "path", "type")
        }

    @classmethod
    def from_config(cls, name: str, entry: dict, index: int, where: str):
        """The spec for one config entry (``type`` already removed): its fields as written."""
        accepted = cls.config_fields()
        if "key" in accepted:
            entry["key"] = parse_key(where, entry)
        check_keys(where, name, entry, accepted, [n for n, required in accepted.items() if required])
        values = {n: scalar_int(v) if n in cls.int_fields else v for n, v in entry.items()}
        return cls(**values, index=index, path=where)

    # -- structure -------------------------------------------------------------------------------
    def sequences(self) -> tuple:
        """The child sequences of a block; a leaf has none."""
        return ()

    def sequence_labels(self) -> tuple:
        """How tensor names continue into each sequence (``""`` → ``<i>.<j>``, ``"b."`` → ``<i>.<b>.<j>``)."""
        return ()

    def leaves(self) -> Iterator["Kind"]:
        yield self

    def validate(self) -> None:  # noqa: B027 - a kind with nothing to check beyond its parsing checks nothing
        """Check the parsed fields (a :class:`ConfigError` naming the field); nothing by default."""

    # -- tensors ---------------------------------------------------------------------------------
    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def init_params(self, generator=None) -> dict:
        """PyTorch's default initialisation of this layer's tensors (none by default)."""
        return {}

    def computed_tensors(self) -> dict:
        """Tensors a checkpoint of this layer may hold that the kind computes instead of reading
        (BigVGAN's stored filters): local name → the array expected; checked when present."""
        return {}

    # -- shape facts -----------------------------------------------------------------------------
    def input_channels(self) -> int | None:
        """The channels this layer requires, when it names them (a convolution, a snake)."""
        return None

    def latent_input_channels(self) -> int | None:
        """Another channel count a first layer takes (DAC's codebooks: the latent itself)."""
        return None

    def out_channels_for(self, channels: int | None) -> int | None:
        return channels

    def check_channels(self, channels: int | None) -> int | None:
        return channels

    @abstractmethod
    def output_frames(self, frames: int) -> int:
        """Output frames for ``frames`` input frames (0 when too few)."""

    @abstractmethod
    def input_span(self, first: int, last: int) -> tuple[int, int]:
        """The input frames ``[a, b]`` that output frames ``[first, last]`` depend on."""

    @abstractmethod
    def flops_per_frame(self) -> Fraction:
        """Floating-point operations per input frame."""

    @abstractmethod
    def first_starved(self, frames: int):
        """``(leaf, frames)`` if this layer would get too few frames to produce one, else None."""

    @abstractmethod
    def min_input_frames(self) -> int:
        """The fewest input frames that give at least one output frame."""

    @abstractmethod
    def forward(self, x, params):
        """The whole signal ``[batch, channels, frames]`` through this layer (torch)."""

    def rate(self) -> Fraction:
        return Fraction(1)

    def period(self) -> int:
        """The input frames after which this layer's frame arithmetic repeats."""
        return 1

    def leading_convs(self) -> list:
        """The layers inside that need the input's last frames up front (``circular``), when this
        one is reached through pointwise layers only."""
        return []

    def holds(self, leading: bool) -> str:
        """What this layer holds back beyond its window (``info``'s buffers column)."""
        return ""

    def held_elements(self, channels: int | None, channels_out: int | None, held: int) -> int:
        """Elements one block of input holds in this layer (its output ``held`` frames long)."""
        return (channels_out or 1) * held

    def info_columns(self) -> dict:
        """This kind's own columns in ``info``'s layer table."""
        return {}

    def computed_as(self) -> str | None:
        """How the torch engine computes this layer under ``kernel: auto`` (when it has a choice)."""
        return None

    @abstractmethod
    def streamer(self, params, tail=None, kernel: str = "auto"):
        """The streaming form: a :class:`~convt_audio.core.streaming.StreamingModule`."""

    def store_for_streams(self, params: dict, kernel: str = "auto") -> None:
        """Rewrite this leaf's tensors in place, once, when an engine that only streams is built,
        into the form its streams take (so that it is not held twice). Default: as loaded."""
        return None


@dataclass(frozen=True)
class Pointwise(Kind):
    """A layer that maps each frame on its own: same channels, same frames, no state; a new one
    is a row of the activations table, or a class that gives :meth:`forward` alone."""

    pointwise: ClassVar[bool] = True

    def streamer(self, params, tail=None, kernel: str = "auto"):
        from ..core.streaming import StreamingPointwise

        return StreamingPointwise(self, params)

    def forward_into(self, x, params, out) -> None:
        """Write ``forward(x, params)`` into ``out`` (a slice of the next convolution's input
        buffer, :meth:`~convt_audio.kinds.conv_torch.StreamingConv1d.push_activated`); a kind
        with an ``out=`` form overrides this and saves the copy."""
        out.copy_(self.forward(x, params))

    def first_starved(self, frames: int):
        return None

    def min_input_frames(self) -> int:
        return 1

    def output_frames(self, frames: int) -> int:
        return max(frames, 0)

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        return first, last

    def flops_per_frame(self) -> Fraction:
        return Fraction(0)


@dataclass(frozen=True)
class PerChannel(Pointwise):
    """A pointwise kind of ``channels`` channels in and out (the snakes, ``layer_norm``,
    ``scale``): those channel facts, checked against the layer before it."""

    channels: int

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
