"""Independent streams run as one batch (convt_audio.model.pool, convt_audio.core.batching): each
stream's output equals its own whole-signal output whatever the others push, when they start,
join, part or end — random stacks and nested blocks, irregular pushes; streams that line up do
share forwards; and the API's pool and map give what a stream and ``model(x)`` give."""

import threading

import numpy as np
import pytest
import torch
from helpers import one_thread
from hypothesis import given, settings
from hypothesis import strategies as st
from test_blocks import _stack, nested_stacks
from test_stream import _seeded, stacks

import convt_audio
from convt_audio.core.batching import batch_key
from convt_audio.core.errors import AudioError, InputTooShortError, UsageError
from convt_audio.kinds import PADDING_MODES
from convt_audio.model.config import load_config, parse_config
from convt_audio.model.engines import TorchEngine
from convt_audio.model.pool import SharedPool, StreamPool
from convt_audio.model.stack import Stack


def _drive(engine, inputs, seed: int, common: int):
    """Push every ``[rows, C, n]`` input through one pool on a random schedule: streams open at
    random steps; each step most push ``common`` frames, some another count, some nothing; each
    is flushed once all its frames are in. Returns the outputs and the pool."""
    rng = np.random.default_rng(seed)
    pool = StreamPool(engine)
    opens = sorted(int(s) for s in rng.integers(0, 6, len(inputs)))
    streams, pushed, parts = {}, [0] * len(inputs), [[] for _ in inputs]
    step = 0
    while len(streams) < len(inputs) or any(not s.ended for s in streams.values()):
        for i, when in enumerate(opens):
            if when == step and i not in streams:
                streams[i] = pool.open(inputs[i].shape[0])
        chunks = {}
        for i, stream in streams.items():
            if stream.ended:
                continue
            roll = rng.random()
            n = common if roll < 0.8 else int(rng.integers(0, 13)) if roll < 0.9 else None
            if n is not None:
                chunks[stream] = inputs[i][..., pushed[i] : pushed[i] + n]
                pushed[i] += chunks[stream].shape[-1]
        for stream, y in pool.push(chunks).items():
            parts[next(i for i, s in streams.items() if s is stream)].append(y)
        ending = {i: s for i, s in streams.items() if not s.ended and pushed[i] >= inputs[i].shape[-1]}
        if len(ending) == 1:  # alone through flush(), together through flush_many()
            ((i, stream),) = ending.items()
            parts[i].append(pool.flush(stream))
        elif ending:
            rests = pool.flush_many(ending.values())
            for i, stream in ending.items():
                assert not isinstance(rests[stream], BaseException), rests[stream]
                parts[i].append(rests[stream])
        step += 1
    return [np.concatenate(p, axis=-1) for p in parts], pool


def _check_pool(stack, seed: int, common: int, dtype=np.float64) -> StreamPool:
    """float64 to 1e-9; float32 within the contract's 1e-5 of the output's peak."""
    engine = TorchEngine(stack)
    rng = np.random.default_rng(seed)
    least = max(stack.min_input_frames(), 1)
    inputs = [
        rng.standard_normal((int(rng.integers(1, 3)), stack.in_channels, least + int(rng.integers(0, 60)))).astype(
            dtype
        )
        for _ in range(int(rng.integers(2, 6)))
    ]
    outputs, pool = _drive(engine, inputs, seed, common)
    for x, got in zip(inputs, outputs):
        whole = stack.forward(torch.from_numpy(x)).numpy()
        assert got.shape == whole.shape
        if dtype == np.float64:
            np.testing.assert_allclose(got, whole, rtol=1e-9, atol=1e-9)
        else:
            assert np.abs(got - whole).max() <= 1e-5 * max(1.0, np.abs(whole).max())
    assert not pool.streams
    return pool


@settings(max_examples=60, deadline=None)
@given(specs=stacks(max_convs=3, modes=PADDING_MODES), seed=st.integers(0, 999), common=st.sampled_from([1, 3, 8]))
def test_every_pooled_stream_equals_its_whole_signal(specs, seed, common):
    _check_pool(_seeded(specs, seed).to(dtype=torch.float64), seed, common)


@settings(max_examples=40, deadline=None)
@given(specs=nested_stacks(), seed=st.integers(0, 999), common=st.sampled_from([1, 4, 9]))
def test_pooled_streams_through_nested_blocks(specs, seed, common):
    _check_pool(_stack(specs, seed), seed, common)


@settings(max_examples=40, deadline=None)
@given(specs=stacks(max_convs=3), seed=st.integers(0, 999), common=st.sampled_from([1, 8]))
def test_float32_pools_on_one_thread_through_winograds_path(specs, seed, common):
    """A pool's batch of rows on one thread, every stride-1 ungrouped convolution on Winograd's
    tiled product (each row its own tiles, written into one output)."""
    with one_thread(winograd_everywhere=True):
        _check_pool(_seeded(specs, seed), seed, common, dtype=np.float32)


def _melgan(dtype=torch.float64):
    return Stack.initialised(load_config("melgan").layers, seed=0).to(dtype=dtype)


