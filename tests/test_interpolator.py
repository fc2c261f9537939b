"""The NumPy FFT interpolator equals the torch layer, streamed, for every parameter it takes."""

import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from convt_audio.interpolator import FftInterpolator, eligible
from convt_audio.specs import Conv1dSpec, ConvTranspose1dSpec

from helpers import stream_chunks

chunk_schedules = st.one_of(
    st.just([1]), st.just([7]), st.just([70000]),
    st.lists(st.integers(1, 13), min_size=1, max_size=5),
    st.lists(st.sampled_from([1, 5, 64, 65000, 131100]), min_size=2, max_size=4),
)


def streamed(engine, x, sizes, batch):
    return stream_chunks(engine.open_stream(batch), x, sizes)


@given(kernel=st.integers(1, 40), stride=st.integers(1, 5), padding=st.integers(0, 25),
       dilation=st.integers(1, 3), op_seed=st.integers(0, 10), bias=st.booleans(),
       frames=st.integers(1, 300), chunks=chunk_schedules, seed=st.integers(0, 999))
def test_streaming_equals_torch_conv_transpose1d(kernel, stride, padding, dilation, op_seed, bias,
                                                 frames, chunks, seed):
    output_padding = op_seed % max(stride, dilation)
    spec = ConvTranspose1dSpec(1, 1, kernel, stride, padding, bias=bias, dilation=dilation,
                               output_padding=output_padding)
    if spec.output_frames(frames) < 1:
        return
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((1, 1, kernel))
    b = rng.standard_normal(1) if bias else None
    x = rng.standard_normal((2, 1, frames))
    want = F.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(weight),
                              None if b is None else torch.from_numpy(b), stride, padding,
                              output_padding, 1, dilation).numpy()
    got = streamed(FftInterpolator(spec, weight, b, "float64"), x, chunks, 2)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * max(1.0, np.abs(want).max()))


def test_long_signal_across_many_fft_blocks():
    spec = ConvTranspose1dSpec(1, 1, 277, 3, 138, output_padding=2, bias=False)
    weight = np.random.default_rng(0).standard_normal((1, 1, 277)) * 0.1
    x = np.random.default_rng(1).standard_normal((1, 1, 300000)).astype(np.float32)
    want = F.conv_transpose1d(torch.from_numpy(x).double(), torch.from_numpy(weight), None, 3, 138, 2).numpy()
    engine = FftInterpolator(spec, weight, None, "float32")
    got = streamed(engine, x, [engine.preferred_chunk()], 1)
    assert got.dtype == np.float32 and got.shape == want.shape == (1, 1, 900000)
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_eligibility():
    assert eligible((ConvTranspose1dSpec(1, 1, 5, 2),))
    assert not eligible((ConvTranspose1dSpec(1, 2, 5, 2),))
    assert not eligible((ConvTranspose1dSpec(1, 1, 5, 2, padding_mode="reflect"),))
    assert not eligible((Conv1dSpec(1, 1, 5),))
    assert not eligible((ConvTranspose1dSpec(1, 1, 5, 2), ConvTranspose1dSpec(1, 1, 5, 2, index=1)))


def test_does_not_import_torch():
    code = ("import sys, numpy as np; from convt_audio.interpolator import FftInterpolator; "
            "from convt_audio.specs import ConvTranspose1dSpec; "
            "e = FftInterpolator(ConvTranspose1dSpec(1, 1, 5, 2), np.ones((1, 1, 5)), np.zeros(1)); "
            "s = e.open_stream(1); s.push(np.ones((1, 1, 10))); s.flush(); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
