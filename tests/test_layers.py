"""Whole-signal layers: PyTorch where it is defined, README.md's brute-force sum where it is not."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import brute_conv1d, brute_conv_transpose1d, module_values, one_thread, pad_frames
from hypothesis import given
from hypothesis import strategies as st

from convt_audio.core.errors import ConfigError, InputTooShortError
from convt_audio.kinds import (
    ACTIVATIONS,
    CONV1D_PADDING_MODES,
    PADDING_MODES,
    ActivationSpec,
    Conv1dSpec,
    ConvTranspose1dSpec,
    SnakeSpec,
)
from convt_audio.kinds.padding import extend
from convt_audio.model.config import parse_config
from convt_audio.model.stack import Stack, run_chunked


@st.composite
def conv_transpose_specs(draw, modes=PADDING_MODES, max_channels=3):
    groups = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3))
    return ConvTranspose1dSpec(
        in_channels=groups * draw(st.integers(1, max_channels)),
        out_channels=groups * draw(st.integers(1, max_channels)),
        kernel_size=draw(st.integers(1, 7)),
        stride=stride,
        padding=draw(st.integers(0, 7)),
        output_padding=draw(st.integers(0, max(stride, dilation) - 1)),
        groups=groups,
        bias=draw(st.booleans()),
        dilation=dilation,
        padding_mode=draw(st.sampled_from(modes)),
    )


@st.composite
def conv1d_specs(draw, modes=CONV1D_PADDING_MODES):
    groups = draw(st.integers(1, 3))
    return Conv1dSpec(
        in_channels=groups * draw(st.integers(1, 3)),
        out_channels=groups * draw(st.integers(1, 3)),
        kernel_size=draw(st.integers(1, 7)),
        stride=draw(st.integers(1, 4)),
        padding=draw(st.integers(0, 7)),
        groups=groups,
        bias=draw(st.booleans()),
        dilation=draw(st.integers(1, 3)),
        padding_mode=draw(st.sampled_from(modes)),
    )


def _stack64(spec, seed=0):
    return Stack.initialised([spec], seed=seed).to(dtype=torch.float64)


@given(
    frames=st.integers(1, 9),
    left=st.integers(0, 25),
    right=st.integers(0, 25),
    mode=st.sampled_from(CONV1D_PADDING_MODES),
)
def test_extend_is_numpy_pad(frames, left, right, mode):
    x = np.random.default_rng(frames).standard_normal((2, frames))
    got = extend(torch.from_numpy(x), left, right, mode).numpy()
    want = pad_frames(x, left, right, mode)
    np.testing.assert_array_equal(got, want)


@given(spec=conv_transpose_specs(modes=("zeros",)), frames=st.integers(1, 30), seed=st.integers(0, 99))
def test_conv_transpose_zeros_equals_pytorch(spec, frames, seed):
    if spec.output_frames(frames) < 1:
        return
    stack = _stack64(spec, seed)
    x = torch.randn(2, spec.in_channels, frames, dtype=torch.float64)
    p = stack.params[0]
    want = F.conv_transpose1d(
        x, p["weight"], p.get("bias"), spec.stride, spec.padding, spec.output_padding, spec.groups, spec.dilation
    )
    got = stack.forward(x)
    assert got.shape == want.shape
    assert got.shape[-1] == spec.output_frames(frames)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def _check_against_brute_force(spec, frames, seed, brute):
    out_frames = spec.output_frames(frames)
    if out_frames < 1:
        return
    stack = _stack64(spec, seed)
    x = torch.randn(1, spec.in_channels, frames, dtype=torch.float64)
    p = stack.params[0]
    bias = p["bias"].numpy() if "bias" in p else None
    want = brute(x[0].numpy(), p["weight"].numpy(), bias, spec, out_frames)
    np.testing.assert_allclose(stack.forward(x)[0].numpy(), want, rtol=1e-10, atol=1e-10)


@given(spec=conv_transpose_specs(max_channels=2), frames=st.integers(1, 10), seed=st.integers(0, 99))
def test_conv_transpose_all_modes_equal_brute_force(spec, frames, seed):
    _check_against_brute_force(spec, frames, seed, brute_conv_transpose1d)


@given(spec=conv1d_specs(), frames=st.integers(1, 12), seed=st.integers(0, 99))
def test_conv1d_all_modes_equal_brute_force(spec, frames, seed):
    _check_against_brute_force(spec, frames, seed, brute_conv1d)


@given(spec=conv1d_specs(modes=PADDING_MODES), frames=st.integers(1, 30), seed=st.integers(0, 99))
def test_conv1d_equals_pytorch_where_pytorch_defines_it(spec, frames, seed):
    if spec.output_frames(frames) < 1:
        return
    if spec.padding_mode == "reflect" and spec.padding >= frames:
        return  # PyTorch refuses; numpy reflects again (tested against brute force)
    if spec.padding_mode == "circular" and spec.padding > frames:
        return
    stack = _stack64(spec, seed)
    module = torch.nn.Conv1d(
        spec.in_channels,
        spec.out_channels,
        spec.kernel_size,
        spec.stride,
        spec.padding,
        spec.dilation,
        spec.groups,
        spec.bias,
        spec.padding_mode,
    )
    module = module.double()
    with torch.no_grad():
        module.weight.copy_(stack.params[0]["weight"])
        if spec.bias:
            module.bias.copy_(stack.params[0]["bias"])
    x = torch.randn(2, spec.in_channels, frames, dtype=torch.float64)
    torch.testing.assert_close(stack.forward(x), module(x).detach(), rtol=0, atol=1e-12)


def test_output_length_formula_from_the_spec():
    spec = ConvTranspose1dSpec(1, 1, kernel_size=5, stride=3, padding=2, output_padding=1, dilation=2)
    frames = 11
    assert spec.output_frames(frames) == (frames - 1) * 3 - 2 * 2 + 2 * (5 - 1) + 1 + 1
    stack = Stack.initialised([spec])
    assert stack.forward(torch.zeros(1, 1, frames)).shape[-1] == spec.output_frames(frames)


def test_output_padding_beyond_padding_gives_bias_only_frames():
    # K=1, stride 3, padding 0, output_padding 2: the last 2 frames receive no input at all
    spec = ConvTranspose1dSpec(1, 1, kernel_size=1, stride=3, output_padding=2)
    stack = Stack([spec], [{"weight": torch.ones(1, 1, 1), "bias": torch.tensor([0.5])}])
    y = stack.forward(torch.tensor([[[1.0, 2.0]]]))
    assert y.flatten().tolist() == [1.5, 0.5, 0.5, 2.5, 0.5, 0.5]


def test_reflect_transposed_on_a_hand_worked_case():
    # stride 1, K=3, padding 0: y[t] = Σ_{i+k=t} x_ext[i]·w[k], L_out = L + 2,
    # x_ext = [x2, x1 | x0, x1, x2 | x1, x0] by numpy.pad(mode="reflect")
    spec = ConvTranspose1dSpec(1, 1, kernel_size=3, bias=False, padding_mode="reflect")
    w = torch.tensor([[[1.0, 10.0, 100.0]]])
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    y = Stack([spec], [{"weight": w}]).forward(x).flatten().tolist()
    assert y == [1 + 2 * 10 + 3 * 100, 2 + 10 + 200, 3 + 20 + 100, 2 + 30 + 200, 1 + 20 + 300]


def test_circular_and_replicate_transposed_by_hand():
    w = torch.tensor([[[1.0, 10.0, 100.0]]])
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    circular = ConvTranspose1dSpec(1, 1, kernel_size=3, bias=False, padding_mode="circular")
    # x_ext = [x1, x2 | x0, x1, x2 | x0, x1]
    y = Stack([circular], [{"weight": w}]).forward(x).flatten().tolist()
    assert y == [1 + 30 + 200, 2 + 10 + 300, 3 + 20 + 100, 1 + 30 + 200, 2 + 10 + 300]
    replicate = ConvTranspose1dSpec(1, 1, kernel_size=3, bias=False, padding_mode="replicate")
    y = Stack([replicate], [{"weight": w}]).forward(x).flatten().tolist()
    assert y == [1 + 10 + 100, 2 + 10 + 100, 3 + 20 + 100, 3 + 30 + 200, 3 + 30 + 300]


def test_pytorch_init_bounds_and_seed():
    spec = ConvTranspose1dSpec(8, 6, kernel_size=4, stride=2, groups=2)
    gen = torch.Generator().manual_seed(3)
    params = spec.init_params(gen)
    bound = math.sqrt(spec.groups / (spec.out_channels * spec.kernel_size))
    assert params["weight"].shape == (8, 3, 4) and params["bias"].shape == (6,)
    assert params["weight"].abs().max() <= bound and params["weight"].abs().max() > 0.7 * bound
    module = torch.nn.ConvTranspose1d(8, 6, 4, stride=2, groups=2)  # PyTorch's own bound
    assert module.weight.abs().max() <= bound
    again = spec.init_params(torch.Generator().manual_seed(3))
    assert torch.equal(again["weight"], params["weight"])
    conv = Conv1dSpec(6, 4, kernel_size=3, groups=2)
    w = conv.init_params(torch.Generator().manual_seed(0))["weight"]
    assert w.abs().max() <= math.sqrt(2 / (6 * 3))


# Every activation of the table, against PyTorch's own module with the same defaults: a new
# entry in convt_audio/kinds/activations.py needs its line here (the test below checks).
TORCH_ACTIVATIONS = {
    "relu": torch.nn.ReLU(),
    "tanh": torch.nn.Tanh(),
    "sigmoid": torch.nn.Sigmoid(),
    "gelu": torch.nn.GELU(),
    "silu": torch.nn.SiLU(),
    "leaky_relu": torch.nn.LeakyReLU(),
    "elu": torch.nn.ELU(),
    "hardtanh": torch.nn.Hardtanh(),
    "clamp": lambda x: torch.clamp(x, min=-1.0, max=1.0),
}


def test_every_activation_has_a_reference():
    assert set(TORCH_ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("kind", sorted(TORCH_ACTIVATIONS))
def test_activations(kind):
    x = torch.linspace(-3, 3, 50)
    torch.testing.assert_close(ActivationSpec(kind).forward(x), TORCH_ACTIVATIONS[kind](x))
    # and from a config, through a stack, streamed at 7 frames a chunk
    conv = {"type": "conv1d", "in_channels": 1, "out_channels": 2, "kernel_size": 3}
    config = parse_config({"layers": [conv, {"type": kind}]})
    stack = Stack.initialised(config.layers, seed=1)
    x = torch.randn(1, 1, 40)
    want = TORCH_ACTIVATIONS[kind](Stack(config.layers[:1], stack.params[:1]).forward(x))
    torch.testing.assert_close(stack.forward(x), want)
    torch.testing.assert_close(run_chunked(stack, x, 7), want)


@pytest.mark.parametrize("kind", sorted(TORCH_ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activation_written_into_the_next_convolutions_buffer(kind, dtype):
    """An activation before a conv1d is written straight into the conv's input buffer, a slice
    of a larger tensor in either layout: the same values as its plain forward, nothing outside
    the slice touched, and the stack streamed at 1, 7 and 64 frames equal to its whole forward
    (float32 runs the channels-last convolutions)."""
    spec = ActivationSpec(kind)
    for frames_last in (False, True):
        x = torch.linspace(-3, 3, 4 * 9, dtype=dtype).reshape(1, 4, 9)
        buf = torch.full((1, 4, 12), 7.0, dtype=dtype)
        if frames_last:
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
            buf = torch.full((1, 12, 4), 7.0, dtype=dtype).transpose(1, 2)
        spec.forward_into(x, None, buf[..., 3:])
        torch.testing.assert_close(buf[..., 3:], spec.forward(x), rtol=0, atol=1e-6)
        assert bool((buf[..., :3] == 7).all())
    conv = {"type": "conv1d", "in_channels": 3, "out_channels": 6, "kernel_size": 3, "padding": 1}
    after = {"type": "conv1d", "in_channels": 6, "out_channels": 2, "kernel_size": 5, "dilation": 2}
    config = parse_config({"layers": [conv, {"type": kind}, after]})
    stack = Stack.initialised(config.layers, seed=3)
    stack = Stack(config.layers, [{k: v.to(dtype) for k, v in p.items()} for p in stack.params])
    x = torch.randn(1, 3, 300, generator=torch.Generator().manual_seed(4), dtype=dtype)
    want = stack.forward(x)
    for chunk in (1, 7, 64):
        torch.testing.assert_close(run_chunked(stack, x, chunk), want, rtol=1e-5, atol=1e-5)


def config_conv():
    return {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1}


def test_activation_parameters_and_snake():
    x = torch.linspace(-3, 3, 50)
    torch.testing.assert_close(ActivationSpec("leaky_relu", negative_slope=0.2).forward(x), F.leaky_relu(x, 0.2))
    torch.testing.assert_close(ActivationSpec("elu", alpha=0.5).forward(x), F.elu(x, 0.5))
    config = parse_config(
        {
            "layers": [
                {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1},
                {"type": "hardtanh", "min_val": -0.5, "max_val": 0.25},
                {"type": "clamp", "min": -0.1},
            ]
        }
    )
    assert config.layers[1] == ActivationSpec("hardtanh", min_val=-0.5, max_val=0.25)
    torch.testing.assert_close(config.layers[1].forward(x), F.hardtanh(x, -0.5, 0.25))
    torch.testing.assert_close(config.layers[2].forward(x), x.clamp(-0.1, 1.0))
    with pytest.raises(ConfigError, match=r"layers\[1\]\.min_val: 2.0 is above max_val = 1.0"):
        parse_config({"layers": [config_conv(), {"type": "hardtanh", "min_val": 2.0}]})
    with pytest.raises(ConfigError, match=r"layers\[1\]\.max: unknown key for hardtanh"):
        parse_config({"layers": [config_conv(), {"type": "hardtanh", "max": 2.0}]})
    alpha = torch.tensor([0.5, 2.0]).reshape(1, 2, 1)
    spec = SnakeSpec(2)
    stack = Stack([Conv1dSpec(1, 2, 1, bias=False), spec], [{"weight": torch.ones(2, 1, 1)}, {"alpha": alpha}])
    y = stack.forward(x.reshape(1, 1, -1))
    want = x + torch.sin(alpha * x) ** 2 / (alpha + 1e-9)
    torch.testing.assert_close(y, want.reshape(1, 2, -1))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(stride=0), "layers[0].stride: must be a positive integer, got 0"),
        (dict(kernel_size=0), "layers[0].kernel_size: must be a positive integer, got 0"),
        (dict(dilation=-1), "layers[0].dilation: must be a positive integer, got -1"),
        (dict(padding=-1), "layers[0].padding: must be an integer >= 0, got -1"),
        (dict(output_padding=-1), "layers[0].output_padding: must be an integer >= 0, got -1"),
        (
            dict(output_padding=2, stride=2, dilation=1),
            "layers[0].output_padding: must be smaller than stride or dilation, got 2 (stride=2, dilation=1)",
        ),
        (dict(groups=3), "layers[0].in_channels: 4 is not divisible by groups=3"),
        (dict(groups=2, out_channels=3), "layers[0].out_channels: 3 is not divisible by groups=2"),
        (
            dict(padding_mode="mirror"),
            "layers[0].padding_mode: 'mirror' is not one of ['circular', 'reflect', 'replicate', 'zeros']",
        ),
        (dict(bias="yes"), "layers[0].bias: must be true or false, got 'yes'"),
        (dict(stride=1.5), "layers[0].stride: must be a positive integer, got 1.5"),
    ],
)
def test_validation_messages(kwargs, message):
    base = dict(in_channels=4, out_channels=2, kernel_size=3)
    with pytest.raises(ConfigError) as info:
        ConvTranspose1dSpec(**{**base, **kwargs}).validate()
    assert str(info.value) == message


def test_output_padding_below_dilation_is_allowed():
    ConvTranspose1dSpec(1, 1, kernel_size=3, stride=1, dilation=3, output_padding=2).validate()


def test_channel_chain_is_checked():
    with pytest.raises(ConfigError, match=r"layers\[1\].in_channels: 3 does not match the 2 channels"):
        Stack.initialised([ConvTranspose1dSpec(1, 2, 3), ConvTranspose1dSpec(3, 1, 3, index=1)])


def test_too_short_input_is_a_clear_error():
    spec = Conv1dSpec(1, 1, kernel_size=9)
    stack = Stack.initialised([spec])
    assert stack.min_input_frames() == 9
    with pytest.raises(
        InputTooShortError,
        match=r"input too short: 4 frames reach layers\[0\] "
        r"\(conv1d\), which needs at least 9",
    ):
        stack.forward(torch.zeros(1, 1, 4))
    assert stack.forward(torch.zeros(1, 1, 9)).shape[-1] == 1


def test_min_input_frames_of_a_stack():
    specs = [
        ConvTranspose1dSpec(1, 1, kernel_size=2, stride=2, padding=3),
        Conv1dSpec(1, 1, kernel_size=5, stride=2, index=1),
    ]
    stack = Stack.initialised(specs)
    low = stack.min_input_frames()
    assert stack.output_frames(low) >= 1 and stack.output_frames(low - 1) == 0


@given(spec=conv1d_specs(modes=("zeros",)), frames=st.integers(1, 40), seed=st.integers(0, 99))
def test_a_small_dilated_chunk_as_a_matrix_product_equals_conv1d(spec, frames, seed):
    """The streamed small-chunk path for dilated convolutions (PyTorch's native one loops over
    elements) gives F.conv1d's sums, any groups, stride and dilation."""
    from convt_audio.kinds.conv_torch import dilated_as_matmul

    if frames < spec.receptive:
        return
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, spec.in_channels, frames, dtype=torch.float64, generator=generator)
    weight = torch.randn(spec.weight_shape, dtype=torch.float64, generator=generator)
    bias = torch.randn(spec.out_channels, dtype=torch.float64, generator=generator) if spec.bias else None
    want = F.conv1d(x, weight, bias, spec.stride, 0, spec.dilation, spec.groups)
    torch.testing.assert_close(dilated_as_matmul(x, weight, bias, spec), want, rtol=0, atol=1e-12)


