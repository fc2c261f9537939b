"""conv1d with ``padding: [left, right]`` (a causal convolution is ``[d·(K−1), 0]``, as EnCodec's
and moshi's) and conv_transpose1d with ``trim: [left, right]`` (EnCodec cuts ``K − stride`` from
the right only), in every padding mode: equal to the definitions (numpy.pad then a valid
convolution; the full transposed convolution cut at each end), whole and streamed at any chunk
sizes; the shape facts follow the two ends."""

import numpy as np
import pytest
import torch
from helpers import brute_conv1d, brute_conv_transpose1d
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stream import chunk_schedules

from convt_audio.core.errors import ConfigError
from convt_audio.kinds import CONV1D_PADDING_MODES, PADDING_MODES, Conv1dSpec, ConvTranspose1dSpec
from convt_audio.model.config import parse_config
from convt_audio.model.stack import Stack, run_chunked


@settings(max_examples=120, deadline=None)
@given(
    kernel=st.integers(1, 7),
    dilation=st.integers(1, 3),
    stride=st.integers(1, 3),
    left=st.integers(0, 9),
    right=st.integers(0, 9),
    mode=st.sampled_from(CONV1D_PADDING_MODES),
    frames=st.integers(1, 30),
    schedule=chunk_schedules,
    seed=st.integers(0, 99),
)
def test_asymmetric_padding_equals_numpy_pad_whole_and_streamed(
    kernel, dilation, stride, left, right, mode, frames, schedule, seed
):
    spec = Conv1dSpec(2, 3, kernel, stride=stride, padding=(left, right), dilation=dilation, padding_mode=mode)
    spec.validate()
    if mode == "reflect" and max(left, right) >= frames:
        return  # numpy's reflect needs fewer pad frames than the signal has (the stream reflects within)
    out_frames = spec.output_frames(frames)
    assert out_frames == max(0, (frames + left + right - dilation * (kernel - 1) - 1) // stride + 1) or out_frames == 0
    if out_frames < 1:
        return
    stack = Stack.initialised([spec], seed=seed).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(1, 2, frames)))
    p = stack.params[0]
    want = brute_conv1d(x[0].numpy(), p["weight"].numpy(), p["bias"].numpy(), spec, out_frames)
    np.testing.assert_allclose(stack.forward(x)[0].numpy(), want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(run_chunked(stack, x, schedule)[0].numpy(), want, rtol=1e-10, atol=1e-10)


@settings(max_examples=120, deadline=None)
@given(
    kernel=st.integers(1, 8),
    dilation=st.integers(1, 2),
    stride=st.integers(1, 4),
    left=st.integers(0, 8),
    right=st.integers(0, 8),
    output_padding=st.integers(0, 3),
    mode=st.sampled_from(PADDING_MODES),
    frames=st.integers(1, 20),
    schedule=chunk_schedules,
    seed=st.integers(0, 99),
)
def test_a_trimmed_transposed_convolution_equals_its_definition_whole_and_streamed(
    kernel, dilation, stride, left, right, output_padding, mode, frames, schedule, seed
):
    if not (output_padding < stride or output_padding < dilation):
        return
    spec = ConvTranspose1dSpec(
        2,
        3,
        kernel,
        stride=stride,
        dilation=dilation,
        output_padding=output_padding,
        padding_mode=mode,
        trim=(left, right),
    )
    spec.validate()
    out_frames = spec.output_frames(frames)
    full = (frames - 1) * stride + dilation * (kernel - 1) + output_padding + 1
    assert out_frames == max(0, full - left - right)
    if out_frames < 1:
        return
    stack = Stack.initialised([spec], seed=seed).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(1, 2, frames)))
    p = stack.params[0]
    want = brute_conv_transpose1d(x[0].numpy(), p["weight"].numpy(), p["bias"].numpy(), spec, out_frames)
    np.testing.assert_allclose(stack.forward(x)[0].numpy(), want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(run_chunked(stack, x, schedule)[0].numpy(), want, rtol=1e-10, atol=1e-10)
    if mode == "zeros" and output_padding == 0:  # EnCodec's own: the full output, unpadded at both ends
        torch_full = torch.nn.functional.conv_transpose1d(x, p["weight"], p["bias"], stride, dilation=dilation)
        np.testing.assert_allclose(stack.forward(x).numpy(), torch_full[..., left : full - right].numpy(), atol=1e-10)


def test_a_causal_convolution_looks_nowhere_ahead():
    from convt_audio.run.report import summary

    config = parse_config(
        {"layers": [{"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 7, "dilation": 2,
                     "padding": [12, 0], "padding_mode": "reflect"}]}
    )  # fmt: skip
    facts = summary(config, 16000, None, "none")
    assert facts["lookahead_input_frames"] == 0 and facts["receptive_field_input_frames"] == 13
    assert config.layers[0].output_frames(50) == 50


@pytest.mark.parametrize("frames", [1, 2, 6, 7, 8, 40])
def test_reflect_zeros_is_encodecs_pad1d_whole_and_streamed(frames):
    """EnCodec's causal SConv1d (k7: pad1d(x, (6, 0), "reflect") then the convolution), written
    as its ``modules/conv.py`` does, against a ``padding: [6, 0]`` conv1d in ``reflect_zeros``:
    equal on inputs shorter than the padding too, where plain ``reflect`` differs."""
    spec = Conv1dSpec(2, 3, 7, padding=(6, 0), padding_mode="reflect_zeros")
    spec.validate()
    stack = Stack.initialised([spec], seed=frames).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(frames).normal(size=(1, 2, frames)))
    extra = max(0, 6 - frames + 1)  # pad1d: zeros first where the signal is no longer than the pad
    padded = torch.nn.functional.pad(torch.nn.functional.pad(x, (0, extra)), (6, 0), "reflect")
    padded = padded[..., : padded.shape[-1] - extra]
    want = torch.nn.functional.conv1d(padded, stack.params[0]["weight"], stack.params[0]["bias"])
    assert want.shape[-1] == frames
    torch.testing.assert_close(stack.forward(x), want, rtol=0, atol=1e-12)
    for schedule in ([1], [7], [3, 1, 5]):
        torch.testing.assert_close(run_chunked(stack, x, schedule), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"type": "conv1d", "padding": [1, 2, 3]}, r"padding: a number, or \[left, right\]"),
        ({"type": "conv1d", "padding": [1, -2]}, r"padding: must be an integer >= 0"),
        ({"type": "conv_transpose1d", "padding": [1, 2]}, r"padding: \[left, right\] is for conv1d"),
        ({"type": "conv_transpose1d", "trim": [1, 2], "padding": 1}, r"trim: replaces padding"),
        ({"type": "conv_transpose1d", "trim": [1]}, r"trim: \[left, right\]"),
        (
            {"type": "conv_transpose1d", "padding_mode": "reflect_zeros"},
            r"padding_mode: 'reflect_zeros' is not one of \['circular', 'reflect', 'replicate', 'zeros'\]",
        ),
    ],
)
def test_bad_paddings_name_the_field(layer, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"layers": [{"in_channels": 1, "out_channels": 1, "kernel_size": 3, **layer}]})
