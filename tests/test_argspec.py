"""Functions and the methods or commands that share their defaults keep them equal."""

import inspect

from cli.main import design_sinc_command, run
from convt_audio.design import design_sinc
from convt_audio.engines import build_engine
from convt_audio.stream import StreamingStack, stream


def defaults(fn) -> dict:
    out = {}
    for name, param in inspect.signature(fn).parameters.items():
        default = param.default
        if hasattr(default, "default"):  # a Typer Option/Argument
            default = default.default
        if hasattr(default, "value"):  # an Enum choice
            default = default.value
        out[name] = default
    return out


def test_stream_function_and_streaming_stack_share_defaults():
    f, m = defaults(stream), defaults(StreamingStack.__init__)
    assert {k: f[k] for k in ("tail", "kernel")} == {k: m[k] for k in ("tail", "kernel")}


def test_design_command_defaults_are_the_designers():
    f, c = defaults(design_sinc), defaults(design_sinc_command)
    assert {k: f[k] for k in ("passband", "stopband", "attenuation")} == \
        {k: c[k] for k in ("passband", "stopband", "attenuation")}


def test_run_command_defaults_are_the_engines():
    e, r = defaults(build_engine), defaults(run)
    assert (e["device"], e["dtype"], e["deterministic"]) == (r["device"], r["dtype"], r["deterministic"])
