"""A stream's steady pushes replayed as one captured step (convt_audio.model.graphs): the same
frames as the stream itself, whatever the chunks, for random stacks and nested blocks; captured
once per push shape, positions carried across the replays, reset and flush exact. The ``fx``
backend replays the very trace a CUDA graph captures; the CUDA test runs the graphs themselves."""

import threading

import numpy as np
import pytest
import torch
from helpers import stream_chunks
from hypothesis import given, settings
from hypothesis import strategies as st
from test_blocks import _stack, nested_stacks
from test_stream import _seeded, stacks

import convt_audio
from convt_audio.api import Stream
from convt_audio.core.errors import UsageError
from convt_audio.model.config import load_config, parse_config
from convt_audio.model.engines import TorchEngine
from convt_audio.model.graphs import StepGraphs
from convt_audio.model.stack import Stack, StreamingStack

schedules = st.one_of(
    st.just([1]),
    st.just([3]),
    st.just([8]),
    st.lists(st.sampled_from([1, 2, 5]), min_size=2, max_size=4),
)


def _graphed_equals_plain(stack, x: torch.Tensor, sizes, backend: str = "fx") -> StepGraphs:
    """Streamed with captured steps and without: the same frames, bit for bit with the trace
    itself (float64 runs the same operations either way) and to 1e-12 through TorchScript
    (its buffers sit elsewhere, and a product's sums may round differently there), and the
    whole-signal output to 1e-9."""
    graphed = StepGraphs(StreamingStack(stack), backend)
    got = stream_chunks(graphed, x, sizes)
    plain = stream_chunks(StreamingStack(stack), x, sizes)
    if backend == "fx":
        np.testing.assert_array_equal(got, plain)
    else:
        np.testing.assert_allclose(got, plain, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(plain).max()))
    np.testing.assert_allclose(got, stack.forward(x).numpy(), rtol=1e-9, atol=1e-9)
    assert graphed.streamer.frames_in == x.shape[-1]
    return graphed


@settings(max_examples=40, deadline=None)
@given(specs=stacks(max_convs=3), seed=st.integers(0, 999), extra=st.integers(0, 60), sizes=schedules)
def test_replayed_steps_give_the_streams_frames(specs, seed, extra, sizes):
    stack = _seeded(specs, seed).to(dtype=torch.float64)
    frames = stack.min_input_frames() + extra
    x = torch.randn(2, stack.in_channels, frames, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    _graphed_equals_plain(stack, x, sizes)


@pytest.mark.parametrize("backend", ["fx", "script"])
@settings(max_examples=20, deadline=None)
@given(specs=nested_stacks(), seed=st.integers(0, 999), sizes=schedules)
def test_replayed_steps_through_nested_blocks(backend, specs, seed, sizes):
    """The trace as it is (what a CUDA graph holds) and handed to TorchScript (the CPU's)."""
    stack = _stack(specs, seed)
    frames = stack.min_input_frames() + 40
    x = torch.randn(2, stack.in_channels, frames, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    _graphed_equals_plain(stack, x, sizes, backend)


def test_a_vocoder_captures_once_per_push_shape_and_replays_across_reset():
    """MelGAN in float64: pushes of 4 frames capture one step, replayed for the rest; pushes of
    4 and 1 one step each; after reset a new signal replays the steps already captured, and
    every output equals the whole signal's."""
    stack = Stack.initialised(load_config("melgan").layers, seed=0).to(dtype=torch.float64)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((1, 80, 90)))
    graphed = _graphed_equals_plain(stack, x, [4])
    assert graphed.captured == 1
    assert len(graphed.steps) == 1
    graphed.reset()
    y = torch.from_numpy(rng.standard_normal((1, 80, 70)))
    np.testing.assert_allclose(stream_chunks(graphed, y, [4, 4, 1]), stack.forward(y).numpy(), rtol=1e-9, atol=1e-9)
    assert graphed.captured == 2  # the 1-frame push's step added; the 4-frame one replayed again
    assert graphed.streamer.frames_in == 70


def test_a_captured_step_writes_none_of_its_inputs():
    """A CUDA graph is warmed up on its inputs before capture: the trace must leave them as they
    were, so that running it twice on the same state gives the same frames."""
    stack = Stack.initialised(load_config("melgan").layers, seed=0).to(dtype=torch.float64)
    graphed = StepGraphs(StreamingStack(stack), "fx")
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 80, 40)))
    for i in range(0, 40, 4):
        graphed.push(x[..., i : i + 4])
    step = graphed.current
    assert step is not None and step.replays > 0
    inputs = [t.clone() for t in step.inputs]
    chunk = x[..., :4]
    first, second = step.trace(chunk, *step.inputs), step.trace(chunk, *step.inputs)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for before, after in zip(inputs, step.inputs):
        torch.testing.assert_close(before, after, rtol=0, atol=0)


