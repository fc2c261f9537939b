"""convt-audio: exact streaming of audio through stacks of transposed convolutions.

The engine is importable without the command line::

    from convt_audio import load_config, load_stack, run_chunked
    config = load_config("sinc-x3")
    stack, _ = load_stack(config)
    y = run_chunked(stack, x, 4096)          # == stack.forward(x), frame for frame
"""

__version__ = "0.1.0"

from .config import Config, builtin_configs, load_config, parse_config
from .errors import (
    AudioError,
    ClippingError,
    ConfigError,
    ConvtAudioError,
    DeviceError,
    InputTooShortError,
    UsageError,
    WeightsError,
)
from .layers import ActivationSpec, Conv1dSpec, ConvTranspose1dSpec, SnakeSpec, Stack, extend
from .stream import StreamingStack, run_chunked, stream
from .weights import load_stack, read_tensors

__all__ = [
    "__version__", "Config", "builtin_configs", "load_config", "parse_config", "AudioError",
    "ClippingError", "ConfigError", "ConvtAudioError", "DeviceError", "InputTooShortError",
    "UsageError", "WeightsError", "ActivationSpec", "Conv1dSpec", "ConvTranspose1dSpec",
    "SnakeSpec", "Stack", "extend", "StreamingStack", "run_chunked", "stream", "load_stack",
    "read_tensors",
]
