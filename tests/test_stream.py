"""The central property: streaming == whole-signal, for random stacks and chunk schedules."""

import pytest
import torch
from helpers import one_thread, slice_elements
from hypothesis import given
from hypothesis import strategies as st

from convt_audio.core.errors import InputTooShortError
from convt_audio.kinds import ACTIVATIONS, PADDING_MODES, ActivationSpec, Conv1dSpec, ConvTranspose1dSpec, SnakeSpec
from convt_audio.kinds.conv_torch import transposed_weight
from convt_audio.model.stack import Stack, StreamingStack, leading_circular_frames, run_chunked

ACTIVATION_CHOICES = [*ACTIVATIONS, "snake"]  # every activation of the table, and the snake


@st.composite
def stacks(draw, max_convs=4, modes=PADDING_MODES):
    channels = draw(st.integers(1, 4))
    specs = []
    for _ in range(draw(st.integers(1, max_convs))):
        index = len(specs)
        divisors = [g for g in (1, 2, 3, 4) if channels % g == 0]
        groups = draw(st.sampled_from(divisors))
        out_channels = groups * draw(st.integers(1, 2))
        kernel = draw(st.integers(1, 7))
        stride = draw(st.integers(1, 4))
        dilation = draw(st.integers(1, 3))
        common = dict(
            in_channels=channels,
            out_channels=out_channels,
            kernel_size=kernel,
            stride=stride,
            padding=draw(st.integers(0, 6)),
            groups=groups,
            bias=draw(st.booleans()),
            dilation=dilation,
            padding_mode=draw(st.sampled_from(modes)),
            index=index,
        )
        if draw(st.integers(0, 3)):  # mostly transposed
            op = draw(st.integers(0, max(stride, dilation) - 1))
            specs.append(ConvTranspose1dSpec(**common, output_padding=op))
        else:
            common["stride"] = min(stride, 2)
            specs.append(Conv1dSpec(**common))
        channels = out_channels
        if draw(st.booleans()):
            kind = draw(st.sampled_from(ACTIVATION_CHOICES))
            specs.append(
                SnakeSpec(channels, index=len(specs)) if kind == "snake" else ActivationSpec(kind, index=len(specs))
            )
    return specs


def _seeded(specs, seed):
    stack = Stack.initialised(specs, seed=seed)
    for spec, params in zip(stack.specs, stack.params):
        if isinstance(spec, SnakeSpec):  # vary alpha so snake is not the identity-ish default
            params["alpha"] = torch.rand(params["alpha"].shape, generator=torch.Generator().manual_seed(seed)) + 0.2
    return stack


chunk_schedules = st.one_of(
    st.just([1]),
    st.just([7]),
    st.just([4096]),
    st.lists(st.integers(1, 13), min_size=1, max_size=6),
    st.lists(st.sampled_from([1, 2, 3, 5, 64, 100]), min_size=2, max_size=5),
)


