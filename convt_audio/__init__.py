"""convt-audio: exact streaming of audio through stacks of transposed convolutions.

The engine is importable without the command line::

    import convt_audio
    y = convt_audio.resample(x, 44100, 48000)          # x: (frames,) or (frames, channels); axis=-1 for (channels, frames)
    model = convt_audio.load("sinc-x3")                # model(x), model.stream(): (channels, frames)
    record = convt_audio.convert("in.wav", "out.wav", rate=48000)

Names are imported on first use, so ``import convt_audio`` (and configs, layer kinds, the
NumPy resampler) does not load torch until something needs it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "model.config",
    "builtin_configs": "model.config",
    "load_config": "model.config",
    "parse_config": "model.config",
    "AudioError": "core.errors",
    "ClippingError": "core.errors",
    "ConfigError": "core.errors",
    "ConvtAudioError": "core.errors",
    "DeviceError": "core.errors",
    "InputTooShortError": "core.errors",
    "UsageError": "core.errors",
    "WeightsError": "core.errors",
    "ActivationSpec": "kinds",
    "Conv1dSpec": "kinds",
    "ConvTranspose1dSpec": "kinds",
    "SnakeSpec": "kinds",
    "SnakeBetaSpec": "kinds",
    "AliasFreeSpec": "kinds",
    "PqmfSynthesisSpec": "kinds",
    "LayerNormSpec": "kinds",
    "ScaleSpec": "kinds",
    "LstmSpec": "kinds",
    "LinearSpec": "kinds",
    "IstftSpec": "kinds",
    "CodebooksSpec": "kinds",
    "Kind": "kinds",
    "register": "kinds",
    "Engine": "core.engine",
    "ResidualSpec": "kinds",
    "ParallelSpec": "kinds",
    "KINDS": "kinds",
    "Stack": "model.stack",
    "extend": "kinds.padding",
    "StreamingStack": "model.stack",
    "run_chunked": "model.stack",
    "stream": "model.stack",
    "StreamingModule": "core.streaming",
    "load_stack": "model.weights",
    "read_tensors": "model.weights",
    "resample": "api",
    "load": "api",
    "convert": "api",
    "Model": "api",
    "Stream": "api",
    "Pool": "api",
    "PoolStream": "api",
    "FileReport": "run.filestream",
    "RunOptions": "run.runner",
    "RawFormat": "io.audio",
    "RunRequest": "run.prepare",
    "RawInput": "run.prepare",
}
__all__ = ["__version__", *_EXPORTS]


def __dir__() -> list[str]:
    """The public names too, before their first use imports them (``dir()``, ``help()``, completion)."""
    return sorted({*globals(), *_EXPORTS})


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
