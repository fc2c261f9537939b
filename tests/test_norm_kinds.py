"""layer_norm and scale (Vocos's ConvNeXt pieces) against PyTorch's own modules, whole and streamed
at any chunk sizes, with the checkpoint names the authors' modules give them."""

import numpy as np
import pytest
import torch
from clitools import invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stream import chunk_schedules

from convt_audio.core.errors import ConfigError
from convt_audio.model.config import load_config, parse_config
from convt_audio.model.stack import Stack, run_chunked


def _stack(channels: int, eps: float, affine: bool, seed: int) -> tuple:
    config = parse_config(
        {
            "layers": [
                {"type": "conv1d", "in_channels": 1, "out_channels": channels, "kernel_size": 7, "padding": 3},
                {"type": "layer_norm", "channels": channels, "eps": eps, "affine": affine},
                {"type": "gelu"},
                {"type": "scale", "channels": channels},
                {"type": "conv1d", "in_channels": channels, "out_channels": 1, "kernel_size": 3, "padding": 1},
            ]
        }
    )
    stack = Stack.initialised(config.layers, seed=seed).to(dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    for leaf, params in zip(stack.leaves, stack.params):
        for name in params:
            if leaf.type in ("layer_norm", "scale"):  # away from the identity-like defaults
                params[name] = torch.randn(params[name].shape, generator=generator, dtype=torch.float64)
    return config, stack


def _reference(stack, x, eps, affine):
    """The same stack as PyTorch modules: LayerNorm on the channels-last view, as Vocos applies it."""
    conv_in, norm, _, scale, conv_out = stack.params
    channels = conv_in["weight"].shape[0]
    y = torch.nn.functional.conv1d(x, conv_in["weight"], conv_in["bias"], padding=3)
    module = torch.nn.LayerNorm(channels, eps=eps, elementwise_affine=affine).double()
    if affine:
        module.weight.data, module.bias.data = norm["weight"], norm["bias"]
    y = module(y.transpose(1, 2)).transpose(1, 2)
    y = torch.nn.functional.gelu(y) * scale["gamma"][None, :, None]
    return torch.nn.functional.conv1d(y, conv_out["weight"], conv_out["bias"], padding=1)


@settings(max_examples=40, deadline=None)
@given(
    channels=st.integers(1, 9),
    eps=st.sampled_from([1e-5, 1e-6, 0.1]),
    affine=st.booleans(),
    frames=st.integers(1, 120),
    schedule=chunk_schedules,
    seed=st.integers(0, 99),
)
def test_layer_norm_and_scale_equal_pytorch_whole_and_streamed(channels, eps, affine, frames, schedule, seed):
    _, stack = _stack(channels, eps, affine, seed)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(2, 1, frames)))
    want = _reference(stack, x, eps, affine)
    torch.testing.assert_close(stack.forward(x), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(run_chunked(stack, x, schedule), want, rtol=0, atol=1e-12)


def test_the_tensors_carry_the_authors_names(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "layers:\n"
        "  - {type: layer_norm, channels: 4, eps: 1e-6, key: backbone.convnext.0.norm}\n"
        "  - {type: scale, channels: 4, key: backbone.convnext.0}\n"
    )
    config = load_config(str(tmp_path / "c.yaml"))  # eps: 1e-6 is a number, as YAML 1.2 reads it
    assert [sorted(names.values()) for names in config.tensor_names] == [
        ["backbone.convnext.0.norm.bias", "backbone.convnext.0.norm.weight"],
        ["backbone.convnext.0.gamma"],
    ]
    block = torch.nn.LayerNorm(4, eps=1e-6)
    torch.save(
        {"backbone.convnext.0.norm.weight": block.weight.data, "backbone.convnext.0.norm.bias": block.bias.data,
         "backbone.convnext.0.gamma": torch.full((4,), 0.125)},
        tmp_path / "w.pt",
    )  # fmt: skip
    result = invoke("info", tmp_path / "c.yaml", "-w", tmp_path / "w.pt")
    assert result.exit_code == 0, result.stderr
    assert "layer_norm" in result.stdout and "scale" in result.stdout


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"type": "layer_norm", "channels": 0}, r"layers\[1\]\.channels: must be a positive integer"),
        ({"type": "layer_norm", "channels": 4, "eps": 0}, r"layers\[1\]\.eps: must be a number > 0"),
        ({"type": "layer_norm", "channels": 4, "affine": "yes"}, r"layers\[1\]\.affine: must be true or false"),
        ({"type": "scale", "channels": 5}, r"layers\[1\]\.channels: 5 does not match the 4 channels"),
    ],
)
def test_bad_configs_name_the_field(layer, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"layers": [{"type": "conv1d", "in_channels": 1, "out_channels": 4, "kernel_size": 1}, layer]})