@given(
    specs=stacks(),
    extra=st.integers(0, 40),
    chunks=chunk_schedules,
    seed=st.integers(0, 999),
    kernel=st.sampled_from(["transposed", "polyphase", "auto"]),
    elements=st.one_of(st.none(), st.integers(1, 40)),
)
def test_streaming_equals_whole_signal(specs, extra, chunks, seed, kernel, elements):
    """Whatever the chunks; ``elements`` forces ``SLICE_ELEMENTS`` small, so that chunks a layer
    grows past it go on through the later layers in slices of frames, the last one shorter."""
    stack = _seeded(specs, seed).to(dtype=torch.float64)
    frames = stack.min_input_frames() + extra
    if frames > 3000:
        return
    x = torch.randn(2, stack.in_channels, frames, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    whole = stack.forward(x)
    with slice_elements(elements):
        streamed = run_chunked(stack, x, chunks, kernel=kernel)
    assert streamed.shape == whole.shape
    assert whole.shape[-1] == stack.output_frames(frames)
    torch.testing.assert_close(streamed, whole, rtol=1e-9, atol=1e-9)


@given(
    specs=stacks(),
    chunks=chunk_schedules,
    seed=st.integers(0, 999),
    kernel=st.sampled_from(["transposed", "polyphase", "auto"]),
)
def test_weights_stored_for_streams_give_what_the_weights_as_loaded_give(specs, chunks, seed, kernel):
    """An engine that only streams keeps each weight in the form its streams take
    (``store_for_streams``; in float32 on the CPU a transposed convolution that streams as
    polyphase keeps that form alone). The original is read back exactly, and the stored stack's
    streams and whole-signal forward give the same numbers as the stack as loaded."""
    stack = _seeded(specs, seed)
    stored = Stack(stack.specs, [dict(params) for params in stack.params])
    for leaf, params in zip(stored.leaves, stored.params):
        leaf.store_for_streams(params, kernel)
    for leaf, loaded, kept in zip(stack.leaves, stack.params, stored.params):
        transposed = isinstance(leaf, ConvTranspose1dSpec)
        if transposed and leaf.streaming_kernel(kernel) == "polyphase":
            assert "weight" not in kept
            assert torch.equal(transposed_weight(kept["polyphase"], leaf), loaded["weight"])
        else:
            assert kept.keys() == loaded.keys()
    frames = stack.min_input_frames() + 20
    x = torch.randn(2, stack.in_channels, frames, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(stored.forward(x), stack.forward(x))
    assert torch.equal(run_chunked(stored, x, chunks, kernel=kernel), run_chunked(stack, x, chunks, kernel=kernel))


@given(specs=stacks(max_convs=2), chunks=chunk_schedules, seed=st.integers(0, 999))
def test_streaming_at_the_shortest_input(specs, chunks, seed):
    stack = _seeded(specs, seed).to(dtype=torch.float64)
    frames = stack.min_input_frames()
    x = torch.randn(1, stack.in_channels, frames, dtype=torch.float64)
    torch.testing.assert_close(run_chunked(stack, x, chunks), stack.forward(x), rtol=1e-9, atol=1e-9)


@given(
    mode=st.sampled_from(PADDING_MODES),
    stride=st.integers(1, 4),
    kernel=st.integers(1, 6),
    padding=st.integers(0, 6),
    chunks=chunk_schedules,
)
def test_single_output_frame(mode, stride, kernel, padding, chunks):
    """Inputs that give L_out = 1 exactly."""
    for frames in range(1, 12):
        spec = ConvTranspose1dSpec(1, 2, kernel_size=kernel, stride=stride, padding=padding, padding_mode=mode)
        if spec.output_frames(frames) == 1:
            stack = Stack.initialised([spec]).to(dtype=torch.float64)
            x = torch.randn(1, 1, frames, dtype=torch.float64)
            y = run_chunked(stack, x, chunks)
            assert y.shape[-1] == 1
            torch.testing.assert_close(y, stack.forward(x), rtol=1e-9, atol=1e-9)


@given(specs=stacks(max_convs=3), chunks=chunk_schedules, seed=st.integers(0, 99), winograd=st.booleans())
def test_float32_within_the_contract_tolerance(specs, chunks, seed, winograd):
    """``winograd``: streamed on one thread with every stride-1 ungrouped convolution (the
    transposed ones' polyphase form too) on Winograd's tiled product, whatever its size."""
    stack = _seeded(specs, seed)
    frames = stack.min_input_frames() + 50
    x = torch.randn(1, stack.in_channels, frames)
    whole = stack.forward(x)
    with one_thread(winograd_everywhere=winograd):
        streamed = run_chunked(stack, x, chunks)
    bound = 1e-5 * max(1.0, whole.abs().max().item())
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max().item() <= bound


@given(
    padding=st.integers(0, 6),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 3),
    frames=st.integers(1, 40),
    chunks=chunk_schedules,
    transposed=st.booleans(),
)
def test_circular_first_layer_with_tail_streams_in_bounded_memory(padding, kernel, stride, frames, chunks, transposed):
    cls = ConvTranspose1dSpec if transposed else Conv1dSpec
    spec = cls(1, 1, kernel_size=kernel, stride=stride, padding=padding, padding_mode="circular")
    stack = Stack.initialised([spec]).to(dtype=torch.float64)
    if stack.output_frames(frames) < 1:
        return
    x = torch.randn(1, 1, frames, dtype=torch.float64)
    need = leading_circular_frames(stack)
    tail = x[..., max(0, frames - need) :]
    streamer = StreamingStack(stack, tail=tail)
    assert streamer.buffering_layers == []
    sizes, pos, parts = chunks, 0, []
    i = 0
    while pos < frames:
        parts.append(streamer.push(x[..., pos : pos + sizes[i % len(sizes)]]))
        pos += sizes[i % len(sizes)]
        i += 1
    parts.append(streamer.flush())
    torch.testing.assert_close(torch.cat(parts, -1), stack.forward(x), rtol=1e-9, atol=1e-9)


def test_circular_without_tail_buffers_and_says_so():
    specs = [
        ConvTranspose1dSpec(1, 1, kernel_size=5, stride=2, padding_mode="circular"),
        ConvTranspose1dSpec(1, 1, kernel_size=5, stride=2, padding_mode="circular", index=1),
    ]
    stack = Stack.initialised(specs)
    x = torch.randn(1, 1, 30)
    streamer = StreamingStack(stack, tail=x[..., -leading_circular_frames(stack) :])
    assert streamer.buffering_layers == ["layers[1]"]
    assert StreamingStack(stack).buffering_layers == ["layers[0]", "layers[1]"]


def test_bounded_state_for_long_streams():
    """State does not grow with the stream: partial sums stay within a constant."""
    spec = ConvTranspose1dSpec(4, 2, kernel_size=16, stride=8, padding=4, padding_mode="reflect")
    conv = Conv1dSpec(2, 1, kernel_size=7, padding=3, padding_mode="replicate", index=1)
    stack = Stack.initialised([spec, conv])
    streamer = StreamingStack(stack)
    for _ in range(200):
        streamer.push(torch.randn(1, 4, 37))
    transposed, conv_layer = streamer.children
    assert transposed.state.partial.shape[-1] <= spec.receptive + spec.stride + spec.padding
    assert conv_layer.state.window.shape[-1] < conv.receptive + conv.stride
    assert transposed.extender.state.keep.shape[-1] <= spec.extension()[1] + 1


def test_a_stream_keeps_no_block_alive():
    """What a stream holds between pushes is its state, not the blocks that went through it: no
    tensor a module keeps shares memory with a block larger than the state (the empty tensor
    each module keeps as a template was a view of its first block, and kept all of it)."""
    from convt_audio.model.config import load_config

    config = load_config("hifigan-v1")
    stack = Stack.initialised(config.layers, seed=0)
    streamer = StreamingStack(stack)
    streamer.push(torch.randn(1, 80, 64))
    streamer.push(torch.randn(1, 80, 64))
    held = {}

    def walk(module):
        for value in (module._like, *vars(module.state).values()):
            for tensor in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(tensor, torch.Tensor):
                    storage = tensor.untyped_storage()
                    held[storage.data_ptr()] = storage.nbytes()
        for child in module.children:
            walk(child)

    walk(streamer)
    weights = sum(t.untyped_storage().nbytes() for p in stack.params for t in p.values())
    assert sum(held.values()) < 2e6 < weights  # HiFi-GAN's state is ~1 MB; one 64-frame block's activations ~20 MB


def test_streaming_too_short_input_is_an_error():
    stack = Stack.initialised([Conv1dSpec(1, 1, kernel_size=9)])
    streamer = StreamingStack(stack)
    streamer.push(torch.zeros(1, 1, 3))
    with pytest.raises(InputTooShortError, match="input too short"):
        streamer.flush()


def test_polyphase_and_transposed_kernels_agree_on_a_decoder_stack():
    specs = [
        Conv1dSpec(1, 16, 7, padding=3),
        ConvTranspose1dSpec(16, 8, 16, stride=8, padding=4, index=1),
        ActivationSpec("leaky_relu", negative_slope=0.1, index=2),
        ConvTranspose1dSpec(8, 4, 4, stride=2, padding=1, dilation=1, groups=2, index=3),
        Conv1dSpec(4, 1, 7, padding=3, index=4),
        ActivationSpec("tanh", index=5),
    ]
    stack = Stack.initialised(specs)
    x = torch.randn(1, 1, 500)
    whole = stack.forward(x)
    for kernel in ("transposed", "polyphase"):
        y = run_chunked(stack, x, [64, 3, 129], kernel=kernel)
        assert (y - whole).abs().max() <= 1e-5 * max(1.0, whole.abs().max().item())


def test_weights_derived_for_streams_go_with_their_stack():
    """Streams share the weights they rearrange (channels-last, polyphase, packed for few
    outputs), kept per weight tensor: they live as long as the stack's tensors, and a stack
    dropped takes them with it (a server loading model after model keeps no old weights)."""
    import gc
    import weakref

    from convt_audio.kinds import conv_torch
    from convt_audio.model.config import load_config

    gc.collect()  # stacks earlier tests dropped, still in garbage cycles
    before = len(conv_torch._DERIVED)
    stack = Stack.initialised(load_config("hifigan-v2").layers, seed=0)
    mel = torch.randn(1, 80, 12)
    with torch.inference_mode():
        first = run_chunked(stack, mel, 1)
        made = len(conv_torch._DERIVED) - before
        second = run_chunked(stack, mel, [2, 1])  # a second stream: the same derived weights
    assert made > 0 and len(conv_torch._DERIVED) - before == made
    torch.testing.assert_close(first, second, rtol=0, atol=1e-5)
    derived = [
        weakref.ref(value)
        for entry in conv_torch._DERIVED.values()
        for value in entry[1].values()
        if torch.is_tensor(value)
    ]
    del stack, first, second
    gc.collect()
    assert len(conv_torch._DERIVED) == before
    assert all(ref() is None for ref in derived)


def test_streams_opened_at_once_in_threads_share_the_derived_weights(monkeypatch):
    """Streams opened by several threads at once (a file's two halves, a server's sessions)
    rearrange each weight once between them, not once each."""
    import threading

    from convt_audio.kinds import conv_torch
    from convt_audio.model.config import load_config

    stack = Stack.initialised(load_config("hifigan-v2").layers, seed=0)
    made = []
    rearrange = conv_torch.polyphase_weight
    monkeypatch.setattr(conv_torch, "polyphase_weight", lambda *a: made.append(a) or rearrange(*a))
    start = threading.Barrier(4)
    streams = []

    def open_one():
        start.wait()
        streams.append(StreamingStack(stack))

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    polyphase = sum(leaf.type == "conv_transpose1d" and leaf.auto_kernel() == "polyphase" for leaf in stack.leaves)
    assert len(streams) == 4 and polyphase > 0 and len(made) == polyphase

    def convolutions(module):
        if isinstance(module, conv_torch.StreamingConv1d):
            yield module
        for child in getattr(module, "children", ()):
            yield from convolutions(child)

    weights = {tuple(layer.weight4.data_ptr() for layer in convolutions(stream)) for stream in streams}
    assert len(weights) == 1 and len(next(iter(weights))) > 0  # one channels-last copy, shared