def test_streams_that_line_up_share_forwards_and_late_ones_join():
    stack = _melgan()
    engine = TorchEngine(stack)
    rng = np.random.default_rng(1)
    pool = StreamPool(engine)
    early = [rng.standard_normal((1, 80, 120)) for _ in range(2)]
    late = rng.standard_normal((1, 80, 90))
    a, b = pool.open(), pool.open()
    out = {a: [], b: []}
    for i in range(0, 40, 8):  # opened together: one batch from the first push
        for s, y in pool.push({a: early[0][..., i : i + 8], b: early[1][..., i : i + 8]}).items():
            out[s].append(y)
    assert pool.batch_sizes == {2: 5}
    c = pool.open()
    out[c] = []
    for i in range(40, 120, 8):  # c starts 40 frames behind, joins once its layers are past their start
        j = i - 40
        got = pool.push({a: early[0][..., i : i + 8], b: early[1][..., i : i + 8], c: late[..., j : j + 8]})
        for s, y in got.items():
            out[s].append(y)
    assert pool.batch_sizes[3] >= 5, pool.batch_sizes
    out[c].append(pool.push({c: late[..., 80:]})[c])  # alone: the others push nothing
    for s in (a, b, c):
        out[s].append(pool.flush(s))
    for x, s in ((early[0], a), (early[1], b), (late, c)):
        np.testing.assert_allclose(np.concatenate(out[s], -1), stack.forward(torch.from_numpy(x)).numpy(), atol=1e-10)


