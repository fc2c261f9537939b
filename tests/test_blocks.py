"""Residual and parallel blocks: exact streaming through any nesting, validation, the protocol."""

import pytest
import torch
import yaml
from helpers import slice_elements
from hypothesis import given
from hypothesis import strategies as st
from test_stream import chunk_schedules

from convt_audio.core.errors import ConfigError
from convt_audio.core.shapes import leaves
from convt_audio.kinds import (
    ACTIVATIONS,
    CONV1D_PADDING_MODES,
    PADDING_MODES,
    ActivationSpec,
    Conv1dSpec,
    ConvTranspose1dSpec,
    ParallelSpec,
    ResidualSpec,
    SnakeSpec,
)
from convt_audio.model.config import load_config, parse_config
from convt_audio.model.stack import Stack, StreamingStack, leading_circular_frames, run_chunked


def _pointwise(draw, channels):
    kind = draw(st.sampled_from([*ACTIVATIONS, "snake"]))
    return (
        SnakeSpec(channels)
        if kind == "snake"
        else ActivationSpec(kind, **({"negative_slope": 0.2} if kind == "leaky_relu" else {}))
    )


def _keeping(draw, channels, depth):
    """Layers that keep ``channels`` and the frame count (what a residual body may hold)."""
    specs = []
    kinds = ["conv1d", "convt", "act", "updown"] + (["residual", "parallel"] if depth else [])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds))
        mode = draw(st.sampled_from(PADDING_MODES))
        if kind == "conv1d":  # 2p = d(K − 1): same frames, look-ahead p
            dilation, half = draw(st.integers(1, 3)), draw(st.integers(0, 3))
            hidden = draw(st.sampled_from([channels, channels + 1]))
            specs.append(
                Conv1dSpec(
                    channels,
                    hidden,
                    2 * half + 1,
                    padding=half * dilation,
                    dilation=dilation,
                    padding_mode=draw(st.sampled_from(CONV1D_PADDING_MODES)),
                    bias=draw(st.booleans()),
                )
            )
            if hidden != channels:
                specs.append(Conv1dSpec(hidden, channels, 1))
        elif kind == "convt":  # stride 1: 2p = d(K − 1) + op, op < d
            dilation = draw(st.integers(1, 3))
            op = draw(st.integers(0, dilation - 1))
            kernel = draw(st.integers(1, 6))
            if (dilation * (kernel - 1) + op) % 2:  # make 2p even: drop op's odd step, or grow K
                op, kernel = (op - 1, kernel) if op else (op, kernel + 1)
            specs.append(
                ConvTranspose1dSpec(
                    channels,
                    channels,
                    kernel,
                    padding=(dilation * (kernel - 1) + op) // 2,
                    output_padding=op,
                    dilation=dilation,
                    padding_mode=mode,
                )
            )
        elif kind == "updown":  # ×s then ÷s: the rate is kept and the body lags by a fraction
            s = draw(st.integers(2, 3))
            specs.append(ConvTranspose1dSpec(channels, channels, s, stride=s, padding_mode=mode))
            specs.append(Conv1dSpec(channels, channels, s, stride=s))
        elif kind == "act":
            specs.append(_pointwise(draw, channels))
        elif kind == "residual":
            specs.append(ResidualSpec(tuple(_keeping(draw, channels, depth - 1))))
        else:
            branches = tuple(tuple(_keeping(draw, channels, depth - 1)) for _ in range(draw(st.integers(1, 3))))
            specs.append(ParallelSpec(branches, draw(st.sampled_from(["sum", "mean"]))))
    return specs


