"""Two halves of one input streamed at once (convt_audio.model.split) equal the whole-signal
output: random stacks and nested blocks, every padding mode but circular, strides that need even
shifts, irregular blocks; the API and the command line use it where it applies, and not where
it does not (an LSTM, circular padding, one thread, a short input)."""

import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import cli
from helpers import stream_chunks
from hypothesis import given, settings
from hypothesis import strategies as st
from test_blocks import _stack, nested_stacks
from test_stream import _seeded, stacks

import convt_audio
import convt_audio.model.split as split
from convt_audio.core.shapes import rate_of
from convt_audio.kinds import PADDING_MODES, Conv1dSpec, ConvTranspose1dSpec
from convt_audio.model.config import load_config, parse_config
from convt_audio.model.engines import TorchEngine
from convt_audio.model.split import SplitStream, context_frames, shift_period, split_plan

NOT_CIRCULAR = tuple(m for m in PADDING_MODES if m != "circular")


def _check_split(stack, seed: int, sizes, where: float) -> None:
    engine = TorchEngine(stack)
    context = context_frames(engine.specs)
    assert context is not None and context % shift_period(engine.specs) == 0
    period = shift_period(engine.specs)
    frames = max(stack.min_input_frames(), 1) + 4 * context + 3 * period + 11
    boundary = max(context, int(frames * where) // period * period)
    boundary = min(boundary, (frames - context) // period * period)
    x = np.random.default_rng(seed).standard_normal((2, stack.in_channels, frames))
    whole = stack.forward(torch.from_numpy(x)).numpy()
    stream = SplitStream(engine, 2, boundary, context, 1)
    got = stream_chunks(stream, x, sizes)
    # both threads have ended when flush returns: one still tearing down its OpenMP team as the
    # process exits aborted it ("terminate called without an active exception", 1 run in 4 of
    # 20 s of DAC 44 kHz, after its output was written)
    assert not any(worker.is_alive() for worker in stream.workers)
    assert got.shape == whole.shape
    np.testing.assert_allclose(got, whole, rtol=1e-9, atol=1e-9)


chunk_sizes = st.one_of(st.just([1]), st.just([64]), st.lists(st.integers(1, 13), min_size=1, max_size=5))


@settings(max_examples=60, deadline=None)
@given(
    specs=stacks(max_convs=3, modes=NOT_CIRCULAR),
    sizes=chunk_sizes,
    seed=st.integers(0, 999),
    where=st.floats(0.2, 0.8),
)
def test_two_halves_equal_the_whole_signal(specs, sizes, seed, where):
    stack = _seeded(specs, seed).to(dtype=torch.float64)
    if context_frames(stack.specs) > 400:
        return
    _check_split(stack, seed, sizes, where)


@settings(max_examples=40, deadline=None)
@given(specs=nested_stacks(), sizes=chunk_sizes, seed=st.integers(0, 999), where=st.floats(0.2, 0.8))
def test_two_halves_through_nested_blocks(specs, sizes, seed, where):
    stack = _stack(specs, seed)
    if context_frames(stack.specs) is None or context_frames(stack.specs) > 400:
        return  # circular padding: not split (its own test below)
    _check_split(stack, seed, sizes, where)


def test_a_stopped_split_has_no_thread_left():
    stack = _seeded(
        [ConvTranspose1dSpec(1, 2, 4, stride=2, padding=1, index=0), Conv1dSpec(2, 1, 3, padding=1, index=1)], 0
    ).to(dtype=torch.float64)
    engine = TorchEngine(stack)
    stream = SplitStream(engine, 1, 200, context_frames(engine.specs) + 2, 1)
    for _ in range(6):
        stream.push(np.zeros((1, 1, 50)))
    stream.stop()  # a failed or cancelled run
    assert not any(worker.is_alive() for worker in stream.workers)


def test_downsampling_needs_even_shifts():
    config = parse_config(
        {
            "layers": [
                {"type": "conv1d", "in_channels": 1, "out_channels": 2, "kernel_size": 4, "stride": 2, "padding": 1},
                {"type": "conv_transpose1d", "in_channels": 2, "out_channels": 1, "kernel_size": 6, "stride": 3},
            ]
        }
    )
    assert shift_period(config.layers) == 2 and rate_of(config.layers) == 1.5
    assert context_frames(config.layers) % 2 == 0


def test_unbounded_reach_is_never_split():
    assert context_frames(load_config("encodec-24khz").layers) is None  # its LSTM carries the whole past
    circular = parse_config(
        {
            "layers": [
                {
                    "type": "conv1d",
                    "in_channels": 1,
                    "out_channels": 1,
                    "kernel_size": 3,
                    "padding": 1,
                    "padding_mode": "circular",
                }
            ]
        }  # fmt: skip
    )
    assert context_frames(circular.layers) is None
    hifigan = load_config("hifigan-v1")
    assert 13 <= context_frames(hifigan.layers) <= 64  # look-ahead 12.7 frames; 64 is 2.5 % of 60 s twice


def test_the_plan_applies_only_where_it_pays():
    config = load_config("melgan")
    from convt_audio.model.stack import Stack

    stack = Stack.initialised(config.layers, seed=0)
    engine = TorchEngine(stack)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        context = context_frames(config.layers)
        assert split_plan(engine, 100_000, 1, 64, 1 << 34) == (50_000, context, 1)
        assert split_plan(engine, 2 * 8 * 64, 1, 64, 1 << 34) is None  # too short for 8 blocks a half
        assert split_plan(engine, None, 1, 64, 1 << 34) is None  # a pipe: length unknown
        assert split_plan(engine, 100_000, 1, 64, 1 << 20) is None  # over an eighth of the budget
        torch.set_num_threads(1)
        assert split_plan(engine, 100_000, 1, 64, 1 << 34) is None
    finally:
        torch.set_num_threads(before)


def test_float32_halves_match_one_stream_to_rounding(monkeypatch, melgan_weights):
    """The API's whole-array call splits a long input (2 threads) and gives what one stream gives."""
    model = convt_audio.load("melgan", melgan_weights, device="cpu", threads=2)
    mel = np.random.default_rng(3).standard_normal((80, 3000)).astype(np.float32) - 5
    made = []
    monkeypatch.setattr(split.SplitStream, "__init__", _counting(split.SplitStream.__init__, made))
    halves = model(mel)
    assert made, "a 3000-frame input on 2 threads is split"
    one = convt_audio.load("melgan", melgan_weights, device="cpu", threads=2).engine.open_stream(1)
    want = np.concatenate([one.push(mel[None, :, i : i + 64]) for i in range(0, 3000, 64)] + [one.flush()], -1)[0]
    assert halves.shape == want.shape
    assert np.abs(halves - want).max() <= 1e-5 * np.abs(want).max()


def _counting(init, made):
    def wrapped(self, *args, **kwargs):
        made.append(args)
        return init(self, *args, **kwargs)

    return wrapped


@pytest.mark.parametrize("threads", ["2", "1"])
def test_command_line_output_is_the_same_split_or_not(tmp_path, threads, melgan_weights):
    mel = np.random.default_rng(4).standard_normal((80, 2500)).astype(np.float32) - 5
    np.save(tmp_path / "m.npy", mel)
    done = cli("run", "m.npy", "-c", "melgan", "-w", melgan_weights, "-o", f"y{threads}.wav", "--subtype", "FLOAT", "--threads", threads,
               "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    y, rate = sf.read(str(tmp_path / f"y{threads}.wav"), dtype="float32")
    model = convt_audio.load("melgan", melgan_weights, device="cpu", threads=1)
    want = model(mel)[0]
    assert rate == 22050 and y.shape == want.shape
    assert np.abs(y - want).max() <= 1e-5 * np.abs(want).max()