def test_streams_that_pushed_alike_end_in_one_flush_and_the_others_alone():
    """Files of one length ending together flush as one forward; a stream that joined later
    (other positions) or pushed differently flushes alone; each ends exactly as its own."""
    stack = _melgan()
    engine = TorchEngine(stack)
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((1 + (i == 2), 80, 72)) for i in range(4)]  # the third: two rows
    late = rng.standard_normal((1, 80, 56))
    pool = StreamPool(engine)
    streams = [pool.open(x.shape[0]) for x in xs]
    out = {s: [] for s in streams}
    joiner = None
    for i in range(0, 72, 8):
        chunks = {s: x[..., i : i + 8] for s, x in zip(streams, xs)}
        if i == 16:
            joiner = pool.open()
            out[joiner] = []
        if joiner is not None:
            chunks[joiner] = late[..., i - 16 : i - 8]
        for s, y in pool.push(chunks).items():
            out[s].append(y)
    assert pool.batch_sizes[5] >= 1, pool.batch_sizes  # the late stream had joined the batch
    rests = pool.flush_many([*streams, joiner])
    assert pool.flush_sizes == {4: 1}, pool.flush_sizes  # the four of one length, one flush
    for s, x in [*zip(streams, xs), (joiner, late)]:
        got = np.concatenate([*out[s], rests[s]], -1)
        np.testing.assert_allclose(got, stack.forward(torch.from_numpy(x)).numpy(), atol=1e-10)
    assert not pool.streams
    with pytest.raises(UsageError, match="flushed or closed already"):
        pool.flush_many([streams[0]])
    config = parse_config({"layers": [{"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 7}]})
    pool = StreamPool(TorchEngine(Stack.initialised(config.layers, seed=0).to(dtype=torch.float64)))
    short = [pool.open() for _ in range(2)]  # too short for the stack: each told
    pool.push({s: np.zeros((1, 1, 3)) for s in short})
    for rest in pool.flush_many(short).values():
        assert isinstance(rest, InputTooShortError) and "needs at least 7" in str(rest)
    assert not pool.streams


@pytest.mark.parametrize("name", ["vocos-mel-24khz", "encodec-24khz", "pwg-multiband-melgan"])
def test_published_decoders_pool_exactly(name):
    """An istft head (its envelope at the start differs), an LSTM (state batched on its second
    axis) and codes, a PQMF stage built at the first chunk: streams at different places, joined."""
    config = load_config(name)
    stack = Stack.initialised(config.layers, seed=1).to(dtype=torch.float64)
    engine = TorchEngine(stack)
    rng = np.random.default_rng(6)
    bins = getattr(stack.specs[0], "bins", None)
    inputs = [
        rng.integers(0, bins, (1, stack.in_channels, n)).astype(np.float64)
        if bins
        else rng.standard_normal((1, stack.in_channels, n))
        for n in (70, 52, 61)
    ]
    outputs, pool = _drive(engine, inputs, seed=6, common=1)
    assert max(pool.batch_sizes) >= 2, pool.batch_sizes
    for x, got in zip(inputs, outputs):
        with torch.inference_mode():
            whole = stack.forward(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, whole, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("padding", ["same", "center"])
def test_an_istft_joins_only_past_its_start(padding):
    """The overlap-added window's envelope differs over the first n_fft samples: a stream still
    there must not take the envelope of one further on."""
    config = parse_config({"layers": [{"type": "istft", "n_fft": 16, "hop_length": 4, "padding": padding}]})
    stack = Stack.initialised(config.layers, seed=2).to(dtype=torch.float64)
    stack.params[0]["window"] = torch.hann_window(16, dtype=torch.float64) + 0.1
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((1, 18, n)) for n in (30, 24, 27)]
    for seed in range(4):
        outputs, pool = _drive(TorchEngine(stack), inputs, seed=seed, common=1)
        for x, got in zip(inputs, outputs):
            np.testing.assert_allclose(got, stack.forward(torch.from_numpy(x)).numpy(), rtol=1e-9, atol=1e-9)


def test_a_circular_stack_pools_exactly_without_sharing():
    config = parse_config(
        {
            "layers": [
                {
                    "type": "conv1d",
                    "in_channels": 1,
                    "out_channels": 2,
                    "kernel_size": 5,
                    "padding": 2,
                    "padding_mode": "circular",
                },
                {"type": "conv_transpose1d", "in_channels": 2, "out_channels": 1, "kernel_size": 4, "stride": 2},
            ]
        }  # fmt: skip
    )
    stack = Stack.initialised(config.layers, seed=3).to(dtype=torch.float64)
    pool = _check_pool(stack, seed=5, common=4)
    assert set(pool.batch_sizes) == {1}  # the circular layer keeps each stream's own tail


def test_streams_at_their_start_share_only_with_streams_at_the_same_place():
    engine = TorchEngine(_melgan())
    pool = StreamPool(engine)
    a, b, c = pool.open(), pool.open(), pool.open()
    assert batch_key(a.tree) == batch_key(b.tree) is not None  # fresh: identical in every count
    x = np.zeros((1, 80, 1))
    pool.push({a: x})
    assert batch_key(a.tree) != batch_key(c.tree)  # one frame in, still at its start: counts matter


def test_a_pooled_stream_too_short_fails_at_its_flush_alone():
    config = parse_config(
        {
            "layers": [
                {"type": "conv1d", "in_channels": 1, "out_channels": 2, "kernel_size": 7},
                {"type": "conv_transpose1d", "in_channels": 2, "out_channels": 1, "kernel_size": 4, "stride": 2},
            ]
        }  # fmt: skip
    )
    engine = TorchEngine(Stack.initialised(config.layers, seed=0).to(dtype=torch.float64))
    pool = StreamPool(engine)
    a, b = pool.open(), pool.open()
    pool.push({a: np.zeros((1, 1, 3)), b: np.zeros((1, 1, 3))})
    assert pool.batch_sizes == {2: 1}
    with pytest.raises(InputTooShortError, match="needs at least 7"):
        pool.flush(a)
    first = pool.push({b: np.zeros((1, 1, 40))})[b]
    assert first.shape[-1] + pool.flush(b).shape[-1] == engine.output_frames(43)
    with pytest.raises(InputTooShortError, match="needs at least 7"):
        list(pool.map([np.zeros((1, 1, 9)), np.zeros((1, 1, 6))], slots=2, block=4))


def test_a_bad_code_is_named_by_its_own_streams_frame():
    config = load_config("encodec-24khz")
    stack = Stack.initialised(config.layers, seed=0)
    pool = StreamPool(TorchEngine(stack))
    rows = stack.in_channels
    a, b = pool.open(), pool.open()
    rng = np.random.default_rng(0)
    pool.push({a: rng.integers(0, 1024, (1, rows, 30)).astype(np.float32)})
    for _ in range(2):
        pool.push({s: rng.integers(0, 1024, (1, rows, 10)).astype(np.float32) for s in (a, b)})
    bad = rng.integers(0, 1024, (1, rows, 10)).astype(np.float32)
    bad[0, 3, 7] = 1024
    with pytest.raises(AudioError, match=r"codes row 3, frame 27\b"):
        pool.push({a: rng.integers(0, 1024, (1, rows, 10)).astype(np.float32), b: bad})
    c = pool.open()  # alone, after a stream that runs first: refused before either runs
    with pytest.raises(AudioError, match=r"codes row 3, frame 7\b"):
        pool.push({a: rng.integers(0, 1024, (1, rows, 10)).astype(np.float32), c: bad})
    assert a.frames_in == 50 and c.frames_in == 0  # nothing of a's was pushed and lost


def _threads(shared: SharedPool, inputs, blocks, bad=None):
    """Each input streamed by a thread of its own through ``shared`` in its own block sizes,
    all opened before any pushes; returns each thread's output (or the exception it raised)."""
    opened = threading.Barrier(len(inputs))
    results: list = [None] * len(inputs)

    def one(i: int) -> None:
        stream = shared.open(inputs[i].shape[0])
        opened.wait()
        try:
            parts, at = [], 0
            for n in blocks[i]:
                chunk = inputs[i][..., at : at + n]
                if bad is not None and i == bad[0] and at <= bad[1] < at + n:
                    chunk = chunk.copy()
                    chunk[0, 0, bad[1] - at] = 1 << 20  # not a code
                parts.append(stream.push(chunk))
                at += n
            parts.append(stream.flush())
            results[i] = np.concatenate(parts, axis=-1)
        except Exception as exc:  # noqa: BLE001 - the test reads it
            stream.stop()
            results[i] = exc

    workers = [threading.Thread(target=one, args=(i,)) for i in range(len(inputs))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), count=st.integers(2, 5))
def test_streams_pushed_from_threads_of_their_own_share_forwards_exactly(seed, count):
    """The command line's batch: every file's thread pushes its own stream; the pushes that wait
    together run as one forward, each output equal to its own whole signal."""
    stack = _melgan()
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal((int(rng.integers(1, 3)), 80, int(rng.integers(20, 90)))) for _ in range(count)]
    blocks = []
    for x in inputs:  # 16 frames first, then mostly 16, now and then another count, the last what is left
        sizes, at = [], 0
        while at < x.shape[-1]:
            n = 16 if not sizes or rng.random() < 0.8 else int(rng.integers(1, 20))
            sizes.append(min(n, x.shape[-1] - at))
            at += sizes[-1]
        blocks.append(sizes)
    shared = SharedPool(TorchEngine(stack), len(inputs), patience=30.0)  # a bound on the wait, never reached here
    outputs = _threads(shared, inputs, blocks)
    for x, got in zip(inputs, outputs):
        np.testing.assert_allclose(got, stack.forward(torch.from_numpy(x)).numpy(), rtol=1e-9, atol=1e-9)
    # opened together, their first pushes (16 frames each) all wait for one another: one forward
    assert shared.pool.batch_sizes[count] >= 1, shared.pool.batch_sizes
    assert not shared.pool.streams


def test_threads_whose_files_have_one_length_end_in_one_flush():
    """Files of one length, one per thread (the command line's batch of 5 s files): their
    pushes and their flushes each run as one forward, every output exact."""
    stack = _melgan()
    rng = np.random.default_rng(9)
    inputs = [rng.standard_normal((1, 80, 45)) for _ in range(3)]
    shared = SharedPool(TorchEngine(stack), len(inputs), patience=30.0)
    outputs = _threads(shared, inputs, [[16, 16, 13]] * 3)
    for x, got in zip(inputs, outputs):
        np.testing.assert_allclose(got, stack.forward(torch.from_numpy(x)).numpy(), rtol=1e-9, atol=1e-9)
    assert shared.pool.batch_sizes == {3: 3} and shared.pool.flush_sizes == {3: 1}


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_threads_that_come_go_and_drop_out_at_random_stay_exact(seed):
    """A short patience, so that every round gathers whoever is there: streams open late, push
    uneven sizes, some are dropped midway; no thread is left waiting, every finished one is exact."""
    stack = _melgan()
    rng = np.random.default_rng(seed)
    count = 6
    inputs = [rng.standard_normal((1, 80, int(rng.integers(30, 70)))) for _ in range(count)]
    plans = []
    for x in inputs:
        sizes, at = [], 0
        while at < x.shape[-1]:
            sizes.append(min(int(rng.choice([8, 8, 8, 5, 13])), x.shape[-1] - at))
            at += sizes[-1]
        plans.append((sizes, int(rng.integers(0, 3)), bool(rng.random() < 0.25)))  # sizes, late by, dropped
    plans[0] = (plans[0][0], 0, False)  # the first is on time and stays: the others' clock
    pushed = [threading.Event() for _ in range(3)]  # its first pushes done
    shared = SharedPool(TorchEngine(stack), count, patience=0.001)
    outputs: list = [None] * count

    def one(i: int) -> None:
        sizes, late, dropped = plans[i]
        if late:  # opens once the first stream has pushed `late` times
            pushed[late - 1].wait(timeout=60)
        stream = shared.open(1)
        parts, at = [], 0
        for k, n in enumerate(sizes):
            if dropped and k == len(sizes) // 2:
                stream.stop()
                outputs[i] = "dropped"
                return
            parts.append(stream.push(inputs[i][..., at : at + n]))
            at += n
            if i == 0 and k < len(pushed):
                pushed[k].set()
        for event in pushed if i == 0 else ():
            event.set()
        parts.append(stream.flush())
        outputs[i] = np.concatenate(parts, axis=-1)

    workers = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers), "a thread was left waiting"
    for i, (x, got) in enumerate(zip(inputs, outputs)):
        if plans[i][2]:
            assert got == "dropped"
        else:
            np.testing.assert_allclose(got, stack.forward(torch.from_numpy(x)).numpy(), rtol=1e-9, atol=1e-9)
    assert not shared.pool.streams and shared._open == 0


def test_a_refused_push_fails_its_own_thread_and_the_others_finish():
    config = load_config("encodec-24khz")
    stack = Stack.initialised(config.layers, seed=0)
    rows = stack.in_channels
    rng = np.random.default_rng(3)
    inputs = [rng.integers(0, 1024, (1, rows, 40)).astype(np.float32) for _ in range(3)]
    shared = SharedPool(TorchEngine(stack), len(inputs), patience=30.0)
    got = _threads(shared, inputs, [[10] * 4] * 3, bad=(1, 25))
    assert isinstance(got[1], AudioError) and "frame 25" in str(got[1])
    for i in (0, 2):  # the thread that failed left the pool: the others did not wait on it
        whole = stack.forward(torch.from_numpy(inputs[i])).detach().numpy()
        assert np.abs(got[i] - whole).max() <= 1e-5 * max(1.0, np.abs(whole).max())
    assert not shared.pool.streams


def _serve(sessions, arrays, step: int = 8, *beside) -> list:
    """Each session fed its array in pushes of ``step`` frames, then flushed, from a thread of
    its own, all at once (one after the other, each push would wait out the pool's patience for
    the others'), with the callables ``beside`` on threads of their own; each session's frames."""
    outs: list = [None] * len(sessions)

    def serve(k: int) -> None:
        x = arrays[k]
        parts = [sessions[k].push(x[..., i : i + step]) for i in range(0, x.shape[-1], step)]
        outs[k] = np.concatenate([*parts, sessions[k].flush()], -1)

    workers = [threading.Thread(target=serve, args=(k,)) for k in range(len(sessions))]
    workers += [threading.Thread(target=task) for task in beside]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outs


def test_two_threads_pushing_one_stream_are_refused_and_no_chunk_is_lost():
    """A second thread pushing a stream whose push still waits would have taken that chunk's
    place: it is refused in words, and the waiting chunk runs as pushed."""
    stack = _melgan()
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((1, 80, 40)), rng.standard_normal((1, 80, 40))
    shared = SharedPool(TorchEngine(stack), 2, patience=30.0)
    a, b = shared.open(), shared.open()
    out: dict = {}
    waiting = threading.Thread(target=lambda: out.setdefault("a", a.push(x[..., :20])))
    waiting.start()  # a's push waits for b's
    while a.stream not in shared._waiting:
        pass
    with pytest.raises(UsageError, match="another thread's push or flush of this stream has not returned yet"):
        a.push(x[..., 20:])
    with pytest.raises(UsageError, match="flush: another thread's push"):
        a.flush()
    first_b = b.push(y[..., :20])
    waiting.join()
    rest_a, rest_b = _serve([a, b], [x[..., 20:], y[..., 20:]], 20)
    got_a, got_b = np.concatenate([out["a"], rest_a], -1), np.concatenate([first_b, rest_b], -1)
    for signal, got in ((x, got_a), (y, got_b)):
        np.testing.assert_allclose(got, stack.forward(torch.from_numpy(signal)).numpy(), rtol=1e-9, atol=1e-9)
    with pytest.raises(UsageError, match="push: the stream was flushed or closed already"):
        a.push(x[..., :4])
    assert not shared.pool.streams


def test_misuse_is_refused_in_words():
    engine = TorchEngine(_melgan())
    pool, other = StreamPool(engine), StreamPool(engine)
    a = pool.open()
    with pytest.raises(UsageError, match="another pool"):
        other.push({a: np.zeros((1, 80, 4))})
    with pytest.raises(UsageError, match="rows"):
        pool.push({a: np.zeros((2, 80, 4))})
    pool.push({a: np.zeros((1, 80, 40))})
    pool.flush(a)
    with pytest.raises(UsageError, match="flushed or closed"):
        pool.push({a: np.zeros((1, 80, 4))})
    with pytest.raises(UsageError, match="slots"):
        list(pool.map([np.zeros((1, 80, 40))], slots=0, block=8))


# -- the API ---------------------------------------------------------------------------------


def test_the_api_pool_gives_what_each_stream_gives(melgan_weights):
    model = convt_audio.load("melgan", melgan_weights, threads=1)
    rng = np.random.default_rng(2)
    mels = [rng.standard_normal((80, n)).astype(np.float32) for n in (70, 95, 130)]
    pool = model.pool()
    streams = [pool.open() for _ in mels]
    assert isinstance(streams[0], convt_audio.PoolStream)
    outs = [[] for _ in mels]
    for i in range(0, 130, 10):
        live = {s: m[:, i : i + 10] for s, m in zip(streams, mels) if i < m.shape[1]}
        for s, y in pool.push(live).items():
            outs[streams.index(s)].append(y)
        for k, (s, m) in enumerate(zip(streams, mels)):
            if i + 10 >= m.shape[1] and not s._flushed:
                outs[k].append(s.flush())
    assert len(pool) == 0
    for m, parts in zip(mels, outs):
        np.testing.assert_array_equal(np.concatenate(parts, -1).shape, model(m).shape)
        np.testing.assert_allclose(np.concatenate(parts, -1), model(m), atol=2e-6)
    with pytest.raises(UsageError, match="flushed"):
        streams[0].push(mels[0][:, :4])
    kept, dropped = pool.open(), pool.open()
    pool.push({kept: mels[0][:, :30], dropped: mels[1][:, :30]})
    dropped.close()  # a session gone: it leaves the pool, the other goes on exactly
    assert len(pool) == 1
    rest = [kept.push(mels[0][:, 30:]), kept.flush()]
    np.testing.assert_allclose(
        np.concatenate(rest, -1), model(mels[0])[..., -sum(r.shape[-1] for r in rest) :], atol=2e-6
    )


def test_the_api_pool_with_wait_serves_sessions_on_threads_of_their_own(melgan_weights):
    """``model.pool(wait=...)``: each session's thread pushes its own stream; their pushes run
    as one batch, each session's frames equal ``model(x)``; a session closed midway stops
    counting, and the pool refuses the mapping push and a bad wait in words."""
    model = convt_audio.load("melgan", melgan_weights, threads=1)
    rng = np.random.default_rng(4)
    mels = [rng.standard_normal((80, n)).astype(np.float32) for n in (90, 120, 75, 140)]
    pool = model.pool(wait=30.0)  # a bound on the wait, never reached here
    sessions = [pool.open() for _ in mels]  # open before any pushes: the first ones wait for all
    dropped = pool.open()  # a session that pushes twice, then is dropped

    def drop() -> None:
        for i in range(2):
            dropped.push(mels[0][:, 8 * i : 8 * i + 8])
        dropped.close()

    for m, got in zip(mels, _serve(sessions, mels, 8, drop)):
        want = model(m)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-6)
    assert pool._pool.batch_sizes[len(mels) + 1] >= 1, pool._pool.batch_sizes  # the first pushes, as one
    assert len(pool) == 0
    with pytest.raises(UsageError, match=r"threads of their own \(wait=\): stream.push\(chunk\)"):
        pool.push({pool.open(): mels[0][:, :8]})
    with pytest.raises(UsageError, match="wait: must be a number of seconds"):
        model.pool(wait=-1)


