"""Any target rate: rational L/M designs, --rate on the command line, the cache, zero delay."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clitools import PACKAGE_HOME, invoke
from helpers import stream_chunks

from convt_audio.model.config import load_config, parse_config
from convt_audio.model.engines import build_engine
from convt_audio.model.resamplers import resampler_for, sinc_config
from convt_audio.resampling.design import design_sinc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CONVT_AUDIO_CACHE", str(folder))
    return folder


def sines(frames, rate, freqs, phases):
    t = np.arange(frames) / rate
    return 0.1 * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None]).sum(0)


@pytest.mark.parametrize("fin,fout", [(44100, 48000), (16000, 44100), (22050, 48000), (48000, 44100)])
def test_rational_resampling_is_exact_in_length_zero_delay_and_clean(fin, fout):
    """Output t lies at input time t·M/L: band-limited sines come out where the analytic signal is."""
    config, params = resampler_for(fin, fout)
    ratio = Fraction(fout, fin)
    assert config.rate_factor() == ratio
    engine = build_engine(config, params, "cpu", "float64")
    rng = np.random.default_rng(0)
    freqs = rng.uniform(50, 0.45 * min(fin, fout), 6)
    phases = rng.uniform(0, 2 * np.pi, 6)
    frames = fin // 2 + 7
    x = sines(frames, fin, freqs, phases)
    y = stream_chunks(engine.open_stream(1), x[None, None], [4093, 1, 77])[0, 0]
    assert y.shape[0] == -(-frames * ratio.numerator // ratio.denominator)  # ⌈frames·L/M⌉
    want = sines(y.shape[0], fout, freqs, phases)
    edge = fout // 20
    err = y[edge:-edge] - want[edge:-edge]
    snr = 10 * np.log10((want[edge:-edge] ** 2).sum() / (err**2).sum())
    assert snr > 125


def test_downsampling_removes_what_the_output_cannot_hold():
    config, params = resampler_for(96000, 44100)
    engine = build_engine(config, params, "cpu", "float64")
    x = 0.5 * np.sin(2 * np.pi * 30000 * np.arange(48000) / 96000)  # above 0.55 × 44.1 kHz
    y = stream_chunks(engine.open_stream(1), x[None, None], [10000])[0, 0]
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) < 1e-6


def test_the_same_stack_runs_on_torch_with_the_same_result():
    design = design_sinc("160/147", attenuation=100)
    data = sinc_config(design, "r", "r.safetensors")
    del data["weights"]
    config = parse_config(data)
    params = [{"weight": t} for t in design.tensors().values()]
    x = np.random.default_rng(1).standard_normal((1, 1, 3001))
    numpy_engine = build_engine(config, params, "cpu", "float64")
    torch_engine = build_engine(config, params, "cpu", "float64", kernel="transposed")
    assert numpy_engine.name == "numpy-resampler" and torch_engine.name == "torch"
    assert numpy_engine.kernels() == ["fft", "polyphase"]  # the sharp ×2 by FFT, then 80/147
    a = stream_chunks(numpy_engine.open_stream(1), x, [1000])
    b = stream_chunks(torch_engine.open_stream(1), x, [333])
    assert a.shape == b.shape == (1, 1, -(-3001 * 160 // 147))
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_design_command_writes_a_rational_stack(tmp_path):
    result = invoke("design", "sinc", "--factor", "160/147", "-o", tmp_path / "up")
    assert result.exit_code == 0, result.output
    assert "×160/147" in result.stderr
    config = load_config(tmp_path / "up.yaml")
    # two stages: a sharp ×2, then a short 80/147
    assert [spec.type for spec in config.layers] == ["conv_transpose1d", "conv_transpose1d", "conv1d"]
    assert [spec.stride for spec in config.layers] == [2, 80, 147] and config.layers[2].kernel_size == 1
    info = json.loads(invoke("info", tmp_path / "up.yaml", "--input-rate", 44100, "--json").stdout)
    assert info["output_rate"] == 48000 and info["weights_status"] == "ok"
    for bad in ("1", "0", "abc", "3/0", "-2"):
        result = invoke("design", "sinc", "--factor", bad, "-o", tmp_path / "bad")
        assert result.exit_code == 2 and "--factor: must be an integer >= 2" in result.stderr


def test_run_with_rate_uses_the_cache_and_works_without_one(tmp_path, cache, monkeypatch):
    t = np.arange(44100) / 44100
    sf.write(str(tmp_path / "a.wav"), 0.5 * np.sin(2 * np.pi * 1000 * t), 44100, subtype="PCM_16")
    result = invoke("run", tmp_path / "a.wav", "-r", 48000, "-o", tmp_path / "b.wav", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output_rate"] == 48000 and report["frames_out"] == 48000 and report["engine"] == "numpy-resampler"
    assert sorted(p.name for p in cache.iterdir()) == ["sinc-160-147.safetensors"]  # the taps only
    first = sf.read(str(tmp_path / "b.wav"))[0]
    # a cache that cannot be written (a file stands where the folder would be): designed in memory
    (tmp_path / "blocked").write_text("x")
    monkeypatch.setenv("CONVT_AUDIO_CACHE", str(tmp_path / "blocked" / "cache"))
    result = invoke("run", tmp_path / "a.wav", "-r", 48000, "-o", tmp_path / "c.wav")
    assert result.exit_code == 0, result.output
    assert np.array_equal(first, sf.read(str(tmp_path / "c.wav"))[0])


def test_rate_equal_to_the_input_copies_unchanged_and_integer_ratios_use_the_built_ins(tmp_path, cache):
    data = (np.random.default_rng(2).integers(-30000, 30000, (8000, 2))).astype(np.int16)
    sf.write(str(tmp_path / "a.wav"), data, 16000, subtype="PCM_16")
    assert invoke("run", tmp_path / "a.wav", "-r", 16000, "-o", tmp_path / "same.wav").exit_code == 0
    assert np.array_equal(sf.read(str(tmp_path / "same.wav"), dtype="int16")[0], data)
    result = invoke("run", tmp_path / "a.wav", "-r", 48000, "-o", tmp_path / "x3.wav")
    assert result.exit_code == 0
    assert invoke("run", tmp_path / "a.wav", "-c", "sinc-x3", "-o", tmp_path / "c3.wav").exit_code == 0
    assert np.array_equal(sf.read(str(tmp_path / "x3.wav"))[0], sf.read(str(tmp_path / "c3.wav"))[0])
    assert not cache.exists()  # nothing designed: sinc-x3 ships


def test_a_config_then_a_rate_chains_a_resampler_and_a_batch_mixes_input_rates(tmp_path):
    """-c then -r: the config's output resampled to -r in the same stream, as two runs piped."""
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "a.wav"), 0.1 * rng.normal(size=4410), 44100, subtype="FLOAT")
    sf.write(str(tmp_path / "b.wav"), np.zeros(1600), 16000)
    result = invoke("run", tmp_path / "a.wav", "-r", 48000, "-c", "sinc-x2", "-o", tmp_path / "o.wav", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output_rate"] == 48000 and report["frames_out"] == 4800
    assert report["engine"] == "numpy-resampler+numpy-resampler"
    invoke("run", tmp_path / "a.wav", "-c", "sinc-x2", "-o", tmp_path / "x2.wav", "--subtype", "FLOAT")
    invoke("run", tmp_path / "x2.wav", "-r", 48000, "-o", tmp_path / "two.wav", "--subtype", "FLOAT")
    assert np.array_equal(sf.read(str(tmp_path / "o.wav"))[0], sf.read(str(tmp_path / "two.wav"))[0])
    result = invoke("run", tmp_path / "a.wav", tmp_path / "b.wav", "-r", 48000, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["input_rate"]: r["frames_out"] for r in reports} == {44100: 4800, 16000: 4800}
    for bad, message in (
        ("44.1q", "--rate: '44.1q' is not a rate in Hz"),
        ("1e400", "--rate: at most 2147483647 Hz"),
        ("44100.5", "--rate: an output rate is a whole number of Hz"),
    ):
        result = invoke("run", tmp_path / "a.wav", "-r", bad)
        assert result.exit_code == 2 and message in result.stderr


def test_rates_in_khz_as_sox_writes_them(tmp_path, cache):
    sf.write(str(tmp_path / "a.wav"), np.zeros(16000), 16000)
    for text, rate in (("48k", 48000), ("44.1k", 44100), ("22.05K", 22050)):
        result = invoke("run", tmp_path / "a.wav", "-r", text, "-o", tmp_path / f"{text}.wav", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["output_rate"] == rate == sf.info(str(tmp_path / f"{text}.wav")).samplerate


def test_short_r_is_the_rate_and_capital_r_recursive(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    sf.write(str(tmp_path / "d" / "e" / "a.wav"), np.zeros(441), 44100)
    result = invoke("run", tmp_path / "d", "-R", "-r", 48000, "-o", tmp_path / "up")
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "up" / "e" / "a.wav")).samplerate == 48000
    assert not (tmp_path / "48000").exists()


def test_rate_does_not_import_torch(tmp_path):
    sf.write(str(tmp_path / "a.wav"), np.zeros(4410), 44100)
    code = (
        "import sys; from cli.main import app; sys.argv = ['convt-audio', 'run', 'a.wav', '-r', '48000', '-q'];\n"
        "try: app()\nexcept SystemExit as e: assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": PACKAGE_HOME, "CONVT_AUDIO_CACHE": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"},
    )
    assert sf.info(str(tmp_path / "a.48000hz.wav")).frames == 4800


def test_torch_float_stack_matches_for_integer_factor():
    config = load_config("sinc-x2")
    from convt_audio.model.weights import load_params

    params = load_params(config)[0]
    x = np.random.default_rng(3).standard_normal((2, 1, 999))
    a = stream_chunks(build_engine(config, params, "cpu", "float64").open_stream(2), x, [100])
    b = stream_chunks(build_engine(config, params, "cpu", "float64", kernel="transposed").open_stream(2), x, [100])
    np.testing.assert_allclose(a, b, atol=1e-9)