def laid_out(rows: torch.Tensor, frames: int, layout: str) -> torch.Tensor:
    """``rows`` ``[B, n, C]`` as a ``[B, C, frames]`` input in ``layout``: frames outermost
    (as between convolutions), channels outermost (contiguous), or a slice from frame 3."""
    x = rows.transpose(1, 2)
    return {
        "frames_last": x[..., :frames],
        "channels_first": x[..., :frames].contiguous(),
        "slice": x[..., 3 : 3 + frames],
    }[layout]


@pytest.mark.parametrize("path", ["winograd", "packed", "product", "slices", "convolution"])
@given(
    spec=conv1d_specs(modes=("zeros",)),
    frames=st.integers(1, 60),
    batch=st.integers(1, 3),
    layout=st.sampled_from(["frames_last", "channels_first", "slice"]),
    seed=st.integers(0, 99),
)
def test_the_channels_last_convolution_equals_conv1d_on_every_path(path, spec, frames, batch, layout, seed):
    """conv_frames_last picks Winograd's tiled product (one thread), a packed product, a plain
    product (whole or in slices of outputs) or oneDNN's convolution by the layer's size and its
    outputs' count; each path (forced here by its thresholds) gives F.conv1d's sums for any
    batch, stride, dilation, groups and input layout, frames outermost."""
    from convt_audio.kinds import conv_torch, winograd
    from convt_audio.kinds.conv_torch import channels_last_weight, conv_frames_last

    if frames < spec.receptive:
        return
    generator = torch.Generator().manual_seed(seed)
    x = laid_out(torch.randn(batch, frames + 5, spec.in_channels, generator=generator), frames, layout)
    weight = torch.randn(spec.weight_shape, generator=generator)
    bias = torch.randn(spec.out_channels, generator=generator) if spec.bias else None
    never = dict(WINOGRAD_FRAMES=1 << 40)
    thresholds = {
        "winograd": dict(WINOGRAD_KERNEL=1, WINOGRAD_CHANNELS=1, WINOGRAD_FRAMES=1, WINOGRAD_MAX_WEIGHTS=1 << 40),
        "packed": dict(**never, PACKED_WEIGHTS=1, PACKED_FRAMES=1 << 20, PACKED_MAX_WEIGHTS=1 << 40, PACKED_AFTER=0),
        "product": dict(**never, PACKED_WEIGHTS=1 << 40, MATMUL_DILATED_FRAMES=1 << 20),
        # slices of 1 to ~40 outputs, the last one shorter where they do not divide the count
        "slices": dict(**never, PACKED_WEIGHTS=1 << 40, MATMUL_DILATED_FRAMES=1 << 20, TAPS_ELEMENTS=1 + 13 * seed),
        "convolution": dict(**never, PACKED_WEIGHTS=1 << 40, MATMUL_DILATED_FRAMES=0),
    }[path]
    # Winograd's path is taken on one thread only; its slices of one tile to all of them
    with one_thread(), module_values(conv_torch, **thresholds), module_values(winograd, SLICE_ELEMENTS=1 + 41 * seed):
        weight4 = channels_last_weight(weight)
        got = conv_frames_last(x, weight4, bias, spec.stride, spec.dilation, spec.groups)
    if path == "packed" and spec.groups == 1:  # packed once, by this PyTorch build
        assert conv_torch.derived(weight4, "packed", None) is not None
    if path == "winograd":  # transformed once where it applies, never elsewhere
        applies = spec.groups == 1 and spec.stride == 1
        assert (conv_torch.derived(weight4, "winograd", lambda w4: None) is not None) == applies
    want = F.conv1d(x, weight, bias, spec.stride, 0, spec.dilation, spec.groups)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@given(
    channels=st.integers(1, 40),
    kernel=st.integers(1, 9),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 4),
    frames=st.integers(1, 80),
    batch=st.integers(1, 3),
    layout=st.sampled_from(["frames_last", "channels_first", "slice"]),
    bias=st.booleans(),
    elements=st.sampled_from([1, 7, 50, 1 << 19]),
)
def test_one_output_channel_sums_its_taps_diagonals_as_conv1d(
    channels, kernel, stride, dilation, frames, batch, layout, bias, elements
):
    """A layer with one output channel (a vocoder's last) is each tap's sum over the channels,
    then diagonals of those summed (conv_torch.tap_sums): F.conv1d's sums for any stride,
    dilation, batch and input layout, whole or in slices of outputs of every size."""
    from convt_audio.kinds import conv_torch
    from convt_audio.kinds.conv_torch import channels_last_weight, conv_frames_last

    span = dilation * (kernel - 1) + 1
    if frames < span:
        return
    generator = torch.Generator().manual_seed(frames * 131 + channels)
    x = laid_out(torch.randn(batch, frames + 5, channels, generator=generator), frames, layout)
    weight = torch.randn(1, channels, kernel, generator=generator)
    b = torch.randn(1, generator=generator) if bias else None
    with module_values(conv_torch, TAPS_ELEMENTS=elements, WINOGRAD_FRAMES=1 << 40, PACKED_WEIGHTS=1 << 40):
        got = conv_frames_last(x, channels_last_weight(weight), b, stride, dilation, 1)
    want = F.conv1d(x, weight, b, stride, 0, dilation)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["snake", "snake_beta"])