@pytest.mark.parametrize("stage", ["alias_free", "pqmf"])
def test_stages_built_at_their_first_chunk_are_captured_with_their_state(stage):
    """BigVGAN's anti-aliased activation and parallel-wavegan's PQMF synthesis build their layers
    at the first chunk, after the step's walk could see them: their states are in every step."""
    if stage == "pqmf":
        stack = Stack.initialised(load_config("pwg-multiband-melgan").layers, seed=0).to(dtype=torch.float64)
    else:
        layers = [
            {"type": "conv1d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1},
            {"type": "alias_free", "activation": {"type": "snake", "channels": 3}},
            {"type": "conv_transpose1d", "in_channels": 3, "out_channels": 1, "kernel_size": 4, "stride": 2},
        ]
        stack = _seeded(parse_config({"layers": layers}).layers, 3).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((1, stack.in_channels, 60)))
    graphed = _graphed_equals_plain(stack, x, [2, 3])
    assert graphed.captured == 2


def test_an_lstm_is_captured_with_its_hidden_state():
    config = parse_config(
        {
            "layers": [
                {"type": "conv1d", "in_channels": 3, "out_channels": 6, "kernel_size": 3, "padding": 1},
                {"type": "lstm", "channels": 6, "num_layers": 2, "skip": True},
                {"type": "elu"},
                {"type": "conv_transpose1d", "in_channels": 6, "out_channels": 2, "kernel_size": 4, "stride": 2},
            ]
        }
    )
    stack = Stack.initialised(config.layers, seed=0).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(6).standard_normal((2, 3, 50)))
    with torch.no_grad():
        whole = stack.forward(x).numpy()
    graphed = StepGraphs(StreamingStack(stack), "fx")
    got = stream_chunks(graphed, x, [4])
    assert graphed.captured == 1
    np.testing.assert_array_equal(got, stream_chunks(StreamingStack(stack), x, [4]))
    np.testing.assert_allclose(got, whole, rtol=1e-9, atol=1e-9)


def test_a_push_that_reads_a_value_out_of_a_tensor_stays_eager(monkeypatch):
    """The tracer refuses a value read out of a tensor (here an istft head's envelope): the
    layers get back the state they had, that push and its kind run eagerly, and nothing is lost."""
    from convt_audio.model import graphs

    monkeypatch.setattr(graphs, "GRAPHABLE_NAMES", graphs.GRAPHABLE_NAMES | {"StreamingIstft"})
    stack = Stack.initialised(load_config("vocos-mel-24khz").layers, seed=0).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((1, stack.in_channels, 40)))
    graphed = StepGraphs(StreamingStack(stack), "fx")
    with pytest.warns(RuntimeWarning, match="graphs: pushes of 3 frames stay eager: "):
        got = stream_chunks(graphed, x, [3])
    assert graphed.captured == 0
    assert any("value out of a tracing tensor" in why for why in graphed.untraceable.values()), graphed.untraceable
    np.testing.assert_array_equal(got, stream_chunks(StreamingStack(stack), x, [3]))


def test_a_refused_trace_is_not_tried_again_by_the_models_other_streams(monkeypatch):
    """A push shape the tracer refuses is refused for every stream of the model (the same
    operations fail the same way): the next stream sharing its traces is eager at that key at
    once, with the same reason, and does not pay the trace (3-10 s for HiFi-GAN V1) again."""
    from convt_audio.model import graphs

    monkeypatch.setattr(graphs, "GRAPHABLE_NAMES", graphs.GRAPHABLE_NAMES | {"StreamingIstft"})
    traced = []
    trace = graphs.StepGraphs._trace
    monkeypatch.setattr(graphs.StepGraphs, "_trace", lambda self, *args: traced.append(1) or trace(self, *args))
    stack = Stack.initialised(load_config("vocos-mel-24khz").layers, seed=0).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((1, stack.in_channels, 40)))
    shared, reasons = {}, []
    for _stream in range(3):
        graphed = StepGraphs(StreamingStack(stack), "fx", traces=shared)
        with pytest.warns(RuntimeWarning, match="graphs: pushes of 3 frames stay eager: "):
            got = stream_chunks(graphed, x, [3])
        assert graphed.captured == 0 and graphed.traced == 0
        reasons.append(sorted(graphed.untraceable.values()))
        np.testing.assert_array_equal(got, stream_chunks(StreamingStack(stack), x, [3]))
    assert len(traced) == 1
    assert reasons[0] == reasons[1] == reasons[2] and "value out of a tracing tensor" in reasons[0][0], reasons


