"""The Python API: arrays in, arrays out, with the engines and guarantees of ``convt-audio run``.

import convt_audio
y = convt_audio.resample(x, 44100, 48000)                 # (frames,) or (frames, channels)
model = convt_audio.load("hifigan-v1", "g_02500000")      # model(mel) -> audio
stream = model.stream()                                   # push(chunk) / flush() / reset()
record = convt_audio.convert("in.wav", "out.wav", rate=48000)   # one file, as run writes it
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import UsageError


def _as_array(x, what: str) -> tuple[np.ndarray, bool]:
    """``x`` as a float NumPy array (float64 stays float64), and whether it was a torch tensor."""
    is_torch = type(x).__module__.startswith("torch")
    if is_torch:
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.dtype.kind not in "fiu":
        raise UsageError(f"{what}: expected numbers, got an array of {array.dtype}")
    if array.dtype != np.float64:
        array = array.astype(np.float32)
    if array.size and not np.isfinite(array).all():
        raise UsageError(f"{what}: holds NaN or Inf values")
    return array, is_torch


def _rate(value, name: str, whole: str | None = None) -> Fraction | int:
    """A rate argument (Hz, ``"48k"``; with ``whole``, the noun of a whole number of Hz), a
    :class:`UsageError` naming ``name`` if it is none."""
    from .config import parse_rate, whole_rate
    from .errors import ConfigError

    try:
        return parse_rate(value, name) if whole is None else whole_rate(value, name, whole)
    except ConfigError as exc:
        raise UsageError(exc.args[0]) from None


def _stream_all(engine, data: np.ndarray) -> np.ndarray:
    """``[B, C, n]`` through a fresh stream of ``engine`` in its preferred blocks."""
    stream = engine.open_stream(data.shape[0])
    size = engine.preferred_chunk()
    parts = [stream.push(data[..., i : i + size]) for i in range(0, data.shape[-1], size)]
    parts.append(stream.flush())
    return np.concatenate(parts, axis=-1)


def resample(x, sr_in, sr_out, *, axis: int = 0, allow_aliasing: bool = False) -> np.ndarray:
    """Resample ``x`` from ``sr_in`` to ``sr_out`` Hz: the resampler and samples of ``run -r``.

    Parameters
    ----------
    x : array, laid out as ``soundfile.read`` and python-soxr have it: ``(frames,)`` or
        ``(frames, channels)``; ``axis`` names the frames' axis of another layout.
    sr_in, sr_out : rates in Hz (ints; ``sr_out`` may be ``"48k"`` as on the command line).
    allow_aliasing : the older band edges (0.45/0.55 of the lower rate) instead of alias-free ones.

    Returns
    -------
    The resampled array, same layout, ``⌈frames·sr_out/sr_in⌉`` frames, zero delay; float64 for
    float64 input, else float32.
    """
    from .design import resampler_for
    from .engines import build_engine

    rate_in, rate_out = _rate(sr_in, "sr_in", "a sample rate"), _rate(sr_out, "sr_out", "a sample rate")
    array, _ = _as_array(x, "x")
    if array.ndim == 0:
        raise UsageError("x: expected an array of frames, got a scalar")
    moved = np.moveaxis(array, axis, -1)  # [..., frames]
    if moved.shape[-1] == 0:
        raise UsageError("x: has no frames")
    if rate_in == rate_out:
        return array.copy()
    config, params = resampler_for(rate_in, rate_out, allow_aliasing=allow_aliasing)
    dtype = "float64" if array.dtype == np.float64 else "float32"
    engine = build_engine(config, params, "cpu", dtype)
    lead = moved.shape[:-1]
    flat = np.ascontiguousarray(moved.reshape(-1, 1, moved.shape[-1]))
    engine.check_frames(flat.shape[-1])
    out = _stream_all(engine, flat)
    return np.moveaxis(out.reshape(*lead, out.shape[-1]), -1, axis)


class Model:
    """A config's stack with its weights on its engine: ``model(x)`` for a whole array,
    ``model.stream()`` for live input. Arrays are laid out as torch modules take them —
    ``(channels, frames)`` or ``(batch, channels, frames)`` — NumPy or torch in, the same out."""

    def __init__(self, config, engine):
        self.config, self.engine = config, engine

    @property
    def in_channels(self) -> int:
        return self.engine.in_channels

    @property
    def out_channels(self) -> int:
        return self.engine.out_channels

    @property
    def rate_factor(self) -> Fraction:
        return self.config.rate_factor()

    def output_frames(self, frames: int) -> int:
        return self.engine.output_frames(frames)

    def __call__(self, x):
        array, is_torch = _as_array(x, "x")
        batched = self._batched(array)
        self.engine.check_frames(batched.shape[-1])
        return _restore(_stream_all(self.engine, batched), array.ndim, is_torch)

    def stream(self) -> "Stream":
        """A live stream: ``push(chunk)`` returns the frames now final, ``flush()`` the rest;
        the frames joined equal ``model(x)`` whatever the chunk sizes."""
        return Stream(self)

    def _batched(self, array: np.ndarray) -> np.ndarray:
        if array.ndim not in (2, 3):
            raise UsageError(f"x: expected (channels, frames) or (batch, channels, frames), got shape {array.shape}")
        batched = array[None] if array.ndim == 2 else array
        if batched.shape[1] != self.in_channels:
            raise UsageError(
                f"x: has {batched.shape[1]} channels; {self.config.name} takes {self.in_channels} "
                f"(arrays are (channels, frames), as torch modules take them)"
            )
        return np.ascontiguousarray(batched, dtype=np.float64 if self.engine.dtype == np.float64 else np.float32)


class Stream:
    """One live stream of a :class:`Model` (the batch size is fixed by the first chunk)."""

    def __init__(self, model: Model):
        self.model = model
        self._stream = None
        self._ndim = None
        self._torch = False

    def push(self, chunk):
        array, self._torch = _as_array(chunk, "chunk")
        batched = self.model._batched(array)
        if self._stream is None:
            self._stream, self._ndim = self.model.engine.open_stream(batched.shape[0]), array.ndim
        elif array.ndim != self._ndim:
            raise UsageError("chunk: every chunk of a stream has the same layout")
        return _restore(self._stream.push(batched), self._ndim, self._torch)

    def flush(self):
        if self._stream is None:
            raise UsageError("flush: nothing was pushed")
        return _restore(self._stream.flush(), self._ndim, self._torch)

    def reset(self) -> None:
        """Forget everything pushed: the next push starts a new signal."""
        self._stream, self._ndim = None, None


def _restore(out: np.ndarray, ndim: int, is_torch: bool):
    out = out[0] if ndim == 2 else out
    if is_torch:
        import torch

        return torch.from_numpy(np.ascontiguousarray(out))
    return out


def load(config=None, weights=None, *, device: str = "auto", dtype: str = "float32") -> Model:
    """A :class:`Model` for ``config`` (a path or a built-in name; default ``sinc-x3``) and
    ``weights`` (default: the config's), on the engine the command line would choose (NumPy for
    resampler stacks on the CPU, else torch on ``device``)."""
    from .config import load_config
    from .engines import build_engine
    from .weights import load_params

    cfg = load_config(config)
    params, _ = load_params(cfg, weights, dtype)
    return Model(cfg, build_engine(cfg, params, device, dtype))


def convert(
    src, dst, *, config=None, weights=None, rate=None, overwrite: bool = False, skip_existing: bool = False, **options
):
    """Run one file as ``convt-audio run SRC -o DST`` does — clash checks, atomic write,
    non-finite policy, memory bounds — and return its
    :class:`~convt_audio.filestream.FileReport`, the record ``--json`` prints (``.as_dict()``).

    ``rate`` is ``--rate`` (Hz; without ``config``, the resampler is chosen for the file's rate);
    ``options`` are :class:`~convt_audio.runner.RunOptions` fields (``subtype``, ``clip``,
    ``non_finite``, ``channels``, ``chunk``, ``input_rate``, ``kind``) and ``device``, ``dtype``,
    ``allow_aliasing``. Raises :class:`~convt_audio.errors.ConvtAudioError` subclasses.
    """
    from dataclasses import fields

    from .filestream import process_file
    from .planning import check_outputs, plan_jobs
    from .runner import RunnerRecipe, RunOptions

    recipe_keys = {"device", "dtype", "deterministic", "threads", "allow_aliasing"}
    option_keys = {f.name for f in fields(RunOptions)} - {"overwrite", "skip_existing"}
    unknown = set(options) - recipe_keys - option_keys
    if unknown:
        raise UsageError(f"convert: unknown option(s) {sorted(unknown)}; allowed: {sorted(recipe_keys | option_keys)}")
    target = None if rate is None else _rate(rate, "target_rate", "an output rate")
    recipe = RunnerRecipe(
        None if config is None else str(config),
        None if weights is None else str(weights),
        target,
        **{k: v for k, v in options.items() if k in recipe_keys},
    )
    runner, _ = recipe.build()
    run_options = RunOptions(
        overwrite=overwrite, skip_existing=skip_existing, **{k: v for k, v in options.items() if k in option_keys}
    )
    if run_options.input_rate is not None:
        run_options = RunOptions(**{**run_options.__dict__, "input_rate": _rate(run_options.input_rate, "input_rate")})
    if Path(str(src)).is_dir():
        raise UsageError(f"{src}: convert takes one file (the command line runs folders)")
    jobs = check_outputs(plan_jobs([src], dst, kind=run_options.kind), runner, run_options.input_rate, run_options.kind)
    return process_file(runner, jobs[0], run_options)
