"""Resamplers as configs: a :class:`~convt_audio.resampling.design.SincDesign` written as a config and
its weights (``design sinc``), and the resampler for a pair of rates (``run --rate``) — a
built-in ``sinc-xL``, or a design kept in a checked cache. The filter design itself is
:mod:`convt_audio.resampling.design`'s; this module makes it a model."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ..core.errors import UsageError, option
from ..resampling.design import (
    ALIASING_EDGES,
    ATTENUATION,
    PASSBAND,
    STOPBAND,
    SincDesign,
    Stage,
    _kaiser_stage,
    check_size,
    plan_stages,
)


def sinc_config(design: SincDesign, name: str, weights_file: str) -> dict:
    """A config mapping (ready for YAML) that runs ``design``."""
    return {
        "name": name,
        "description": design.describe(),
        "weights": weights_file,
        "channels": "auto",
        "layers": design.layers(),
    }


def write_sinc(design: SincDesign, stem: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<stem>.yaml`` and ``<stem>.safetensors`` (taps kept in float64) atomically."""
    import yaml

    from ..io.atomic import atomic_path
    from .weights import write_tensors

    stem = Path(stem)
    if stem.suffix in (".yaml", ".yml", ".safetensors"):
        stem = stem.with_suffix("")
    config_path, weights_path = stem.with_name(stem.name + ".yaml"), stem.with_name(stem.name + ".safetensors")
    for path in (config_path, weights_path):
        if path.exists() and not overwrite:
            raise UsageError(f"{path}: already exists (pass {option('overwrite')} to replace it)")
    if not config_path.parent.is_dir():
        raise UsageError(f"{config_path.parent}: folder does not exist")
    data = sinc_config(design, stem.name, weights_path.name)
    write_tensors(weights_path, design.tensors())
    with atomic_path(config_path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config_path, weights_path


# --------------------------------------------------------------------------------------------
# the resampler for a pair of rates (``run --rate``)


def cache_dir() -> Path | None:
    """Where designed resamplers are kept: ``$CONVT_AUDIO_CACHE``, else the platform's user cache
    folder (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows) + ``convt-audio``; None where there is no home directory to
    hold one (the cache is optional: designs are then made afresh)."""
    import os
    import sys

    if os.environ.get("CONVT_AUDIO_CACHE"):
        return Path(os.environ["CONVT_AUDIO_CACHE"])
    if os.name != "nt" and sys.platform != "darwin" and os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "convt-audio"
    try:
        home = Path.home()
    except (RuntimeError, KeyError, OSError):  # no HOME and no passwd entry (a container's uid)
        return None
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "convt-audio"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "convt-audio" / "Cache"
    return home / ".cache" / "convt-audio"


CACHE_FORMAT = "2"  # bumped whenever the design changes: older cached taps are then redesigned


def _design_key(ratio: Fraction, passband: float, stopband: float, attenuation: float) -> str:
    return f"sinc {ratio} {passband!r} {stopband!r} {attenuation!r} v{CACHE_FORMAT}"


def _checksum(arrays) -> str:
    import hashlib

    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
    return digest.hexdigest()


def _read_cached(path: Path, key: str, count: int) -> list[np.ndarray] | None:
    """The ``count`` stages' taps cached at ``path`` if they answer ``key`` and are intact."""
    names = [f"stage{i}" for i in range(count)]
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
            if meta.get("design") != key or sorted(handle.keys()) != names:
                return None
            taps = [handle.get_tensor(name) for name in names]
    except Exception:  # noqa: BLE001 - missing, unreadable, garbage: a cache miss
        return None
    if any(t.dtype != np.float64 or t.ndim != 1 for t in taps) or meta.get("sha256") != _checksum(taps):
        return None
    return taps


def _write_cached(path: Path, key: str, taps: list[np.ndarray]) -> None:
    """Keep the stages' taps at ``path``; a cache that cannot be written (read-only, full) is skipped."""
    from ..io.atomic import atomic_path

    try:
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(
                {f"stage{i}": t for i, t in enumerate(taps)},
                str(tmp),
                metadata={"design": key, "sha256": _checksum(taps)},
            )
    except Exception:  # noqa: BLE001 - SafetensorError on a full disk, OSError, AudioError: not our job to fail
        pass


COPY_SOURCE = "<copy>"  # the source of the equal-rates config: the audio copied, nothing computed


def resampler_for(input_rate, output_rate, cache: Path | None = None, allow_aliasing: bool = False):
    """The config and weights that turn ``input_rate`` into ``output_rate`` (Hz).

    Equal rates: a one-tap identity (the audio is copied unchanged). An integer ratio with a
    built-in ``sinc-xL``: that config. Any other L/M: a :func:`design_sinc` resampler (one or two
    stages) whose taps are kept in the cache folder. A cache is never an authority: cached taps
    are used only when their recorded design (ratio, band edges, attenuation, format) is the one
    asked for and their SHA-256 matches, else they are designed again; the config is always
    built here, from the design. A cache that cannot be read or written only costs the design
    time. ``allow_aliasing`` uses the older band edges (0.45/0.55 of the lower rate). A ratio no
    resampler can give is a :class:`UsageError` naming the output rate, found before designing
    anything. Returns ``(config, params)``.
    """
    from .config import builtin_configs, load_config, parse_config
    from .weights import load_params

    ratio = Fraction(output_rate) / Fraction(input_rate)
    if ratio == 1:
        config = parse_config(
            {
                "name": "copy",
                "description": "the input, unchanged",
                "layers": [
                    {"type": "conv_transpose1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1, "bias": False}
                ],
            },
            source=COPY_SOURCE,
        )
        return config, [{"weight": np.ones((1, 1, 1))}]
    name = f"sinc-x{ratio}" if ratio.denominator == 1 else f"sinc-{ratio.numerator}-{ratio.denominator}"
    if name in builtin_configs() and not allow_aliasing:
        config = load_config(name)
        return config, load_params(config)[0]
    passband, stopband = ALIASING_EDGES if allow_aliasing else (PASSBAND, STOPBAND)
    stages = plan_stages(ratio, passband, stopband, ATTENUATION)
    try:
        check_size(ratio, stages, ATTENUATION)
    except UsageError as exc:
        detail = str(exc.args[0]).split(": ", 1)[1]
        raise UsageError(
            f"{option('target_rate', output_rate)}: {float(input_rate):g} Hz -> {output_rate} Hz is a "
            f"{ratio} resampler, which {detail}"
        ) from None
    folder = cache_dir() if cache is None else Path(cache)
    if allow_aliasing:
        name += "-aliasing"
    key = _design_key(ratio, passband, stopband, ATTENUATION)
    path = None if folder is None else folder / f"{name}.safetensors"
    taps = None if path is None else _read_cached(path, key, len(stages))
    if taps is None:  # the plan is checked already: design its stages
        taps = [_kaiser_stage(up, down, p, s, ATTENUATION).taps for up, down, p, s in stages]
        if path is not None:
            _write_cached(path, key, taps)
    design = SincDesign(
        tuple(Stage(up, down, t, p, s) for (up, down, p, s), t in zip(stages, taps)), passband, stopband, ATTENUATION
    )
    data = sinc_config(design, name, f"{name}.safetensors")
    del data["weights"]
    config = parse_config(data, source=f"<{name}, {path or 'not cached: no home directory'}>")
    return config, [{"weight": t} for t in design.tensors().values()]