def test_the_api_pool_with_wait_refuses_a_sessions_second_thread_and_stays_usable(melgan_weights):
    """A session's flush from another thread while its push still waits is refused in words;
    the session goes on and ends exactly."""
    model = convt_audio.load("melgan", melgan_weights, threads=1)
    rng = np.random.default_rng(13)
    mels = [rng.standard_normal((80, 48)).astype(np.float32) for _ in range(2)]
    pool = model.pool(wait=30.0)
    a, b = pool.open(), pool.open()
    out: dict = {}
    waiting = threading.Thread(target=lambda: out.setdefault("a", a.push(mels[0][:, :24])))
    waiting.start()  # waits for b's push
    while a._shared.stream is None or a._shared.stream not in pool._shared._waiting:
        pass
    with pytest.raises(UsageError, match="flush: another thread's push or flush of this stream"):
        a.flush()
    first_b = b.push(mels[1][:, :24])
    waiting.join()
    rest_a, rest_b = _serve([a, b], [mels[0][:, 24:], mels[1][:, 24:]], 24)
    got_a, got_b = np.concatenate([out["a"], rest_a], -1), np.concatenate([first_b, rest_b], -1)
    for m, got in zip(mels, (got_a, got_b)):
        np.testing.assert_allclose(got, model(m), atol=2e-6)
    assert len(pool) == 0