def test_a_capture_the_device_refuses_leaves_the_push_eager_with_the_reason(monkeypatch):
    """A CUDA graph capture that fails (an operation not permitted while capturing): the layers
    get back their state, the push runs eagerly, and the reason is kept."""
    from convt_audio.model import graphs

    def refuse(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(graphs._Step, "__init__", refuse)
    stack = Stack.initialised(load_config("melgan").layers, seed=0).to(dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(8).standard_normal((1, 80, 40)))
    graphed = StepGraphs(StreamingStack(stack), "fx")
    with pytest.warns(
        RuntimeWarning,
        match="graphs: pushes of 4 frames stay eager: RuntimeError: operation not permitted when stream is capturing$",
    ):
        got = stream_chunks(graphed, x, [4])
    assert graphed.captured == 0
    assert list(graphed.untraceable.values()) == ["RuntimeError: operation not permitted when stream is capturing"]
    np.testing.assert_array_equal(got, stream_chunks(StreamingStack(stack), x, [4]))


@pytest.fixture(scope="module")
def hifigan_weights(random_checkpoint):
    return random_checkpoint("hifigan-v1")


def test_hifigan_v1_replays_its_live_pushes_exactly(hifigan_weights):
    """The API's stream with captured steps (the trace a CUDA graph holds): pushes of 1 mel frame
    give ``model(x)`` to float rounding (irregular schedules: the tests above)."""
    model = convt_audio.load("hifigan-v1", hifigan_weights, device="cpu", threads=1)
    mel = (np.random.default_rng(3).standard_normal((80, 60)) - 5).astype(np.float32)
    want = model(mel)
    stream = Stream(model, "fx")
    got = stream_chunks(stream, mel, [1])
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()
    assert stream._stream.streamer.captured == 1


def test_hifigan_v1_on_the_cpu_replays_torchscript_steps_shared_by_its_streams(hifigan_weights):
    """``model.stream(graphs=True)`` on the CPU: pushes of 1 and 8 mel frames give ``model(x)``
    to float rounding (irregular schedules: the property tests); the large layers' few-output
    products take oneDNN's packed weights, packed before the trace (a trace that packed would
    pack again at every replay); a second stream of the model replays the first one's trace,
    tracing nothing."""
    model = convt_audio.load("hifigan-v1", hifigan_weights, device="cpu", threads=1)
    mel = (np.random.default_rng(3).standard_normal((80, 70)) - 5).astype(np.float32)
    want = model(mel)
    for sizes in ([1], [8]):
        stream = model.stream(graphs=True)
        got = stream_chunks(stream, mel, sizes)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), sizes
        graphed = stream._stream.streamer
        assert graphed.captured >= 1 and not graphed.untraceable, sizes
    again = model.stream(graphs=True)
    got = stream_chunks(again, mel, [1])
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()
    assert (again._stream.streamer.captured, again._stream.streamer.traced) == (1, 0)
    step = next(iter(again._stream.streamer.steps.values()))
    graph = str(step.trace.graph)
    assert "_reorder_linear_weight" not in graph
    assert "prim::CallFunction" in graph  # the packed products (256 channels, kernels 7 and 11)


def test_streams_share_traces_only_with_streams_of_their_backend():
    """An engine's streams replaying the trace as it is and through TorchScript each trace their
    own; a second stream of either backend takes its twin's (MelGAN, float64)."""
    stack = Stack.initialised(load_config("melgan").layers, seed=0).to(dtype=torch.float64)
    engine = TorchEngine(stack)
    x = np.random.default_rng(9).standard_normal((1, 80, 24))
    traced = {}
    for backend in ("fx", "script", "fx", "script"):
        stream = engine.open_stream(1)
        stream.capture_steps(backend)
        for i in range(0, 24, 4):
            stream.push(x[..., i : i + 4])
        graphed = stream.streamer
        assert graphed.captured == 1
        traced[backend] = traced.get(backend, []) + [graphed.traced]
    assert traced == {"fx": [1, 0], "script": [1, 0]}
    assert sorted(engine.traces) == ["fx", "script"]


