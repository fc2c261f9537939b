"""The lstm kind against EnCodec's SLSTM (written from the authors' modules.py: ``nn.LSTM`` over
the frames, ``y = lstm(x) + x``), from a checkpoint in its layout, whole and streamed frame by
frame or in any chunks: exact because the state (h, c) is carried."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_encodec import SLSTM
from test_stream import chunk_schedules

from convt_audio.core.errors import ConfigError
from convt_audio.model.config import parse_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_stack


def _pair(tmp_path, channels: int, layers: int, skip: bool, seed: int):
    torch.manual_seed(seed)
    module = SLSTM(channels, layers, skip).double().eval()
    prefix = "decoder.model.1."
    torch.save({prefix + k: v for k, v in module.state_dict().items()}, tmp_path / "slstm.pt")
    config = parse_config(
        {
            "layers": [
                {
                    "type": "lstm",
                    "channels": channels,
                    "num_layers": layers,
                    "skip": skip,
                    "key": "decoder.model.1.lstm",
                }
            ]
        }
    )
    stack, unused = load_stack(config, tmp_path / "slstm.pt", dtype=torch.float64)
    assert unused == []
    return module, stack


@settings(max_examples=30, deadline=None)
@given(
    channels=st.integers(1, 8),
    layers=st.integers(1, 3),
    skip=st.booleans(),
    frames=st.integers(1, 80),
    schedule=chunk_schedules,
    seed=st.integers(0, 99),
)
def test_lstm_equals_encodecs_slstm_whole_and_streamed(
    tmp_path_factory, channels, layers, skip, frames, schedule, seed
):
    module, stack = _pair(tmp_path_factory.mktemp("lstm"), channels, layers, skip, seed)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(2, channels, frames)))
    with torch.no_grad():
        want = module(x)
    torch.testing.assert_close(stack.forward(x), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(run_chunked(stack, x, schedule), want, rtol=0, atol=1e-12)


def test_frame_by_frame_with_a_convolution_before_it(tmp_path):
    """In a stack, after a convolution whose output comes in uneven pieces."""
    module, _ = _pair(tmp_path, 4, 2, True, 3)
    config = parse_config(
        {
            "layers": [
                {"type": "conv1d", "in_channels": 1, "out_channels": 4, "kernel_size": 5, "padding": 2},
                {"type": "lstm", "channels": 4, "num_layers": 2, "skip": True},
            ]
        }
    )
    from convt_audio.model.stack import Stack

    stack = Stack.initialised(config.layers, seed=0).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 50)))
    whole = stack.forward(x)
    torch.testing.assert_close(run_chunked(stack, x, 1), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(run_chunked(stack, x, [7, 3, 11]), whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"bidirectional": True}, r"bidirectional: a bidirectional LSTM reads every later frame .* cannot stream"),
        ({"hidden_size": 6, "skip": True}, r"skip: adds the input to the output, so hidden_size \(6\) must equal"),
        ({"num_layers": 0}, r"num_layers: must be a positive integer"),
    ],
)
def test_what_cannot_stream_or_add_up_is_refused_by_name(layer, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"layers": [{"type": "lstm", "channels": 4, **layer}]})