def test_the_api_pool_keeps_integer_types_and_channel_layout(melgan_weights):
    model = convt_audio.load("melgan", melgan_weights, threads=1)
    rng = np.random.default_rng(3)
    stereo = (rng.standard_normal((2, 80, 60)) * 3000).astype(np.int16)  # two items of 80 bands
    pool = model.pool()
    s = pool.open()
    got = np.concatenate([s.push(stereo[..., :25]), s.push(stereo[..., 25:]), s.flush()], -1)
    want = model(stereo)
    assert got.dtype == np.int16 and got.shape == want.shape
    assert np.abs(got.astype(int) - want).max() <= 1  # float rounding may move a sample by one step


def test_a_push_of_no_frames_is_nothing_new_in_a_stream_and_a_pool(melgan_weights):
    """A server with no new frames for a session may push an empty chunk: it gives no frames,
    changes nothing, and in a pool with ``wait`` it is that session's turn in the round. The
    whole-array call still refuses an empty input."""
    model = convt_audio.load("melgan", melgan_weights, threads=1)
    mel = (np.random.default_rng(7).standard_normal((80, 40)) * 3000).astype(np.int16)
    stream = model.stream()
    parts = [stream.push(mel[:, :0]), stream.push(mel[:, :17]), stream.push(mel[:, 17:17]), stream.push(mel[:, 17:])]
    assert parts[0].shape == (1, 0) and parts[0].dtype == np.int16 and parts[2].shape == (1, 0)
    want = model(mel).astype(int)  # float rounding may move a sample by one step
    assert np.abs(np.concatenate([*parts, stream.flush()], -1) - want).max() <= 1
    for pool in (model.pool(), model.pool(wait=30.0)):
        a = pool.open()
        got = [a.push(mel[:, i : i + n]) for i, n in ((0, 0), (0, 20), (20, 0), (20, 20))]
        assert np.abs(np.concatenate([*got, a.flush()], -1) - want).max() <= 1
    with pytest.raises(UsageError, match=r"x: shape \(80, 0\) is empty"):
        model(mel[:, :0])
    with pytest.raises(UsageError, match=r"is empty"):
        stream.reset()
        stream.push(np.zeros((0, 10), dtype=np.float32))