@pytest.mark.parametrize("logscale", [False, True])
def test_snakes_written_in_place_give_the_formula_and_leave_the_input(kind, logscale):
    """The snakes compute step over step in one tensor (no temporaries): the same operations as
    the formula, so the same float32 bits, in the input's layout, the input untouched."""
    from convt_audio.kinds.activations import SnakeBetaSpec

    generator = torch.Generator().manual_seed(1)
    spec = (SnakeSpec if kind == "snake" else SnakeBetaSpec)(5, logscale=logscale)
    params = {name: 0.3 * torch.randn(shape, generator=generator) + 1 for name, shape in spec.tensor_shapes().items()}
    alpha = params["alpha"].exp() if logscale else params["alpha"]
    x = torch.randn(2, 40, 5, generator=generator).transpose(1, 2)  # frames outermost, as between convolutions
    before = x.clone()
    if kind == "snake":
        want = x + torch.sin(alpha * x) ** 2 / (alpha + 1e-9)
    else:
        beta = params["beta"].exp() if logscale else params["beta"]
        want = x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha) ** 2
    got = spec.forward(x, params)
    into = torch.empty(2, 5, 40)
    spec.forward_into(x, params, into)
    assert torch.equal(got, want) and torch.equal(into, want)
    assert got.stride() == x.stride() and torch.equal(x, before)


