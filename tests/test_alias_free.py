"""snake_beta, logscale snakes and the alias_free kind against BigVGAN's own modules (written
from the official code in reference_vocoders.py), whole and streamed."""

import numpy as np
import pytest
import torch
from clitools import invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_vocoders import Activation1d, Snake, SnakeBeta
from test_stream import chunk_schedules

from convt_audio.core.errors import ConfigError
from convt_audio.model.config import parse_config
from convt_audio.model.stack import Stack, run_chunked
from convt_audio.model.weights import load_stack

CHANNELS = 3


def _config(activation: dict, **stage):
    return parse_config(
        {
            "layers": [
                {"type": "conv1d", "in_channels": 1, "out_channels": CHANNELS, "kernel_size": 3, "padding": 1},
                {"type": "alias_free", "activation": activation, **stage},
                {"type": "conv1d", "in_channels": CHANNELS, "out_channels": 1, "kernel_size": 1},
            ]
        }
    )


def _reference(config, stack, module_activation, **stage):
    """The same stack as plain modules: conv, BigVGAN's Activation1d around the activation, conv."""
    first, last = torch.nn.Conv1d(1, CHANNELS, 3, padding=1), torch.nn.Conv1d(CHANNELS, 1, 1)
    with torch.no_grad():
        first.weight.copy_(stack.params[0]["weight"])
        first.bias.copy_(stack.params[0]["bias"])
        last.weight.copy_(stack.params[2]["weight"])
        last.bias.copy_(stack.params[2]["bias"])
        for name, tensor in stack.params[1].items():
            getattr(module_activation, name.removeprefix("act.")).copy_(tensor.reshape(-1))
    return torch.nn.Sequential(first, Activation1d(module_activation, **stage), last).double()