def test_map_gives_model_of_each_array_in_order(melgan_weights):
    model = convt_audio.load("melgan", melgan_weights, threads=1)
    rng = np.random.default_rng(4)
    mels = [rng.standard_normal((80, int(n))).astype(np.float32) for n in rng.integers(20, 150, 9)]
    got = list(model.map(iter(mels), slots=3, block=16))
    assert len(got) == len(mels)
    for m, y in zip(mels, got):
        np.testing.assert_allclose(y, model(m), atol=2e-6)
    unbatched = list(model.map(mels[:3]))  # on the CPU by default: each as model(x)
    for m, y in zip(mels, unbatched):
        np.testing.assert_array_equal(y, model(m))
    with pytest.raises(UsageError, match="slots"):
        list(model.map(mels, slots=0))
    with pytest.raises(UsageError, match=r"arrays\[1\]: shape \(80, 0\) is empty"):
        list(model.map([mels[0], mels[0][:, :0]], slots=2))
    with pytest.raises(UsageError, match=r"arrays\[2\]: has 40 channels; melgan takes 80"):
        list(model.map([mels[0], mels[1], mels[2][:40]], slots=2))


def test_the_command_lines_slots_batch_files_and_a_bad_one_fails_alone(tmp_path, melgan_weights):
    """``run --slots 3``: the files' blocks share forwards; each output equals the one ``--slots
    1`` writes (to float rounding), a file that fails before or midway fails alone with one line
    and leaves nothing, and the others are not held up by it."""
    import soundfile as sf
    from clitools import cli, error_lines

    rng = np.random.default_rng(5)
    (tmp_path / "mel").mkdir()
    names = []
    for i, frames in enumerate((150, 95, 260, 70, 181)):
        names.append(f"{i}.npy")
        np.save(tmp_path / "mel" / names[-1], (rng.standard_normal((80, frames)) - 5).astype(np.float32))
    nan = (rng.standard_normal((80, 300)) - 5).astype(np.float32)
    nan[7, 200] = np.nan  # midway: its first blocks have run in shared forwards
    np.save(tmp_path / "mel" / "midway.npy", nan)
    np.save(tmp_path / "mel" / "bands.npy", np.zeros((40, 90), dtype=np.float32))  # refused at once
    outs = {}
    for slots in (1, 3):
        done = cli("run", tmp_path / "mel", "-o", tmp_path / f"s{slots}", "-c", "melgan", "-w", melgan_weights,
                   "--slots", slots, "-q", "--threads", 1)  # fmt: skip
        assert done.returncode == 1, done.stderr
        lines = error_lines(done.stderr)
        assert len(lines) == 2 and any("midway.npy" in line and "non-finite sample" in line for line in lines), lines
        assert any("bands.npy" in line for line in lines), lines
        assert sorted(p.name for p in (tmp_path / f"s{slots}").iterdir()) == sorted(n[:-4] + ".wav" for n in names)
        outs[slots] = {n: sf.read(tmp_path / f"s{slots}" / (n[:-4] + ".wav"), dtype="float32")[0] for n in names}
    for name in names:
        assert outs[3][name].shape == outs[1][name].shape
        assert np.abs(outs[3][name] - outs[1][name]).max() <= 1e-6, name
    clash = cli(
        "run", tmp_path / "mel", "-o", tmp_path / "x", "-c", "melgan", "-w", melgan_weights, "--slots", 2, "-j", 2
    )
    assert clash.returncode == 2 and not (tmp_path / "x").exists()
    assert "--slots 2 batches files through the one model of this process, --jobs 2" in clash.stderr.decode()


