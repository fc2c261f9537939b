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
    "Config": "config",
    "builtin_configs": "config",
    "load_config": "config",
    "parse_config": "config",
    "AudioError": "errors",
    "ClippingError": "errors",
    "ConfigError": "errors",
    "ConvtAudioError": "errors",
    "DeviceError": "errors",
    "InputTooShortError": "errors",
    "UsageError": "errors",
    "WeightsError": "errors",
    "ActivationSpec": "kinds",
    "Conv1dSpec": "kinds",
    "ConvTranspose1dSpec": "kinds",
    "SnakeSpec": "kinds",
    "ResidualSpec": "kinds",
    "ParallelSpec": "kinds",
    "KINDS": "kinds",
    "Stack": "stack",
    "extend": "padding",
    "StreamingStack": "stack",
    "run_chunked": "stack",
    "stream": "stack",
    "StreamingModule": "streaming",
    "load_stack": "weights",
    "read_tensors": "weights",
    "resample": "api",
    "load": "api",
    "convert": "api",
    "Model": "api",
    "Stream": "api",
    "FileReport": "filestream",
    "RunOptions": "runner",
    "RawFormat": "audio_io",
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
