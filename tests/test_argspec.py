"""Functions and the methods or commands that share their defaults keep them equal."""

import inspect

from cli.main import design_sinc_command, run
from convt_audio.model.engines import build_engine
from convt_audio.model.stack import StreamingStack, stream
from convt_audio.resampling.design import design_sinc


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
    assert {k: f[k] for k in ("passband", "stopband", "attenuation")} == {
        k: c[k] for k in ("passband", "stopband", "attenuation")
    }


def test_run_command_defaults_are_the_engines():
    e, r = defaults(build_engine), defaults(run)
    assert (e["device"], e["dtype"], e["deterministic"]) == (r["device"], r["dtype"], r["deterministic"])


def test_library_errors_name_parameters_and_the_cli_names_its_flags():
    """The library says what its callers pass (factor=…); the command line says --factor."""
    import pytest
    from typer.testing import CliRunner

    from cli.main import FLAGS, app
    from convt_audio.core.errors import UsageError

    with pytest.raises(UsageError) as info:
        design_sinc(1)
    assert str(info.value).startswith("factor: must be") and "--" not in str(info.value)
    assert info.value.render(FLAGS).startswith("--factor: must be")
    result = CliRunner().invoke(app, ["design", "sinc", "--factor", "1", "-o", "x"])
    assert result.exit_code == 2 and "convt-audio: error: --factor: must be" in result.stderr
