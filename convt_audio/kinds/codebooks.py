"""``codebooks``: a residual vector quantizer's codes back to its latent — the step before a
codec's decoder. The input is integer codes, one row per codebook (``(n_q, frames)``, as EnCodec's
and DAC's encoders return them); each frame's latent is the sum over codebooks of that
codebook's entry (EnCodec: ``layers.{i}._codebook.embed``; Vocos: the same tables stacked in one
``codebook_weights``, row ``i·bins + code``), or of its projection (DAC:
``quantizers.{i}.codebook.weight`` through the weight-normed ``out_proj`` 1×1 convolution).

With ``latents: true`` (DAC) the stack also takes the quantized latent itself: an input of
the latent's channel count passes through unchanged, so one built-in decodes codes and latents.

A file with fewer rows than the model has codebooks (a lower bitrate) is padded with
:data:`ABSENT` rows, which add nothing. A code that is not a whole number in ``[0, bins)`` is an
error naming its row and frame. Each frame maps on its own: it streams with no state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar

from ..core.errors import AudioError, ConfigError, option
from ..core.options import ABSENT_CODE
from ..core.streaming import StreamingModule
from .base import MAX_CHANNELS, Pointwise, check_int, expect_channels, register

ABSENT = ABSENT_CODE  # a codebook row the input does not have
LAYOUTS = ("encodec", "stacked", "dac")


@register
@dataclass(frozen=True)
class CodebooksSpec(Pointwise):
    """``codebooks`` rows of codes in; ``dim`` channels out (``projection`` with DAC's layout)."""

    codebooks: int
    bins: int
    dim: int
    projection: int | None = None  # DAC: out_proj's output channels (the latent's)
    layout: str = "encodec"
    rows: int | None = None  # the rows a file must hold (set by a condition: Vocos's bandwidth)
    latents: bool = False  # an input of out_width channels is the latent already: passed through
    key: str | None = None
    type: str = field(default="codebooks", init=False)

    names: ClassVar[tuple] = ("codebooks",)
    int_fields: ClassVar[tuple] = ("codebooks", "bins", "dim", "projection", "rows")
    takes_codes: ClassVar[bool] = True  # integer inputs are codes, not PCM samples to scale

    def validate(self) -> None:
        check_int(self.where, "codebooks", self.codebooks, 1, 1024)
        check_int(self.where, "bins", self.bins, 1, 1 << 20)
        check_int(self.where, "dim", self.dim, 1, MAX_CHANNELS)
        if self.layout not in LAYOUTS:
            raise ConfigError(f"{self.where}.layout: {self.layout!r} is not one of {list(LAYOUTS)}")
        if (self.layout == "dac") != (self.projection is not None):
            raise ConfigError(f"{self.where}.projection: required with layout dac (out_proj's channels), and only then")
        if self.projection is not None:
            check_int(self.where, "projection", self.projection, 1, MAX_CHANNELS)
        if self.rows is not None:
            check_int(self.where, "rows", self.rows, 1, self.codebooks)
        if not isinstance(self.latents, bool):
            raise ConfigError(f"{self.where}.latents: must be true or false, got {self.latents!r}")
        if self.latents and self.out_width == self.codebooks:
            raise ConfigError(
                f"{self.where}.latents: the latent's {self.out_width} channels must differ from the "
                f"{self.codebooks} rows of codes, to tell the inputs apart"
            )

    @property
    def out_width(self) -> int:
        return self.projection or self.dim

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.layout == "stacked":
            return {"codebook_weights": (self.codebooks * self.bins, self.dim)}
        shapes = {}
        for i in range(self.codebooks):
            if self.layout == "encodec":
                shapes[f"layers.{i}._codebook.embed"] = (self.bins, self.dim)
            else:
                shapes[f"quantizers.{i}.codebook.weight"] = (self.bins, self.dim)
                shapes[f"quantizers.{i}.out_proj.weight"] = (self.projection, self.dim, 1)
                shapes[f"quantizers.{i}.out_proj.bias"] = (self.projection,)
        return shapes

    def init_params(self, generator=None) -> dict:
        import torch

        return {name: torch.randn(shape, generator=generator) for name, shape in self.tensor_shapes().items()}

    def input_channels(self) -> int:
        return self.codebooks

    def out_channels_for(self, channels: int | None) -> int:
        return self.out_width

    def latent_input_channels(self) -> int | None:
        return self.out_width if self.latents else None

    def check_channels(self, channels: int | None) -> int:
        if not (self.latents and channels == self.out_width):
            expect_channels(self.where, "codebooks", self.codebooks, channels)
        return self.out_width

    def is_latent(self, x) -> bool:
        """Whether ``x [B, C, n]`` is the latent itself (``latents``), not codes."""
        return self.latents and x.shape[1] == self.out_width

    def flops_per_frame(self) -> Fraction:
        return Fraction(self.codebooks * (self.dim + 2 * self.dim * (self.projection or 0)))

    def held_elements(self, channels: int | None, channels_out: int | None, held: int) -> int:
        return self.out_width * held

    def check_codes(self, x, first_frame: int = 0) -> None:
        """Every value a whole number in ``[0, bins)`` (or :data:`ABSENT`), else an error naming
        the first bad one's row (codebook) and frame."""
        import torch

        whole = x == torch.round(x)
        ok = whole & (((x >= 0) & (x < self.bins)) | (x == ABSENT))
        if bool(ok.all()):
            if self.rows is not None and x.shape[-1]:
                present = int((x != ABSENT).any(dim=-1).any(dim=0).sum())
                if present != self.rows:
                    raise AudioError(
                        f"codes have {present} rows, but the {option('condition')} chosen decodes {self.rows}: "
                        f"choose the one for {present} rows"
                    )
            return
        _, row, frame = (int(i) for i in torch.nonzero(~ok)[0])
        value = float(x[torch.nonzero(~ok)[0].unbind()])
        what = "not a whole number" if value != round(value) else f"outside [0, {self.bins})"
        raise AudioError(
            f"codes row {row}, frame {first_frame + frame}: {value:g} is {what}: not a code of "
            f"{self.where}'s {self.bins}-entry codebooks"
        )

    def forward(self, x, params):
        if self.is_latent(x):
            return x
        self.check_codes(x)
        return self.decode(x, params)

    def decode(self, x, params):
        """The latent of codes already checked (:meth:`check_codes`)."""
        import torch
        import torch.nn.functional as F

        out = x.new_zeros(x.shape[0], self.out_width, x.shape[-1])
        for i in range(self.codebooks):
            codes = x[:, i]
            present = (codes != ABSENT)[:, None, :].to(x.dtype)
            if not bool(present.any()):
                continue
            index = codes.clamp(min=0).to(torch.long)
            if self.layout == "encodec":
                entry = F.embedding(index, params[f"layers.{i}._codebook.embed"]).transpose(1, 2)
            elif self.layout == "stacked":
                entry = F.embedding(index + i * self.bins, params["codebook_weights"]).transpose(1, 2)
            else:
                latent = F.embedding(index, params[f"quantizers.{i}.codebook.weight"]).transpose(1, 2)
                weight, bias = params[f"quantizers.{i}.out_proj.weight"], params[f"quantizers.{i}.out_proj.bias"]
                entry = F.conv1d(latent, weight, bias)
            out = out + entry * present
        return out

    def streamer(self, params, tail=None, kernel: str = "auto"):
        return StreamingCodes(self, params)


class StreamingCodes(StreamingModule):
    """Frame by frame, counting frames so that a bad code is named by its place in the file."""

    @dataclass
    class State:
        frames: int = 0

    poolable = True
    positions = ("frames",)  # names a bad code's frame; a pool checks each stream's codes itself

    def __init__(self, spec: CodebooksSpec, params: dict):
        self.spec, self.params = spec, params
        super().__init__()

    def _push(self, chunk):
        if self.spec.is_latent(chunk):
            return chunk
        self.spec.check_codes(chunk, self.state.frames)  # once, named by the frame's place in the file
        self.state.frames += chunk.shape[-1]
        return self.spec.decode(chunk, self.params)

    def _flush(self):
        return self._empty(self.spec.out_width)