@st.composite
def nested_stacks(draw, depth=2):
    """A random decoder-like stack: rate-changing layers between blocks nested up to ``depth``."""
    channels = draw(st.integers(1, 3))
    specs = [
        Conv1dSpec(
            channels,
            channels,
            draw(st.integers(1, 3)),
            padding_mode=draw(st.sampled_from(CONV1D_PADDING_MODES)),
            padding=draw(st.integers(0, 1)),
        )
    ]
    for _ in range(draw(st.integers(1, 3))):
        choice = draw(st.sampled_from(["residual", "parallel", "up", "keep"]))
        if choice == "residual":
            specs.append(ResidualSpec(tuple(_keeping(draw, channels, depth - 1))))
        elif choice == "keep":
            specs.extend(_keeping(draw, channels, depth - 1))
        elif choice == "up":
            out = draw(st.integers(1, 3))
            s = draw(st.integers(1, 3))
            kernel = draw(st.integers(1, 2 * s + 1))
            specs.append(
                ConvTranspose1dSpec(
                    channels,
                    out,
                    kernel,
                    stride=s,
                    padding=draw(st.integers(0, 2)),
                    padding_mode=draw(st.sampled_from(PADDING_MODES)),
                )
            )
            channels = out
        else:  # branches that differ in look-ahead and padding, the same shape out
            out, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            branches = []
            for _ in range(draw(st.integers(2, 3))):
                branch = list(_keeping(draw, channels, depth - 1)) if draw(st.booleans()) else []
                branch.append(
                    ConvTranspose1dSpec(
                        channels,
                        out,
                        2 * s,
                        stride=s,
                        padding=s // 2,
                        padding_mode=draw(st.sampled_from(PADDING_MODES)),
                    )
                )
                if draw(st.booleans()):
                    branch.extend(_keeping(draw, out, depth - 1))
                branches.append(tuple(branch))
            specs.append(ParallelSpec(tuple(branches), draw(st.sampled_from(["sum", "mean"]))))
            channels = out
    return specs


