"""What runs the files: the options of a run, the engine per file (:class:`Runner`), built from
a small picklable :class:`RunnerRecipe`, and the CPU and memory it may use."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from ..core.errors import AudioError, UsageError, option
from ..core.options import CHANNEL_MODES, CLIP_MODES, NON_FINITE_MODES
from ..core.process import MEMORY_ENV, memory_budget, size_text
from ..io.audio import RawFormat
from ..model.config import Config


@dataclass(frozen=True)
class RunOptions:
    """How to run files (the ``run`` command's options, minus file selection)."""

    chunk: int | None = None  # input frames per block; None: the engine's preferred size
    channels: str | None = None  # overrides the config's channels mode
    input_rate: Fraction | int | None = None  # for .npy inputs; None: the config's feature rate
    subtype: str | None = None
    clip: str = "clamp"
    overwrite: bool = False
    skip_existing: bool = False
    non_finite: str = "error"  # NaN/Inf input samples: "error" (the file fails) or "zero" (replaced)
    container: str | None = None  # --type: the container of outputs the tool names, and of -o -
    dither: bool = True  # TPDF dither where a PCM output has fewer bits than the computation (--no-dither)
    raw: RawFormat | None = None  # a headerless input's description (--input-type raw ...)

    def __post_init__(self) -> None:
        chunk = self.chunk
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise UsageError(
                f"{option('chunk')}: a positive whole number of input frames (or None: automatic), got {chunk!r}"
            )
        if self.overwrite and self.skip_existing:
            raise UsageError(f"{option('overwrite')} and {option('skip_existing')} exclude each other")
        for name, allowed in (
            ("clip", CLIP_MODES),
            ("non_finite", NON_FINITE_MODES),
            ("channels", (None, *CHANNEL_MODES)),
        ):
            if getattr(self, name) not in allowed:
                raise UsageError(f"{option(name)}: {getattr(self, name)!r} is not one of {[a for a in allowed if a]}")


def device_free_bytes(engine) -> int | None:
    """What a block may still take on ``engine``'s CUDA device: its free memory plus what
    torch's allocator holds unused (freed blocks it keeps for reuse); None off CUDA."""
    device = getattr(engine, "torch_device", None)
    if device is None or device.type != "cuda":
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def fit_chunk(engine, chunk: int | None, batch: int, budget: int | None = None) -> int:
    """The input frames per block: ``chunk`` (the user's) or the engine's preferred size, shrunk
    (when automatic) until the block's buffers fit a quarter of the memory budget — on a CUDA
    device, of its free memory where that is less; a block that cannot fit the budget even at
    its smallest is refused, naming the layer and the bytes."""
    budget = memory_budget() if budget is None else budget
    bound = f"the memory budget of {size_text(budget)} (${MEMORY_ENV} sets it)"
    free = device_free_bytes(engine)
    if free is not None and free < budget:  # a block's buffers live on the device
        budget, bound = free, f"the {size_text(free)} free on {engine.torch_device}"
    size = chunk or engine.preferred_chunk()
    smallest = max(1, engine.min_input_frames())
    if chunk is None:
        while size > smallest and engine.block_bytes(size, batch)[0] > budget // 4:
            size = max(smallest, size // 2)
    total, where, most = engine.block_bytes(size, batch)
    if total > budget:
        advice = f"a smaller --chunk (it is {size})" if chunk is not None else "a stack with smaller strides"
        raise AudioError(
            f"{where} would hold {most:,} bytes ({size_text(most)}; all layers {size_text(total)}) for one "
            f"block of {size} input frame(s) × {batch}, over {bound}; use {advice}"
        )
    return size


class Runner:
    """What runs each file: one config and its engine, or — with ``target_rate`` and no config —
    the resampler for each input rate (:func:`~convt_audio.model.resamplers.resampler_for`), built once per
    ratio with ``build(config, params)`` (:func:`~convt_audio.model.engines.build_engine`).

    With both a config and ``target_rate``, the config's output is resampled to ``target_rate``
    where it differs (``-c hifigan-v1 -r 48000``): one stream, the config's engine then the NumPy
    resampler (:class:`~convt_audio.model.engines.ChainedEngine`), built once per rate.
    """

    def __init__(
        self,
        config: Config | None = None,
        engine=None,
        target_rate: int | None = None,
        build: Callable | None = None,
        allow_aliasing: bool = False,
        upsample_only: bool = False,
    ):
        if config is None and (target_rate is None or build is None):
            raise ValueError("a Runner needs a config and engine, or a target rate and a builder")
        self.config, self.engine, self.target_rate, self.build = config, engine, target_rate, build
        self.allow_aliasing = allow_aliasing
        self.upsample_only = upsample_only  # the default target (no config, no rate): inputs below it only
        self._by_ratio: dict = {}  # (config, engine) by ratio (no config) or by the config's output rate
        self._lock = threading.Lock()
        self.slots = 1  # files streamed at once as one batch (--slots): the threads of a local batch
        self._shared: dict = {}  # id(engine) -> the SharedPool its files share

    def shared_pool(self, engine):
        """The :class:`~convt_audio.model.pool.SharedPool` the batch's files share on ``engine``
        (``slots`` above 1 and a torch stack), else None: each file streams on its own."""
        if self.slots <= 1 or getattr(engine, "stack", None) is None:
            return None
        from ..model.pool import SharedPool

        with self._lock:
            if id(engine) not in self._shared:
                self._shared[id(engine)] = SharedPool(engine, self.slots)
            return self._shared[id(engine)]

    def output_rate(self, input_rate) -> int:
        if self.config is None:
            return self.target_rate
        rate = self.config.output_rate(input_rate)
        return rate if self.target_rate is None else self.target_rate

    def pick(self, input_rate) -> tuple:
        """``(config, engine)`` for a file at ``input_rate``."""
        if self.config is not None:
            rate = self.config.output_rate(input_rate)
            if self.target_rate is None or rate == self.target_rate:
                return self.config, self.engine
            with self._lock:  # one chained engine per rate the config gives
                if rate not in self._by_ratio:
                    self._by_ratio[rate] = self._chained(rate)
                return self._by_ratio[rate]
        from ..model.resamplers import resampler_for

        ratio = Fraction(self.target_rate) / Fraction(input_rate)
        if self.upsample_only and ratio <= 1:
            raise UsageError(
                f"the input is {float(input_rate):g} Hz: without {option('target_rate')} or "
                f"{option('config')}, inputs below {self.target_rate} Hz are upsampled to it; give "
                f"{option('target_rate', 'HZ')} for another rate, or {option('config', 'CONFIG')}"
            )
        with self._lock:  # --jobs threads share one engine per ratio
            if ratio not in self._by_ratio:
                config, params = resampler_for(input_rate, self.target_rate, allow_aliasing=self.allow_aliasing)
                self._by_ratio[ratio] = (config, self.build(config, params))
            return self._by_ratio[ratio]

    def _chained(self, rate: int) -> tuple:
        """The config followed by the resampler from its ``rate`` to the target."""
        from dataclasses import replace

        from ..model.engines import ChainedEngine, build_engine
        from ..model.resamplers import resampler_for

        design, params = resampler_for(rate, self.target_rate, allow_aliasing=self.allow_aliasing)
        dtype = "float64" if self.engine.dtype == np.float64 else "float32"
        resampler = build_engine(design, params, "cpu", dtype)
        offset = len(self.config.layers)
        layers = self.config.layers + tuple(
            replace(spec, index=offset + i, path=None) for i, spec in enumerate(design.layers)
        )
        config = replace(
            self.config,
            name=f"{self.config.name} then {rate}->{self.target_rate} Hz",
            layers=layers,
            tensor_names=self.config.tensor_names + design.tensor_names,
            output_sample_rate=self.target_rate,
        )
        return config, ChainedEngine(self.engine, resampler, layers)


DEFAULT_RATE = 48000  # run with neither a config nor --rate: inputs below it are resampled to it
MAX_RESAMPLE_RATE = 8 * 768000  # Hz: --rate without a config (a check of a config's rate may name any)


@dataclass(frozen=True)
class RunnerRecipe:
    """How to build a :class:`Runner` — small and picklable, so that each cluster worker loads
    the config and weights itself, once (:mod:`convt_audio.run.cluster`)."""

    config: str | None = None  # a path or built-in name; None with target_rate: chosen per input rate
    weights: str | None = None
    target_rate: int | None = None  # None with config None: DEFAULT_RATE, for inputs below it
    device: str = "auto"
    dtype: str = "float32"
    deterministic: bool = False
    threads: int | None = None
    allow_aliasing: bool = False  # --allow-aliasing: the older band edges (0.45/0.55 of the lower rate)
    condition: str | float | None = None  # the config's condition (--condition): Vocos's bandwidth

    def build(self) -> tuple[Runner, list[str]]:
        """The runner, and the names of weight tensors the config does not use."""
        from ..model.config import load_config
        from ..model.engines import build_engine
        from ..model.weights import load_params

        def make(config, params):
            return build_engine(config, params, self.device, self.dtype, self.deterministic)

        if self.config is None:
            if self.target_rate is not None and self.target_rate > MAX_RESAMPLE_RATE:
                raise UsageError(
                    f"{option('target_rate')}: resampling goes up to {MAX_RESAMPLE_RATE} Hz (8 × 768 kHz), "
                    f"got {self.target_rate}"
                )
            if self.condition is not None:
                raise UsageError(f"{option('condition')} needs {option('config')}: a choice a config declares")
            if self.weights is not None:
                raise UsageError(
                    f"{option('weights')} needs {option('config')}: without one the resampler is "
                    f"chosen for each input rate"
                )
            return Runner(
                target_rate=self.target_rate or DEFAULT_RATE,
                build=make,
                allow_aliasing=self.allow_aliasing,
                upsample_only=self.target_rate is None,
            ), []
        if self.allow_aliasing and self.target_rate is None:
            raise UsageError(
                f"{option('allow_aliasing')} chooses the band edges of the resampler that "
                f"{option('target_rate')} designs; {option('config')} alone brings its own filter"
            )
        if self.target_rate is not None and self.target_rate > MAX_RESAMPLE_RATE:
            raise UsageError(
                f"{option('target_rate')}: resampling goes up to {MAX_RESAMPLE_RATE} Hz (8 × 768 kHz), "
                f"got {self.target_rate}"
            )
        config = load_config(self.config).with_condition(self.condition)
        params, unused = load_params(config, self.weights, self.dtype)
        engine = make(config, params)
        if engine.name == "torch":
            from ..core.process import set_torch_threads

            set_torch_threads(self.threads)
        return Runner(config, engine, self.target_rate, allow_aliasing=self.allow_aliasing), unused
