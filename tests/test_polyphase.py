"""The NumPy polyphase engine for L/M stacks equals the torch stack, streamed at any chunk size."""

import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from helpers import stream_chunks
from hypothesis import given
from hypothesis import strategies as st
from test_stream import chunk_schedules

from convt_audio.kinds import Conv1dSpec, ConvTranspose1dSpec
from convt_audio.model.stack import Stack
from convt_audio.resampling.polyphase import PolyphaseResampler, eligible


@st.composite
def rational_stacks(draw):
    L = draw(st.integers(1, 12))
    dilation = draw(st.integers(1, 2))
    up = ConvTranspose1dSpec(
        1,
        1,
        draw(st.integers(1, 40)),
        stride=L,
        padding=draw(st.integers(0, 20)),
        output_padding=draw(st.integers(0, max(L, dilation) - 1)),
        dilation=dilation,
        bias=draw(st.booleans()),
    )
    specs = [up]
    if draw(st.booleans()):
        specs.append(Conv1dSpec(1, 1, 1, stride=draw(st.integers(1, 13)), bias=draw(st.booleans()), index=1))
    return specs


@given(
    specs=rational_stacks(),
    extra=st.integers(0, 300),
    chunks=chunk_schedules,
    seed=st.integers(0, 999),
    batch=st.integers(1, 2),
)
def test_polyphase_engine_equals_the_torch_stack(specs, extra, chunks, seed, batch):
    assert eligible(specs)
    stack = Stack.initialised(specs, seed=seed).to(dtype=torch.float64)
    frames = stack.min_input_frames() + extra
    x = torch.randn(batch, 1, frames, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    want = stack.forward(x).numpy()
    engine = PolyphaseResampler(specs, [{k: v.numpy() for k, v in p.items()} for p in stack.params], "float64")
    got = stream_chunks(engine.open_stream(batch), x.numpy(), chunks)
    assert got.shape == want.shape == (batch, 1, stack.output_frames(frames))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_a_long_kernel_and_a_large_decimation_keep_their_matrices_in_the_budget(monkeypatch):
    """44.1 kHz -> 5 Hz is a 1.86 M-tap kernel and a decimation of 8820: 64 outputs a group, each
    holding its taps in a window 63·8820 inputs wide, took 3.8 GB and 15 s. Here the same shape,
    small, against a budget made small: the matrices stay in it, and the output is the stack's."""
    import convt_audio.resampling.polyphase as polyphase

    monkeypatch.setattr(polyphase, "MATRIX_ELEMENTS", 1 << 16)
    specs = [ConvTranspose1dSpec(1, 1, 20001, padding=10000), Conv1dSpec(1, 1, 1, stride=300, index=1)]
    stack = Stack.initialised(specs, seed=0).to(dtype=torch.float64)
    engine = PolyphaseResampler(specs, [{k: v.numpy() for k, v in p.items()} for p in stack.params], "float64")
    assert sum(matrix.size for *_, matrix in engine.slices) <= 1 << 16  # 64 outputs x 39,000 inputs before
    x = torch.randn(2, 1, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = stream_chunks(engine.open_stream(2), x.numpy(), [700, 1, 1299])
    np.testing.assert_allclose(got, stack.forward(x).numpy(), rtol=1e-9, atol=1e-12)


def test_not_eligible_stacks():
    up = ConvTranspose1dSpec(1, 1, 5, stride=2)
    assert eligible([up]) and eligible([up, Conv1dSpec(1, 1, 1, stride=3)])
    assert not eligible([ConvTranspose1dSpec(1, 1, 5, stride=2, padding_mode="reflect")])
    assert not eligible([up, Conv1dSpec(1, 1, 3, stride=3)])
    assert not eligible([up, Conv1dSpec(1, 1, 1, stride=3, padding=1)])
    assert not eligible([ConvTranspose1dSpec(1, 2, 5, stride=2)])
    assert not eligible([up, Conv1dSpec(1, 1, 1), Conv1dSpec(1, 1, 1)])


def test_long_signal_across_many_blocks_in_float32():
    spec = ConvTranspose1dSpec(1, 1, 277, 3, 138, output_padding=2, bias=False)
    weight = np.random.default_rng(0).standard_normal((1, 1, 277)) * 0.1
    x = np.random.default_rng(1).standard_normal((1, 1, 300000)).astype(np.float32)
    want = F.conv_transpose1d(torch.from_numpy(x).double(), torch.from_numpy(weight), None, 3, 138, 2).numpy()
    engine = PolyphaseResampler([spec], [{"weight": weight}], "float32")
    got = stream_chunks(engine.open_stream(1), x, [engine.preferred_chunk() // 3 + 1])
    assert got.dtype == np.float32 and got.shape == want.shape == (1, 1, 900000)
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_does_not_import_torch():
    code = (
        "import sys, numpy as np; from convt_audio.resampling.polyphase import PolyphaseResampler; "
        "from convt_audio.kinds import ConvTranspose1dSpec, Conv1dSpec; "
        "e = PolyphaseResampler([ConvTranspose1dSpec(1, 1, 5, 2), Conv1dSpec(1, 1, 1, 3, index=1)], "
        "[{'weight': np.ones((1, 1, 5)), 'bias': np.zeros(1)}, {'weight': np.ones((1, 1, 1))}]); "
        "s = e.open_stream(1); s.push(np.ones((1, 1, 10))); s.flush(); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