@pytest.mark.parametrize("m", [2, 3, 4])
@given(seed=st.integers(0, 999))
def test_winograd_transforms_give_the_correlation_exactly(m, seed):
    """F(m, m) in exact rationals: ``AT·[(G·g) ⊙ (BT·d)]`` is ``y_i = Σ_k g_k d_{i+k}`` for any
    taps and inputs; the float convolution's rounding is the only difference there is."""
    from fractions import Fraction

    from convt_audio.kinds.winograd import transforms

    rng = np.random.default_rng(seed)
    taps = [Fraction(int(v), int(q)) for v, q in zip(rng.integers(-50, 50, m), rng.integers(1, 9, m))]
    inputs = [Fraction(int(v)) for v in rng.integers(-50, 50, 2 * m - 1)]
    at, g, bt = transforms(m)
    left = [sum(row[k] * taps[k] for k in range(m)) for row in g]
    right = [sum(row[u] * inputs[u] for u in range(2 * m - 1)) for row in bt]
    got = [sum(row[a] * left[a] * right[a] for a in range(2 * m - 1)) for row in at]
    assert got == [sum(taps[k] * inputs[i + k] for k in range(m)) for i in range(m)]


def test_a_layer_is_packed_only_after_many_few_output_calls():
    """Packing pays over a live stream's many small pushes, not over a file's few small blocks:
    a layer's packed copy is made at its ``PACKED_AFTER + 1``-th few-output call (all streams
    together), and every call before and after gives F.conv1d's sums."""
    from convt_audio.kinds import conv_torch
    from convt_audio.kinds.conv_torch import channels_last_weight, conv_frames_last

    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(64, 96, 5, generator=generator) / math.sqrt(96 * 5)
    x = torch.randn(1, 96, 20, generator=generator)
    want = F.conv1d(x, weight)
    weight4 = channels_last_weight(weight)
    packed = []
    with module_values(conv_torch, PACKED_WEIGHTS=1):  # this small layer counts as large
        for _ in range(conv_torch.PACKED_AFTER + 2):
            torch.testing.assert_close(conv_frames_last(x, weight4, None, 1, 1, 1), want, rtol=1e-5, atol=1e-5)
            packed.append("packed" in conv_torch._DERIVED[id(weight4)][1])
    assert packed == [False] * conv_torch.PACKED_AFTER + [True, True]