def _stack(specs, seed, dtype=torch.float64):
    stack = Stack.initialised(specs, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for leaf, params in zip(stack.leaves, stack.params):
        if isinstance(leaf, SnakeSpec):
            params["alpha"] = torch.rand(params["alpha"].shape, generator=generator) + 0.2
    return stack.to(dtype=dtype)


@given(
    specs=nested_stacks(),
    extra=st.integers(0, 30),
    chunks=chunk_schedules,
    seed=st.integers(0, 999),
    kernel=st.sampled_from(["transposed", "polyphase", "auto"]),
    use_tail=st.booleans(),
    elements=st.one_of(st.none(), st.integers(1, 40)),
)
def test_streaming_through_nested_blocks_equals_whole_signal(specs, extra, chunks, seed, kernel, use_tail, elements):
    """Whatever the chunks and nesting; ``elements`` forces the slice size small: chunks grown
    past it go on through the later layers (into blocks, branches, bodies) in slices of frames."""
    stack = _stack(specs, seed)
    frames = stack.min_input_frames() + extra
    x = torch.randn(2, stack.in_channels, frames, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    whole = stack.forward(x)
    tail = x[..., max(0, frames - leading_circular_frames(stack)) :] if use_tail else None
    with slice_elements(elements):
        streamed = run_chunked(stack, x, chunks, kernel=kernel, tail=tail)
    assert streamed.shape == whole.shape == (2, stack.out_channels, stack.output_frames(frames))
    torch.testing.assert_close(streamed, whole, rtol=1e-9, atol=1e-9)


@given(specs=nested_stacks(depth=1), chunks=chunk_schedules, seed=st.integers(0, 99))
def test_float32_blocks_within_the_contract_tolerance(specs, chunks, seed):
    stack = _stack(specs, seed, torch.float32)
    x = torch.randn(1, stack.in_channels, stack.min_input_frames() + 40)
    whole = stack.forward(x)
    streamed = run_chunked(stack, x, chunks)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max().item() <= 1e-5 * max(1.0, whole.abs().max().item())


def test_blocks_compute_what_they_say():
    """Whole-signal forward of blocks against the formulas written out with torch.nn modules."""
    torch.manual_seed(0)
    a = torch.nn.Conv1d(4, 4, 3, padding=1)
    b = torch.nn.Conv1d(4, 4, 5, padding=2, dilation=1)
    c = torch.nn.ConvTranspose1d(4, 4, 3, padding=1)
    specs = [
        ResidualSpec((ActivationSpec("leaky_relu", negative_slope=0.1), Conv1dSpec(4, 4, 3, padding=1))),
        ParallelSpec(((Conv1dSpec(4, 4, 5, padding=2),), (ConvTranspose1dSpec(4, 4, 3, padding=1),)), "mean"),
    ]
    params = [
        {},
        {"weight": a.weight.detach(), "bias": a.bias.detach()},
        {"weight": b.weight.detach(), "bias": b.bias.detach()},
        {"weight": c.weight.detach(), "bias": c.bias.detach()},
    ]
    stack = Stack(specs, params)
    x = torch.randn(1, 4, 50)
    with torch.no_grad():
        h = x + a(torch.nn.functional.leaky_relu(x, 0.1))
        expected = (b(h) + c(h)) / 2
    torch.testing.assert_close(stack.forward(x), expected)
    torch.testing.assert_close(run_chunked(stack, x, [1, 4, 9]), expected)


def test_state_is_bounded_by_the_lag_not_the_length():
    body = (Conv1dSpec(2, 2, 11, padding=25, dilation=5, padding_mode="reflect"),)
    specs = [
        ResidualSpec(body),
        ParallelSpec(((Conv1dSpec(2, 2, 1),), (Conv1dSpec(2, 2, 7, padding=3, padding_mode="replicate"),))),
    ]
    streamer = StreamingStack(Stack.initialised(specs))
    residual, parallel = streamer.children
    for _ in range(300):
        streamer.push(torch.randn(1, 2, 37))
        assert residual.state.held.shape[-1] <= 25  # the body's look-ahead
        assert max(y.shape[-1] for y in parallel.state.surplus.values()) <= 3


def test_protocol_refuses_push_after_flush_and_reset_starts_over():
    stack = Stack.initialised([ResidualSpec((Conv1dSpec(1, 1, 3, padding=1),))])
    streamer = StreamingStack(stack)
    x = torch.randn(1, 1, 20)
    first = torch.cat([streamer.push(x[..., :7]), streamer.push(x[..., 7:]), streamer.flush()], -1)
    with pytest.raises(RuntimeError, match="push after flush"):
        streamer.push(x)
    with pytest.raises(RuntimeError, match="flushed twice"):
        streamer.flush()
    streamer.reset()
    again = torch.cat([streamer.push(x), streamer.flush()], -1)
    torch.testing.assert_close(first, again)
    torch.testing.assert_close(first, stack.forward(x))


def test_a_streams_end_runs_each_convolution_once(monkeypatch):
    """At flush the frames still in flight reach each layer with its end: a convolution takes
    both in one call (reading its weights once), however deep in blocks it sits. Pushed then
    flushed instead, these 15 convolutions made 22 calls at the end."""
    from convt_audio.kinds.conv_torch import StreamingConv1d, StreamingConvTranspose1d

    def chain(kernel):
        return tuple(
            ResidualSpec(
                (
                    ActivationSpec("leaky_relu", negative_slope=0.1),
                    Conv1dSpec(3, 3, kernel, padding=dilation * (kernel // 2), dilation=dilation),
                    ActivationSpec("leaky_relu", negative_slope=0.1),
                    Conv1dSpec(3, 3, kernel, padding=kernel // 2),
                )
            )
            for dilation in (1, 3, 5)
        )

    specs = [
        Conv1dSpec(2, 3, 7, padding=3),
        ConvTranspose1dSpec(3, 3, 8, stride=4, padding=2),
        ParallelSpec((chain(3), chain(5)), "mean"),
        Conv1dSpec(3, 1, 7, padding=3),
    ]
    stack = Stack.initialised(specs)
    x = torch.randn(1, 2, 40, dtype=torch.float64)
    stack = stack.to(dtype=torch.float64)
    calls = []
    for cls, method in ((StreamingConv1d, "_convolve"), (StreamingConvTranspose1d, "_accumulate")):

        def counted(self, chunk, _call=getattr(cls, method)):
            if chunk.shape[-1]:
                calls.append(id(self))
            return _call(self, chunk)

        monkeypatch.setattr(cls, method, counted)
    streamer = StreamingStack(stack)
    parts = [streamer.push(x[..., i : i + 3]) for i in range(0, 40, 3)]
    calls.clear()
    parts.append(streamer.flush())
    torch.testing.assert_close(torch.cat(parts, -1), stack.forward(x), rtol=1e-9, atol=1e-9)
    convolutions = 2 + 2 * 3 * 2 + 1
    assert len(calls) == len(set(calls)) == convolutions


def test_circular_inside_a_leading_block_takes_the_tail():
    circular = {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": 1, "padding_mode": "circular"}
    config = parse_config(
        {
            "layers": [
                {"type": "tanh"},
                {
                    "type": "parallel",
                    "branches": [
                        [{**circular, "type": "conv1d", "kernel_size": 5, "padding": 2}],
                        [{**circular, "type": "conv_transpose1d"}],
                    ],
                },
                {"type": "residual", "layers": [{**circular, "type": "conv1d"}]},
            ]
        }
    )
    stack = Stack.initialised(config.layers).to(dtype=torch.float64)
    x = torch.randn(1, 1, 40, dtype=torch.float64)
    need = leading_circular_frames(stack)
    assert need == 2
    streamer = StreamingStack(stack, tail=x[..., -need:])
    assert streamer.buffering_layers == ["layers[2].layers[0]"]
    torch.testing.assert_close(run_chunked(stack, x, [3], tail=x[..., -need:]), stack.forward(x))


# ----------------------------------------------------------------------------- configs

CONV = {"type": "conv1d", "in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": 1}


def test_block_config_parses_with_index_path_names():
    config = parse_config(
        {
            "weights_prefix": "g.",
            "layers": [
                {**CONV},
                {
                    "type": "residual",
                    "layers": [
                        {"type": "leaky_relu", "negative_slope": 0.1},
                        {**CONV},
                        {**CONV, "key": "resblocks.0.convs2.0"},
                    ],
                },
                {
                    "type": "parallel",
                    "reduce": "mean",
                    "branches": [
                        [{**CONV, "kernel_size": 1, "padding": 0}],
                        [
                            {"type": "residual", "layers": [{**CONV, "dilation": 3, "padding": 3}]},
                            {"type": "snake", "channels": 4},
                        ],
                    ],
                },
            ],
        }
    )
    assert isinstance(config.layers[1], ResidualSpec) and isinstance(config.layers[2], ParallelSpec)
    assert config.layers[2].reduce == "mean"
    names = [n.get("weight") or n.get("alpha") for n in config.tensor_names if n]
    assert names == [
        "g.0.weight",
        "g.1.1.weight",
        "g.resblocks.0.convs2.0.weight",
        "g.2.0.0.weight",
        "g.2.1.0.0.weight",
        "g.2.1.1.alpha",
    ]
    paths = [leaf.where for leaf in config.leaves]
    assert paths[-2:] == ["layers[2].branches[1][0].layers[0]", "layers[2].branches[1][1]"]
    assert config.rate_factor() == 1


@pytest.mark.parametrize(
    "layers,message",
    [
        (
            [{"type": "residual", "layers": [{**CONV, "out_channels": 2}]}],
            r"layers\[0\]: a residual must keep its channels, but its layers turn 4 channels into 2",
        ),
        (
            [{"type": "residual", "layers": [{**CONV, "padding": 0}]}],
            r"layers\[0\]: a residual must keep its frames, but its layers turn \[4, 3\] into \[4, 1\]",
        ),
        (
            [{"type": "residual", "layers": [{**CONV, "stride": 2}]}],
            r"layers\[0\]: a residual must keep its frames, but its layers change the rate by ×1/2",
        ),
        (
            [{"type": "parallel", "branches": [[{**CONV}], [{**CONV, "padding": 2}]]}],
            r"layers\[0\].branches\[1\]: turns \[4, 1\] into \[4, 3\], but branches\[0\] gives \[4, 1\]",
        ),
        (
            [{"type": "parallel", "branches": [[{**CONV}], [{**CONV, "out_channels": 2}]]}],
            r"layers\[0\].branches\[1\]: gives 2 channels at ×1 the rate, but branches\[0\] gives 4 channels",
        ),
        (
            [{"type": "parallel", "branches": [[{**CONV}], []]}],
            r"layers\[0\].branches\[1\]: must be a non-empty list of layers",
        ),
        ([{"type": "parallel", "branches": []}], r"layers\[0\].branches: must be a non-empty list"),
        ([{"type": "residual", "layers": []}], r"layers\[0\].layers: must be a non-empty list of layers"),
        ([{"type": "residual"}], r"layers\[0\].layers: required for residual"),
        (
            [{"type": "parallel", "reduce": "max", "branches": [[{**CONV}]]}],
            r"layers\[0\].reduce: 'max' is not one of \['sum', 'mean'\]",
        ),
        ([{"type": "residual", "layers": [{**CONV}], "key": "x"}], r"layers\[0\].key: unknown key for residual"),
        (
            [{"type": "parallel", "branches": [[{**CONV}, {**CONV, "dilation": 0}]]}],
            r"layers\[0\].branches\[0\]\[1\].dilation: must be a positive integer, got 0",
        ),
        (
            [{**CONV}, {"type": "residual", "layers": [{**CONV, "in_channels": 3, "out_channels": 3}]}],
            r"layers\[1\].layers\[0\].in_channels: 3 does not match the 4 channels",
        ),
        (
            [{"type": "parallel", "branches": [[{**CONV}], [{**CONV, "key": "0.0.0"}]]}],
            r"layers\[0\].branches\[1\]\[0\].key: tensor name '0.0.0.weight' is also used by layers\[0\].branches\[0\]\[0\]",
        ),
    ],
)
def test_bad_blocks_are_named_by_path(layers, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"layers": layers})


def test_a_residual_that_keeps_length_only_for_some_lengths_is_refused():
    # ×2 then a stride-2 conv with kernel 3: 2L → L − 0 for even… keeps length only when no frame is lost
    body = [
        {"type": "conv_transpose1d", "in_channels": 1, "out_channels": 1, "kernel_size": 2, "stride": 2},
        {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 3, "stride": 2},
    ]
    with pytest.raises(ConfigError, match="a residual must keep its frames"):
        parse_config({"layers": [{"type": "residual", "layers": body}]})


def test_init_fills_every_convolution_inside_blocks(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from convt_audio.model.weights import load_stack

    path = tmp_path / "b.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "layers": [
                    {**CONV},
                    {"type": "residual", "layers": [{**CONV}]},
                    {"type": "parallel", "branches": [[{**CONV, "kernel_size": 1, "padding": 0}], [{**CONV}]]},
                ]
            }
        )
    )
    result = CliRunner().invoke(app, ["init", str(path), "-o", str(tmp_path / "b.safetensors")])
    assert result.exit_code == 0, result.output
    stack, unused = load_stack(load_config(path), tmp_path / "b.safetensors")
    assert unused == [] and len(stack.params) == len(list(leaves(stack.specs))) == 4
    for leaf, params in zip(stack.leaves, stack.params):  # PyTorch's bound 1/√(C_in·K)
        bound = 1 / (leaf.in_channels * leaf.kernel_size) ** 0.5
        assert 0.5 * bound < params["weight"].abs().max() <= bound
