"""Resampling as sox users judge it: alias-free near Nyquist, any ratio, zero delay, exact length,
each tone no worse than soxr HQ's on the same tone (soxr runs in the same test)."""

import json
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
from clitools import cli, invoke, one_error_line, tone

from convt_audio.model.config import load_config
from convt_audio.model.engines import build_engine
from convt_audio.model.resamplers import resampler_for
from convt_audio.model.weights import load_params
from convt_audio.resampling.design import design_sinc, measure_response

soxr = pytest.importorskip("soxr", reason="the [test] extra installs python-soxr, the peer of these tests")

PAIRS = [(44100, 48000), (48000, 44100), (16000, 48000), (96000, 44100), (48048, 48000), (44100, 47999)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVT_AUDIO_CACHE", str(tmp_path / "cache"))


def resample(x: np.ndarray, fin: int, fout: int, chunk: int | None = None) -> np.ndarray:
    """``x`` (float32, mono) through the engine ``run -r`` uses, float32 out as a file would hold it."""
    config, params = resampler_for(fin, fout)
    engine = build_engine(config, params, "cpu", "float32")
    stream = engine.open_stream(1)
    size = chunk or engine.preferred_chunk()
    parts = [stream.push(x[None, None, i : i + size]) for i in range(0, x.shape[0], size)] + [stream.flush()]
    return np.concatenate(parts, axis=-1)[0, 0].astype(np.float64)


def spurious_db(y: np.ndarray, rate: float, frequency: float, amplitude: float) -> float:
    """Everything but the tone, dB re the tone's power (the middle 80 %: no edge transients).
    A tone above the output's Nyquist frequency must vanish: then all of ``y`` is spurious."""
    keep = slice(y.shape[0] // 10, y.shape[0] - y.shape[0] // 10)
    t = np.arange(y.shape[0])[keep] / rate
    y = y[keep]
    if frequency < rate / 2:
        basis = np.stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t)], 1)
        y = y - basis @ np.linalg.lstsq(basis, y, rcond=None)[0]
    return float(10 * np.log10(np.mean(y**2) / (amplitude**2 / 2)))


def tones_for(fin: int, fout: int) -> list[float]:
    """0.1 … 0.99 × the lower Nyquist frequency; going down, also tones between the two."""
    low = min(fin, fout) / 2
    tones = [r * low for r in (0.1, 0.5, 0.9, 0.95, 0.99)]
    if fout < fin:
        high = fin / 2
        tones += [low + r * (high - low) for r in (0.02, 0.1, 0.5, 0.98)]
    return tones


@pytest.mark.parametrize("fin,fout", PAIRS)
def test_every_tone_is_as_clean_as_soxr_hq(fin, fout):
    """Images and aliases just inside Nyquist were −9 dB (soxr HQ: −128 to −138 dB)."""
    t = np.arange(fin) / fin  # one second
    worse = []
    for frequency in tones_for(fin, fout):
        x = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
        ours = spurious_db(resample(x, fin, fout), fout, frequency, 0.5)
        peer = spurious_db(soxr.resample(x, fin, fout, quality="HQ").astype(np.float64), fout, frequency, 0.5)
        assert ours < -125, (frequency, ours)
        if ours > peer + 1:
            worse.append((round(frequency), round(ours, 1), round(peer, 1)))
    assert not worse, f"tones where soxr HQ is cleaner by more than 1 dB (Hz, ours, soxr): {worse}"


@pytest.mark.parametrize("fin,fout", PAIRS + [(8000, 22050), (22050, 8000)])
def test_exact_length_and_zero_delay(fin, fout):
    """⌈N·L/M⌉ frames, and a sum of in-band sines lands where the analytic signal is."""
    rng = np.random.default_rng(fin + fout)
    low = min(fin, fout) / 2
    freqs, phases = rng.uniform(0.02, 0.88, 12) * low, rng.uniform(0, 2 * np.pi, 12)

    def signal(t):
        return np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None]).sum(0) / 13

    frames = fin // 2 + 37
    y = resample(signal(np.arange(frames) / fin).astype(np.float32), fin, fout, chunk=4999)
    assert y.shape[0] == -(-frames * fout // fin)
    want = signal(np.arange(y.shape[0]) / fout)
    middle = slice(y.shape[0] // 5, -y.shape[0] // 5)
    error = y[middle] - want[middle]
    assert 10 * np.log10(np.mean(want[middle] ** 2) / np.mean(error**2)) > 120  # float32 out: ~130 dB


def test_pink_noise_leaves_the_band_above_the_input_nyquist_empty():
    """44.1 → 48 kHz pink noise had −38.7 dB in 22.3–24 kHz re 15–19 kHz (soxr: −64.5 at 16 bits)."""
    rng = np.random.default_rng(5)
    spectrum = np.fft.rfft(rng.standard_normal(44100 * 4))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.shape[0]))
    x = np.fft.irfft(spectrum).astype(np.float32)
    x *= 0.5 / np.abs(x).max()
    y = resample(x, 44100, 48000)[4800:-4800]
    power = np.abs(np.fft.rfft(y * np.hanning(y.shape[0]))) ** 2
    freqs = np.fft.rfftfreq(y.shape[0], 1 / 48000)
    band = power[(freqs > 15000) & (freqs < 19000)].mean()
    above = power[(freqs > 22300) & (freqs < 24000)].mean()
    assert 10 * np.log10(above / band) < -110


