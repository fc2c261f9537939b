"""The sinc designer: exact length L·N, zero delay, unit phases, and quality against sines."""

import numpy as np
import pytest
import torch

from convt_audio.core.errors import UsageError
from convt_audio.kinds import ConvTranspose1dSpec
from convt_audio.model.config import load_config
from convt_audio.model.resamplers import sinc_config
from convt_audio.model.stack import Stack, run_chunked
from convt_audio.model.weights import load_stack
from convt_audio.resampling.design import ALIASING_EDGES, design_sinc, measure_response


def stack_for(design, dtype=torch.float64):
    layer = {k: v for k, v in design.layers()[0].items() if k != "type"}
    spec = ConvTranspose1dSpec(**layer)
    return Stack([spec], [{"weight": torch.from_numpy(design.taps).reshape(1, 1, -1)}]).to(dtype=dtype)


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
def test_exact_length_and_zero_delay_impulse(factor):
    design = design_sinc(factor, *ALIASING_EDGES)  # cutoff at the Nyquist frequency
    stack = stack_for(design)
    frames = 200
    x = torch.zeros(1, 1, frames, dtype=torch.float64)
    x[..., 100] = 1.0
    y = stack.forward(x)[0, 0].numpy()
    assert y.shape[0] == factor * frames
    assert int(np.argmax(np.abs(y))) == 100 * factor  # the impulse lands on t = i·L
    # cutoff at the input's Nyquist: original samples are kept exactly (phase 0 is an impulse)
    np.testing.assert_allclose(y[::factor], x[0, 0].numpy(), atol=1e-12)
    np.testing.assert_allclose(
        y[100 * factor - factor * 3 : 100 * factor + factor * 3 + 1],
        y[100 * factor - factor * 3 : 100 * factor + factor * 3 + 1][::-1],
        atol=1e-12,
    )  # symmetric about the impulse: linear phase, zero delay


def test_phases_sum_to_one_so_dc_passes_exactly():
    design = design_sinc(3)
    for phase in range(3):
        assert abs(design.taps[phase::3].sum() - 1.0) < 1e-12


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_sines_land_at_t_over_L(factor):
    rate = 16000
    frames = 4000
    rng = np.random.default_rng(factor)
    freqs = rng.uniform(50, 0.45 * rate, 8)
    phases = rng.uniform(0, 2 * np.pi, 8)

    def signal(t):
        return np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None]).sum(0) / 9

    x = signal(np.arange(frames) / rate)
    want = signal(np.arange(frames * factor) / (rate * factor))
    y = stack_for(design_sinc(factor)).forward(torch.from_numpy(x)[None, None])[0, 0].numpy()
    edge = 400 * factor
    err = y[edge:-edge] - want[edge:-edge]
    snr = 10 * np.log10((want[edge:-edge] ** 2).sum() / (err**2).sum())
    assert snr > 130


def test_alias_free_by_default_flat_to_0_91_of_nyquist_and_140_db_from_it():
    factor, rate = 3, 16000
    design = design_sinc(factor)
    taps = design.taps
    spectrum = np.abs(np.fft.rfft(taps, 1 << 18))
    freqs = np.fft.rfftfreq(1 << 18, d=1 / (rate * factor))
    stop = spectrum[freqs >= 0.5 * rate]  # from the input's Nyquist frequency
    passband = spectrum[freqs <= 0.455 * rate] / factor  # to 0.91 of it
    assert 20 * np.log10(stop.max() / factor) < -140
    assert np.abs(20 * np.log10(passband)).max() < 0.01  # ±0.01 dB
    old = design_sinc(factor, *ALIASING_EDGES)  # the older edges: transition across the Nyquist frequency
    assert measure_response(old, *ALIASING_EDGES).attenuation_db > 140
    assert measure_response(old).attenuation_db < 20  # what lies just above the Nyquist frequency passes


def test_builtin_weights_are_the_designs():
    for factor in (2, 3, 4):
        config = load_config(f"sinc-x{factor}")
        stack, unused = load_stack(config, dtype=None)
        assert unused == []
        design = design_sinc(factor)
        np.testing.assert_array_equal(stack.params[0]["weight"].flatten().numpy(), design.taps)
        assert sinc_config(design, f"sinc-x{factor}", f"sinc-x{factor}.safetensors")["layers"][0] == {
            "type": "conv_transpose1d",
            **{
                k: getattr(config.layers[0], k)
                for k in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "bias")
            },
        }


def test_streaming_float32_matches_whole_signal():
    stack = stack_for(design_sinc(3), torch.float32)
    x = torch.randn(2, 1, 5000) * 0.3
    whole = stack.forward(x)
    streamed = run_chunked(stack, x, [1, 7, 4096, 333])
    assert (streamed - whole).abs().max() <= 1e-5 * max(1.0, whole.abs().max().item())


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(factor=1), "factor: must be an integer >= 2 or a ratio L/M other than 1, got 1"),
        (dict(factor=3, passband=0.6, stopband=0.55), "passband: must be in (0, stopband)"),
        (dict(factor=3, passband=0.45, stopband=0.7), "stopband: must be in (passband, 1 − passband]"),
        (dict(factor=3, stopband=float("nan")), "stopband: must be a finite number, got nan"),
        (dict(factor=3, attenuation=500), "attenuation: must be between 20 and 200 dB, got 500"),
    ],
)
def test_design_errors(kwargs, message):
    with pytest.raises(UsageError) as info:
        design_sinc(**kwargs)
    assert str(info.value).startswith(message)