def test_a_slots_batch_shares_forwards_and_writes_what_each_file_alone_does(tmp_path, melgan_weights):
    """The library's batch (what the command line calls) with ``slots=4``: the files' blocks did
    run as shared forwards, and each output equals ``model(x)`` of its file to float rounding."""
    import soundfile as sf

    from convt_audio.run.batch import run_batch
    from convt_audio.run.prepare import RunRequest, prepare_run

    rng = np.random.default_rng(6)
    (tmp_path / "mel").mkdir()
    mels = [(rng.standard_normal((80, n)) - 5).astype(np.float32) for n in (400, 333, 512, 290, 377, 420)]
    for i, mel in enumerate(mels):
        np.save(tmp_path / "mel" / f"{i}.npy", mel)
    request = RunRequest(
        inputs=(str(tmp_path / "mel"),), output=str(tmp_path / "out"), config="melgan", weights=melgan_weights,
        slots=4, threads=1,
    )  # fmt: skip
    prepared = prepare_run(request)
    assert prepared.workers == 4 and prepared.runner.slots == 4
    result = run_batch(prepared.runner, prepared.jobs, prepared.options, prepared.workers)
    assert (result.written, result.failed) == (6, 0)
    (shared,) = prepared.runner._shared.values()
    assert max(shared.pool.batch_sizes) >= 2, shared.pool.batch_sizes
    model = convt_audio.load("melgan", melgan_weights, threads=1)
    for i, mel in enumerate(mels):
        got = sf.read(tmp_path / "out" / f"{i}.wav", dtype="float32")[0]
        want = model(mel)[0]
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-6
    assert prepare_run(RunRequest(inputs=(str(tmp_path / "mel"),), output=str(tmp_path / "o2"))).runner.slots == 1