@pytest.mark.parametrize(
    "fin,fout", [(48048, 48000), (44100, 47999), (44100, 44101), (8000, 7000), (1000, 768000), (768000, 1000)]
)
def test_any_pair_of_rates_runs(tmp_path, fin, fout):
    """-r for 48048→48000, 44100→47999, 44100→44101 failed (kernel_size … must be at most 65536)."""
    sf.write(str(tmp_path / "a.wav"), 0.3 * np.sin(2 * np.pi * 100 * np.arange(fin) / fin), fin, subtype="FLOAT")
    result = invoke("run", tmp_path / "a.wav", "-r", fout, "-o", tmp_path / "b.wav", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output_rate"] == fout and report["frames_out"] == fout  # one second
    assert sf.info(str(tmp_path / "b.wav")).samplerate == fout
    assert spurious_db(sf.read(str(tmp_path / "b.wav"))[0], fout, 100, 0.3) < -125


@pytest.mark.parametrize("factor,rate", [("713", 8000), ("1000/1001", 48048), ("1001/1000", 48000), ("147/320", 96000)])
def test_what_design_writes_run_and_info_accept(tmp_path, factor, rate):
    """design sinc --factor 713 or 1000/1001 wrote files that run and info then refused."""
    result = invoke("design", "sinc", "--factor", factor, "-o", tmp_path / "d")
    assert result.exit_code == 0, result.output
    stopband = float(result.stderr.split("stopband ")[1].split(" dB")[0])
    assert stopband >= 140  # measured on the stages' taps
    info = invoke("info", tmp_path / "d.yaml", "--json")
    assert info.exit_code == 0, info.output
    assert Fraction(json.loads(info.stdout)["rate_factor"]).limit_denominator(2000) == Fraction(factor)
    tone(tmp_path / "a.wav", seconds=0.1, rate=rate)
    result = invoke("run", tmp_path / "a.wav", "-c", tmp_path / "d.yaml", "-o", tmp_path / "o.wav", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output_rate"] == rate * Fraction(factor)


def test_the_built_ins_are_alias_free():
    for factor in (2, 3, 4):
        config = load_config(f"sinc-x{factor}")
        params = load_params(config)[0]
        measured = measure_response([(factor, 1, params[0]["weight"])])
        assert measured.ripple_db < 0.01 and measured.attenuation_db >= 140  # from the input's Nyquist up
    assert "alias-free" in load_config("sinc-x3").description


def test_multi_stage_designs_run_literally_on_torch():
    """The two-stage 160/147 stack is an ordinary config: torch's layers give the same samples."""
    config, params = resampler_for(44100, 48000)
    assert [layer.type for layer in config.layers] == ["conv_transpose1d", "conv_transpose1d", "conv1d"]
    x = np.random.default_rng(3).uniform(-0.5, 0.5, (1, 1, 1500))
    numpy_engine = build_engine(config, params, "cpu", "float64")
    torch_engine = build_engine(config, params, "cpu", "float64", kernel="transposed")
    from helpers import stream_chunks

    a = stream_chunks(numpy_engine.open_stream(1), x, [1, 7, 700])
    b = stream_chunks(torch_engine.open_stream(1), x, [1500])
    assert a.shape == b.shape == (1, 1, -(-1500 * 160 // 147))
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_allow_aliasing_gives_the_older_band_edges(tmp_path):
    rate = 16000
    sf.write(
        str(tmp_path / "a.wav"),
        0.5 * np.sin(2 * np.pi * 0.99 * rate / 2 * np.arange(rate) / rate),
        rate,
        subtype="FLOAT",
    )
    for flags, bound in (([], (-300, -125)), (["--allow-aliasing"], (-40, 0))):
        result = invoke("run", tmp_path / "a.wav", "-r", 44100, "-o", tmp_path / "b.wav", "-y", *flags)
        assert result.exit_code == 0, result.output
        y = sf.read(str(tmp_path / "b.wav"))[0]
        level = spurious_db(y, 44100, 0.99 * rate / 2, 0.5)  # the image at 8.08 kHz
        assert bound[0] < level < bound[1], (flags, level)
    result = invoke("run", tmp_path / "a.wav", "-c", "sinc-x2", "--allow-aliasing", "-o", tmp_path / "c.wav")
    assert result.exit_code == 2 and "--allow-aliasing chooses the band edges" in result.stderr


def test_without_config_or_rate_inputs_below_48k_go_to_48k(tmp_path):
    """run in44.wav wrote 132 300 Hz (the default sinc-x3 tripled every rate)."""
    for rate in (8000, 22050, 44100):
        tone(tmp_path / f"in{rate}.wav", rate=rate)
    result = invoke(
        "run",
        tmp_path / "in8000.wav",
        tmp_path / "in22050.wav",
        tmp_path / "in44100.wav",
        "-o",
        tmp_path / "out/",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["output_rate"] for line in result.stdout.splitlines()] == [48000] * 3
    tone(tmp_path / "in48000.wav", rate=48000)
    tone(tmp_path / "in96000.wav", rate=96000)
    for name in ("in48000.wav", "in96000.wav"):
        done = cli("run", tmp_path / name)
        assert done.returncode == 2
        one_error_line(
            done.stderr,
            f"{name}: the input is {name[2:-4]} Hz: without --rate or -c, inputs below "
            f"48000 Hz are upsampled to it; give --rate HZ for another rate, or -c CONFIG",
        )
    assert sorted(p.name for p in tmp_path.glob("in*")) == [
        "in22050.wav",
        "in44100.wav",
        "in48000.wav",
        "in8000.wav",
        "in96000.wav",
    ]


def test_the_response_plot_spans_up_to_the_higher_nyquist_only():
    from convt_audio.plots import resampler_response

    config, params = resampler_for(44100, 48000)
    response = resampler_response(config, params)
    assert response.freqs[-1] == pytest.approx(48000 / 44100 / 2)
    assert response.stopband == pytest.approx(0.5) and response.attenuation_db >= 140
    assert measure_response(design_sinc("147/160")).freqs[-1] == pytest.approx(0.5)