@pytest.mark.parametrize("kind,module", [("snake", Snake), ("snake_beta", SnakeBeta)])
@pytest.mark.parametrize("logscale", [False, True])
@pytest.mark.parametrize(
    "stage",
    [
        {},
        {"up_ratio": 3, "down_ratio": 3, "up_kernel_size": 18, "down_kernel_size": 17},
        {"up_ratio": 2, "down_ratio": 1, "up_kernel_size": 7},
    ],
)
def test_alias_free_equals_bigvgans_activation1d(kind, module, logscale, stage):
    config = _config({"type": kind, "channels": CHANNELS, "logscale": logscale}, **stage)
    stack = Stack.initialised(config.layers, seed=3)
    generator = torch.Generator().manual_seed(4)
    for tensor in stack.params[1].values():  # away from the initial 0 or 1, as trained values are
        tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator) + (0.0 if logscale else 1.0))
    reference = _reference(config, stack, module(CHANNELS, alpha_logscale=logscale), **stage)
    x = torch.randn(2, 1, 301, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        want = reference(x)
    stack64 = stack.to(dtype=torch.float64)
    scale = float(want.abs().max())
    for got in (stack64.forward(x), run_chunked(stack64, x, 7), run_chunked(stack64, x, [1, 64, 5])):
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= 1e-12 * scale
    assert config.rate_factor() == stage.get("up_ratio", 2) / stage.get("down_ratio", 2)


def test_alias_free_loads_a_bigvgan_layout_and_checks_its_filters(tmp_path):
    """BigVGAN stores α, β as (C,) and the two filters as buffers: the (C,) tensors load into
    (1, C, 1); the buffers are recomputed by the kind and checked against the file's."""
    import yaml

    config = {
        "layers": [
            {"type": "conv1d", "in_channels": 1, "out_channels": CHANNELS, "kernel_size": 1, "key": "pre"},
            {
                "type": "alias_free",
                "key": "act",
                "activation": {"type": "snake_beta", "channels": CHANNELS, "logscale": True},
            },
        ]
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    module = Activation1d(SnakeBeta(CHANNELS, alpha_logscale=True))
    state = {f"act.{k}": v for k, v in module.state_dict().items()}
    state["pre.weight"], state["pre.bias"] = torch.randn(CHANNELS, 1, 1), torch.zeros(CHANNELS)
    torch.save(state, tmp_path / "w.pt")
    stack, unused = load_stack(parse_config(config), tmp_path / "w.pt")
    assert unused == []
    assert stack.params[1]["act.alpha"].shape == (1, CHANNELS, 1)
    spec = stack.specs[1]
    up, down = spec.filters(torch.zeros(1, CHANNELS, 1), CHANNELS)
    assert torch.equal(up[0, 0], 2 * state["act.upsample.filter"][0, 0])
    assert torch.equal(down[0, 0, 1:], state["act.downsample.lowpass.filter"][0, 0])  # one zero tap in front
    result = invoke("info", tmp_path / "c.yaml", "-w", tmp_path / "w.pt", "--json")
    assert result.exit_code == 0, result.stderr
    assert '"alias_free"' in result.stdout and '"snake_beta"' in result.stdout


@settings(max_examples=40, deadline=None)
@given(
    up=st.integers(1, 3),
    down=st.integers(1, 3),
    up_extra=st.integers(0, 11),
    down_kernel=st.integers(1, 13),
    frames=st.integers(1, 90),
    schedule=chunk_schedules,
)
def test_alias_free_streams_exactly_for_any_ratios_and_kernels(up, down, up_extra, down_kernel, frames, schedule):
    stage = dict(up_ratio=up, down_ratio=down, up_kernel_size=up + up_extra, down_kernel_size=down_kernel)
    config = _config({"type": "leaky_relu", "negative_slope": 0.2}, **stage)
    stack = Stack.initialised(config.layers, seed=1).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(frames).normal(size=(1, 1, frames)))
    if stack.output_frames(frames) < 1:
        return
    from convt_audio.core.shapes import frames_through

    spec = stack.specs[1]
    for n in range(1, 40):  # the closed form is the stage's own arithmetic
        assert spec.output_frames(n) == frames_through(spec.stage(), n)
    want = stack.forward(x)
    assert want.shape[-1] == stack.output_frames(frames)
    torch.testing.assert_close(run_chunked(stack, x, schedule), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "activation,message",
    [
        ({"type": "conv1d", "in_channels": 3, "out_channels": 3, "kernel_size": 1}, "must be a pointwise activation"),
        ({"type": "snake_beta", "channels": 0}, r"layers\[1\]\.activation\.channels: must be a positive integer"),
        ({"type": "snake", "channels": 3, "logscale": "yes"}, "logscale: must be true or false"),
    ],
)
def test_alias_free_bad_configs_name_the_field(activation, message):
    with pytest.raises(ConfigError, match=message):
        _config(activation)
    with pytest.raises(ConfigError, match=r"layers\[1\]\.up_ratio: must be at most 16"):
        _config({"type": "relu"}, up_ratio=17)
    with pytest.raises(ConfigError, match=r"layers\[1\]\.up_kernel_size: 2 is shorter than up_ratio 3"):
        _config({"type": "relu"}, up_ratio=3, up_kernel_size=2)
    with pytest.raises(ConfigError, match=r"layers\[1\]\.activation: required for alias_free"):
        parse_config(
            {
                "layers": [
                    {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1},
                    {"type": "alias_free"},
                ]
            }
        )


@settings(max_examples=30, deadline=None)
@given(
    subbands=st.integers(2, 5),
    half_taps=st.integers(1, 40),
    frames=st.integers(1, 60),
    schedule=chunk_schedules,
)
def test_pqmf_synthesis_equals_parallel_wavegans_and_streams(subbands, half_taps, frames, schedule):
    """The PQMF synthesis kind against parallel-wavegan's PQMF.synthesis (float64), whole and streamed."""
    from reference_vocoders import PQMF

    taps = 2 * half_taps
    config = parse_config({"layers": [{"type": "pqmf_synthesis", "subbands": subbands, "taps": taps}]})
    stack = Stack.initialised(config.layers).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(frames).normal(size=(2, subbands, frames)))
    with torch.no_grad():
        want = PQMF(subbands, taps).double().synthesis(x)
    assert stack.output_frames(frames) == want.shape[-1] == subbands * frames
    torch.testing.assert_close(stack.forward(x), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(run_chunked(stack, x, schedule), want, rtol=0, atol=1e-12)