def test_slots_where_nothing_can_share_a_forward_are_told_and_run_each_file_alone(tmp_path):
    from clitools import cli, tone

    (tmp_path / "in").mkdir()
    for i in range(3):
        tone(tmp_path / "in" / f"{i}.wav", seconds=0.5)
    done = cli("run", tmp_path / "in", "-o", tmp_path / "out", "-r", 48000, "--slots", 3)
    assert done.returncode == 0 and len(list((tmp_path / "out").iterdir())) == 3
    assert "--slots 3: only a config's own torch stack batches files" in done.stderr.decode()


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("name", ["melgan", "hifigan-v1"])
def test_cuda_pooled_streams_equal_the_cpu_whole_signal(name):
    """On the device: streams at different places, joined, parted and ended together, each equal
    to its own whole-signal output on the CPU (float32, the contract's 1e-5 of the peak)."""
    stack = Stack.initialised(load_config(name).layers, seed=2)
    engine = TorchEngine(stack.to(device="cuda"))
    rng = np.random.default_rng(8)
    inputs = [rng.standard_normal((1, 80, n)).astype(np.float32) - 5 for n in (64, 64, 40, 93, 17)]
    outputs, pool = _drive(engine, inputs, seed=8, common=8)
    assert max(pool.batch_sizes) >= 2, pool.batch_sizes
    for x, got in zip(inputs, outputs):
        with torch.inference_mode():
            whole = stack.forward(torch.from_numpy(x)).numpy()
        assert got.shape == whole.shape
        assert np.abs(got - whole).max() <= 1e-5 * max(1.0, np.abs(whole).max())


@cuda
def test_cuda_threads_share_forwards_and_flushes_exactly():
    """The command line's batch on the device: each file's thread pushes its own stream, their
    pushes and their flushes run as shared forwards, every output equal to the CPU's."""
    stack = _melgan(torch.float32)
    rng = np.random.default_rng(10)
    inputs = [rng.standard_normal((1, 80, 45)).astype(np.float32) for _ in range(4)]
    shared = SharedPool(TorchEngine(stack.to(device="cuda")), len(inputs), patience=30.0)
    outputs = _threads(shared, inputs, [[16, 16, 13]] * 4)
    for x, got in zip(inputs, outputs):
        assert not isinstance(got, BaseException), got
        whole = stack.forward(torch.from_numpy(x)).numpy()
        assert np.abs(got - whole).max() <= 1e-5 * max(1.0, np.abs(whole).max())
    assert shared.pool.batch_sizes == {4: 3} and shared.pool.flush_sizes == {4: 1}


@cuda
def test_cuda_run_batches_files_by_default_and_fits_the_block_to_free_memory(tmp_path, melgan_weights):
    """``run DIR --device cuda``: 16 slots by default, the files' blocks run as shared forwards,
    the automatic block fits a quarter of what the device has free, and each output equals
    ``model(x)`` on the CPU."""
    import soundfile as sf

    from convt_audio.run.batch import run_batch
    from convt_audio.run.prepare import RunRequest, prepare_run
    from convt_audio.run.runner import device_free_bytes, fit_chunk

    rng = np.random.default_rng(11)
    (tmp_path / "mel").mkdir()
    mels = [(rng.standard_normal((80, n)) - 5).astype(np.float32) for n in (400, 333, 512, 290, 377)]
    for i, mel in enumerate(mels):
        np.save(tmp_path / "mel" / f"{i}.npy", mel)
    request = RunRequest(
        inputs=(str(tmp_path / "mel"),), output=str(tmp_path / "out"), config="melgan", weights=melgan_weights,
        device="cuda",
    )  # fmt: skip
    prepared = prepare_run(request)
    assert prepared.runner.slots == 16
    result = run_batch(prepared.runner, prepared.jobs, prepared.options, prepared.workers)
    assert (result.written, result.failed) == (5, 0)
    (shared,) = prepared.runner._shared.values()
    assert max(shared.pool.batch_sizes) >= 2, shared.pool.batch_sizes
    engine = shared.pool.engine
    free = device_free_bytes(engine)
    assert free is not None and free > 0
    chunk = fit_chunk(engine, None, 16, budget=1 << 50)  # the device, not the host, bounds it
    assert engine.block_bytes(chunk, 16)[0] <= free // 4 or chunk == max(1, engine.min_input_frames())
    model = convt_audio.load("melgan", melgan_weights, device="cpu", threads=1)
    for i, mel in enumerate(mels):
        got = sf.read(tmp_path / "out" / f"{i}.wav", dtype="float32")[0]
        want = model(mel)[0]
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


@cuda
def test_cuda_api_pool_and_map_give_what_the_cpu_gives(melgan_weights):
    gpu = convt_audio.load("melgan", melgan_weights, device="cuda")
    cpu = convt_audio.load("melgan", melgan_weights, device="cpu", threads=1)
    rng = np.random.default_rng(12)
    mels = [rng.standard_normal((80, int(n))).astype(np.float32) for n in rng.integers(20, 150, 7)]
    for m, y in zip(mels, gpu.map(mels)):  # 16 slots by default on a GPU
        want = cpu(m)
        assert y.shape == want.shape and np.abs(y - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    pool = gpu.pool(wait=30.0)
    for m, got in zip(mels, _serve([pool.open() for _ in mels[:3]], mels[:3])):
        want = cpu(m)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