def test_streams_on_threads_of_their_own_trace_and_replay_at_once():
    """A server's sessions, each on a thread of its own, on one model: four streams trace and
    replay at the same time, pushes of 2 and 4 frames, each giving its own input's frames (to
    1e-12 of the same stream without steps, MelGAN in float64), every push past the warm-up
    replayed (make_fx traces one at a time: two at once failed and left the pushes eager), and
    each push shape traced once, by whichever thread came first."""
    stack = Stack.initialised(load_config("melgan").layers, seed=0).to(dtype=torch.float64)
    engine = TorchEngine(stack)
    inputs = [np.random.default_rng(seed).standard_normal((1, 80, 30)) for seed in range(4)]
    got, steps, failures = {}, {}, []

    def session(index: int) -> None:
        try:
            size = 2 + 2 * (index % 2)
            stream = engine.open_stream(1)
            stream.capture_steps("script")
            x = inputs[index]
            parts = [stream.push(x[..., i : i + size]) for i in range(0, x.shape[-1], size)]
            got[index] = np.concatenate([*parts, stream.flush()], axis=-1)
            graphed = stream.streamer
            steps[index] = (graphed.captured, graphed.traced, dict(graphed.untraceable))
        except Exception as error:  # noqa: BLE001 - reported below, with the session's index
            failures.append((index, error))

    threads = [threading.Thread(target=session, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    for index, x in enumerate(inputs):
        plain = stream_chunks(StreamingStack(stack), torch.from_numpy(x), [2 + 2 * (index % 2)])
        np.testing.assert_allclose(got[index], plain, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(plain).max()))
    assert sorted(key[0] for key in engine.traces["script"]) == [(1, 80, 2), (1, 80, 4)]
    # a 4-frame stream's last push (2 frames) may replay the 2-frame trace too
    assert all(captured >= 1 and not untraceable for captured, _, untraceable in steps.values()), steps
    assert sum(traced for _, traced, _ in steps.values()) == 2  # one trace a push shape, not one a stream


def test_graphs_are_refused_in_words_where_they_cannot_run(hifigan_weights):
    model = convt_audio.load("hifigan-v1", hifigan_weights, device="cpu", threads=1)
    with pytest.raises(UsageError, match="graphs: CUDA graphs need a CUDA device; this model runs on cpu"):
        model.engine.open_stream(1).capture_steps("cuda")
    stack = Stack.initialised(load_config("encodec-24khz").layers, seed=0)
    stream = TorchEngine(stack).open_stream(1)
    with pytest.raises(
        UsageError,
        match=r"graphs: layers\[0\] \(codebooks\) cannot be replayed from a captured step; stream without graphs",
    ):
        stream.capture_steps("fx")
    from convt_audio.api import _graphed

    resampler = convt_audio.load("sinc-x3")
    with pytest.raises(UsageError, match="graphs: the numpy-resampler engine streams without captured steps"):
        _graphed(resampler.engine.open_stream(1), "fx", resampler.engine)
    plain = Stream(model, "fx")
    plain.push(np.zeros((80, 4), dtype=np.float32))
    with pytest.raises(UsageError, match="graphs: choose them before the stream's first push"):
        plain._stream.capture_steps("fx")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_give_the_cpu_streams_frames(hifigan_weights):
    """On the device: ``model.stream(graphs=True)`` captures each steady push shape as a CUDA
    graph and replays it; the frames equal ``model(x)`` on the CPU (float32, 1e-5 of the peak),
    and each push hands out the frames the CPU's stream does at that push (none held back to
    overlap their copy, as a file's blocks are)."""
    gpu = convt_audio.load("hifigan-v1", hifigan_weights, device="cuda")
    cpu = convt_audio.load("hifigan-v1", hifigan_weights, device="cpu", threads=1)
    mel = (np.random.default_rng(4).standard_normal((80, 150)) - 5).astype(np.float32)
    want = cpu(mel)
    for sizes in ([1], [8], [3, 3, 5]):
        stream = gpu.stream(graphs=True)
        lengths, host = [], []
        got = stream_chunks(stream, mel, sizes, lengths)
        stream_chunks(cpu.stream(), mel, sizes, host)
        assert lengths == host, sizes
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max()), sizes
        assert stream._stream.streamer.captured >= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_come_back_on_their_device(hifigan_weights):
    """As a torch module does: a CUDA tensor in gives a CUDA tensor out (model(x), a stream's
    pushes, resample()), equal to the CPU's output; a CPU tensor stays on the CPU."""
    gpu = convt_audio.load("hifigan-v1", hifigan_weights, device="cuda")
    cpu = convt_audio.load("hifigan-v1", hifigan_weights, device="cpu", threads=1)
    mel = (np.random.default_rng(5).standard_normal((80, 40)) - 5).astype(np.float32)
    x = torch.from_numpy(mel).cuda()
    whole = gpu(x)
    assert whole.device == x.device
    np.testing.assert_allclose(whole.cpu().numpy(), cpu(mel), atol=1e-5 * max(1.0, float(whole.abs().max())))
    stream = gpu.stream()
    parts = [stream.push(x[:, i : i + 8]) for i in range(0, 40, 8)] + [stream.flush()]
    assert {part.device for part in parts} == {x.device}
    torch.testing.assert_close(torch.cat(parts, -1), whole, rtol=0, atol=1e-5 * max(1.0, float(whole.abs().max())))
    assert gpu(x.cpu()).device.type == "cpu"
    assert convt_audio.resample(torch.ones(1000, device="cuda"), 16000, 48000).device == x.device
