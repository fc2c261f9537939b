"""The spectral resampler (a whole L/M chain in one FFT pair per window, float32 outputs): the
samples of the literal stack run by torch, at every length and chunking, and only where the
chain's filters leave nothing to fold."""

import numpy as np
import pytest
from helpers import stream_chunks
from hypothesis import given, settings
from hypothesis import strategies as st

from convt_audio.model.config import parse_config
from convt_audio.model.engines import build_engine
from convt_audio.model.resamplers import resampler_for, sinc_config
from convt_audio.resampling.design import design_sinc
from convt_audio.resampling.spectral import _zoom_dft

SPECTRAL = [(44100, 48000), (48000, 44100), (16000, 48000), (96000, 44100), (48048, 48000), (22050, 8000)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVT_AUDIO_CACHE", str(tmp_path / "cache"))


def engines(fin: int, fout: int):
    """The spectral engine, and the literal stack in float64, each layer run by torch on its own
    (transposed layers as their polyphase convolutions: equal to ``conv_transpose1d`` to 1e-15,
    as the streaming property of tests/test_stream.py checks; 27x faster in float64 for
    48048 -> 48000)."""
    config, params = resampler_for(fin, fout)
    return build_engine(config, params, "cpu", "float32"), build_engine(
        config, params, "cpu", "float64", kernel="polyphase"
    )


@pytest.mark.parametrize("fin,fout", SPECTRAL)
@pytest.mark.parametrize("frames", [1, 37, 700, 9000, 41000])
def test_equals_the_literal_stack_on_torch(fin, fout, frames):
    """Every output frame, the two ends included (where the literal stack cuts each stage's
    output), within float32's resolution of the torch layers run one by one in float64."""
    spectral, literal = engines(fin, fout)
    assert spectral.kernels() == ["spectral"]
    x = np.random.default_rng(frames).uniform(-0.5, 0.5, (2, 1, frames))
    got = stream_chunks(spectral.open_stream(2), x.astype(np.float32), [frames])
    want = stream_chunks(literal.open_stream(2), x, [frames])
    assert got.dtype == np.float32 and got.shape == want.shape == (2, 1, spectral.output_frames(frames))
    np.testing.assert_allclose(got, want, atol=3e-7)


@settings(max_examples=25, deadline=None)
@given(
    pair=st.sampled_from(SPECTRAL),
    frames=st.integers(1, 30000),
    sizes=st.lists(st.integers(1, 12000), min_size=1, max_size=6),
    batch=st.integers(1, 3),
)
def test_chunks_do_not_change_a_sample(pair, frames, sizes, batch):
    """Streaming is exact: any chunk sizes give the whole-signal output bit for bit, and each
    row of a batch is the row run alone."""
    spectral, _ = engines(*pair)
    x = np.random.default_rng(frames).uniform(-0.5, 0.5, (batch, 1, frames)).astype(np.float32)
    whole = stream_chunks(spectral.open_stream(batch), x, [frames])
    np.testing.assert_array_equal(stream_chunks(spectral.open_stream(batch), x, sizes), whole)
    np.testing.assert_array_equal(stream_chunks(spectral.open_stream(1), x[-1:], sizes), whole[-1:])


def test_only_chains_that_fold_nothing_qualify():
    """The spectral product drops what lies beyond the lower Nyquist frequency: a design whose
    transition straddles it (--allow-aliasing), a biased stage, a float64 run and a ratio of huge
    periods stay with the stage-by-stage engine."""
    design = design_sinc("160/147", passband=0.45, stopband=0.55, attenuation=100)
    data = sinc_config(design, "r", "r.safetensors")
    del data["weights"]
    config = parse_config(data)
    params = [{"weight": t} for t in design.tensors().values()]
    assert build_engine(config, params, "cpu", "float32").kernels() == ["fft", "polyphase"]
    config, params = resampler_for(44100, 48000)
    assert build_engine(config, params, "cpu", "float64").kernels() == ["fft", "polyphase"]
    biased = [dict(p) for p in params]
    biased[0]["bias"] = np.full((1,), 0.01)
    data = sinc_config(design_sinc("160/147"), "b", "b.safetensors")
    del data["weights"]
    data["layers"][0]["bias"] = True
    assert build_engine(parse_config(data), biased, "cpu", "float32").kernels() == ["fft", "polyphase"]
    config, params = resampler_for(44100, 47999)
    assert build_engine(config, params, "cpu", "float32").kernels() == ["fft", "polyphase"]


@pytest.mark.parametrize("taps,count,n", [(5, 3, 7), (64, 100, 1000), (301, 40, 160 * 9408)])
def test_zoom_dft_is_the_dft(taps, count, n):
    h = np.random.default_rng(taps).standard_normal(taps)
    b = np.arange(count)[:, None]
    want = (h[None, :] * np.exp(-2j * np.pi * b * np.arange(taps)[None, :] / n)).sum(axis=1)
    np.testing.assert_allclose(_zoom_dft(h, count, n), want, atol=1e-10 * np.abs(h).sum())
