"""`mel` and the features: section against the authors' own feature code (librosa's filterbank,
HiFi-GAN's mel_spectrogram, MelGAN's Audio2Mel), and copy synthesis wav -> mel -> wav."""

import warnings

import librosa  # noqa: E402  (the [test] extra: the filterbank the authors use)
import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import invoke, one_error_line, tone
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_vocoders import (
    Audio2Mel,
    HifiGanGenerator,
    MelGanGenerator,
    hifigan_mel_spectrogram,
    randomise,
)

from convt_audio.core.errors import ConfigError
from convt_audio.io.features import MelRecipe, MelStream, mel_filterbank
from convt_audio.model.config import load_config, parse_config


def _speech(path, rate=22050, seconds=1.3):
    """Voiced-speech-like audio: a few harmonics with vibrato and noise, float32."""
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    y = sum(0.3 / k * np.sin(k * phase) for k in range(1, 12)) + 0.01 * np.random.default_rng(0).normal(size=t.size)
    sf.write(str(path), (0.5 * y).astype(np.float32), rate, subtype="FLOAT")
    return (0.5 * y).astype(np.float32)


@pytest.mark.parametrize(
    "numbers",
    [
        dict(sample_rate=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0),
        dict(sample_rate=24000, n_fft=1024, n_mels=100, fmin=0.0, fmax=None),
        dict(sample_rate=44100, n_fft=2048, n_mels=128, fmin=40.0, fmax=16000.0, mel_scale="htk", mel_norm=None),
    ],
)
def test_the_filterbank_is_librosas(numbers):
    recipe = MelRecipe(hop_length=256, win_length=numbers["n_fft"], **numbers)
    want = librosa.filters.mel(
        sr=recipe.sample_rate,
        n_fft=recipe.n_fft,
        n_mels=recipe.n_mels,
        fmin=recipe.fmin,
        fmax=recipe.fmax,
        htk=recipe.mel_scale == "htk",
        norm="slaney" if recipe.mel_norm else None,
    )
    got = mel_filterbank(recipe)
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def _checkpoint(tmp_path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = randomise(HifiGanGenerator("v1") if name == "hifigan-v1" else MelGanGenerator(), seed=2)
    path = tmp_path / ("g_00000001" if name == "hifigan-v1" else "best_netG.pt")
    torch.save({"generator": module.state_dict()} if name == "hifigan-v1" else module.state_dict(), path)
    return module.eval(), path


@pytest.mark.parametrize("name", ["hifigan-v1", "melgan"])
def test_copy_synthesis_reproduces_the_authors_pipeline(tmp_path, name):
    """The shipped sample (16 kHz) -> `mel` -> `run`: the mel is the official feature code's on the
    sample at 22050 Hz (resampled as `run -r` resamples it), the audio the module's on that mel."""
    from clitools import ROOT

    import convt_audio

    sample, rate = sf.read(str(ROOT / "samples" / "speech-16k.wav"), dtype="float32")
    y = convt_audio.resample(sample, rate, 22050)
    result = invoke("mel", ROOT / "samples" / "speech-16k.wav", "-c", name, "-o", tmp_path / "speech.mel.npy")
    assert result.exit_code == 0, result.stderr
    assert "80 × " in result.stderr and "n_fft 1024" in result.stderr
    ours = np.load(tmp_path / "speech.mel.npy")
    audio = torch.from_numpy(y)[None]
    if name == "hifigan-v1":
        official = hifigan_mel_spectrogram(audio, 1024, 80, 22050, 256, 1024, 0, 8000)[0].numpy()
    else:
        official = Audio2Mel()(audio[:, None])[0].numpy()
    assert ours.shape == official.shape == (80, load_config(name).features.frames_for(y.size))
    np.testing.assert_allclose(ours, official, rtol=0, atol=2e-5)
    module, checkpoint = _checkpoint(tmp_path, name)
    result = invoke("run", tmp_path / "speech.mel.npy", "-c", name, "-w", checkpoint, "-o", tmp_path / "copy.wav",
                    "--subtype", "FLOAT")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    with torch.no_grad():
        want = module(torch.from_numpy(official)[None])[0, 0].numpy()
    got, rate = sf.read(str(tmp_path / "copy.wav"), dtype="float32")
    assert rate == 22050 and got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_sound_given_to_a_vocoder_is_told_the_mel_command_that_makes_its_features(tmp_path):
    """A WAV handed straight to `run -c hifigan-v1` was refused with rate arithmetic ("input rate
    22050 Hz × 256 = 5.6448e+06 Hz"); it now says what the stack takes and what makes it, and
    that command, followed by `run`, decodes the file."""
    _speech(tmp_path / "voice.wav")
    _, checkpoint = _checkpoint(tmp_path, "hifigan-v1")
    result = invoke("run", tmp_path / "voice.wav", "-c", "hifigan-v1", "-w", checkpoint, "-o", tmp_path / "out.wav")
    assert result.exit_code == 1
    one_error_line(result.stderr, "1-channel audio at 22050 Hz, but hifigan-v1 decodes 80-channel features")
    assert f"`convt-audio mel {tmp_path / 'voice.wav'} -c hifigan-v1` makes them" in result.stderr
    assert not (tmp_path / "out.wav").exists()
    assert invoke("mel", tmp_path / "voice.wav", "-c", "hifigan-v1", "-o", tmp_path / "voice.npy").exit_code == 0
    result = invoke("run", tmp_path / "voice.npy", "-c", "hifigan-v1", "-w", checkpoint, "-o", tmp_path / "out.wav")
    assert result.exit_code == 0, result.stderr
    assert sf.info(str(tmp_path / "out.wav")).samplerate == 22050
    # a wrong frame rate names the built-in config as the user named it, not its installed path
    result = invoke("run", tmp_path / "voice.npy", "-c", "hifigan-v1", "-w", checkpoint, "-o", tmp_path / "x.wav",
                    "--input-rate", "80")  # fmt: skip
    assert result.exit_code == 2
    one_error_line(result.stderr, "20480 Hz, but hifigan-v1 declares output_sample_rate 22050 Hz")


def test_mel_resamples_other_rates_and_averages_channels(tmp_path):
    tone(tmp_path / "a.wav", seconds=0.6, rate=16000, channels=2)
    result = invoke("mel", tmp_path / "a.wav", "-c", "hifigan-v2")
    assert result.exit_code == 0, result.stderr
    assert "frames (its 2 channels averaged, resampled from 16000 Hz); 80-band log-mel at 22050 Hz" in result.stderr
    mel = np.load(tmp_path / "a.mel.npy")
    samples = int(np.ceil(0.6 * 16000 * 22050 / 16000))
    assert mel.shape == (80, 1 + (samples + 2 * 384 - 1024) // 256) and np.isfinite(mel).all()
    assert (tmp_path / "a.wav").exists()


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=6), length=st.integers(600, 9000))
def test_mel_streams_in_any_blocks(sizes, length):
    recipe = load_config("hifigan-v1").features
    y = np.random.default_rng(length).normal(0, 0.2, length).astype(np.float32)
    whole = MelStream(recipe)
    want = np.concatenate([whole.push(y), whole.flush()], axis=1)
    stream, parts, pos, i = MelStream(recipe), [], 0, 0
    while pos < length:
        parts.append(stream.push(y[pos : pos + sizes[i % len(sizes)]]))
        pos, i = pos + sizes[i % len(sizes)], i + 1
    parts.append(stream.flush())
    got = np.concatenate(parts, axis=1)
    assert got.shape == want.shape == (80, recipe.frames_for(length))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_run_takes_pt_tensors_as_npy(tmp_path):
    mel = np.random.default_rng(3).normal(-5, 1, (80, 20)).astype(np.float32)
    np.save(tmp_path / "m.npy", mel)
    torch.save(torch.from_numpy(mel), tmp_path / "m.pt")
    torch.save(torch.from_numpy(mel)[None], tmp_path / "batched.pt")  # (1, 80, frames), as a TTS model returns it
    module, checkpoint = _checkpoint(tmp_path, "melgan")
    outputs = []
    for name in ("m.npy", "m.pt", "batched.pt"):
        result = invoke("run", tmp_path / name, "-c", "melgan", "-w", checkpoint, "-o", tmp_path / f"{name}.wav")
        assert result.exit_code == 0, result.stderr
        outputs.append(sf.read(str(tmp_path / f"{name}.wav"))[0])
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[0], outputs[2])
    torch.save({"mel": torch.from_numpy(mel)}, tmp_path / "dict.pt")
    result = invoke("run", tmp_path / "dict.pt", "-c", "melgan", "-w", checkpoint, "-o", tmp_path / "d.wav")
    assert result.exit_code == 1
    one_error_line(result.stderr, "dict.pt: holds dict; expected one float tensor (channels, frames)")


@pytest.mark.parametrize(
    "args,message",
    [
        (["-c", "sinc-x3"], "sinc-x3: declares no features: section"),
        (["-c", "hifigan-v1", "-o", "x.wav"], "features are written as .npy"),
    ],
)
def test_mel_bad_inputs(tmp_path, args, message):
    tone(tmp_path / "a.wav", rate=22050)
    result = invoke("mel", tmp_path / "a.wav", *[str(tmp_path / a) if a.endswith(".wav") else a for a in args])
    assert result.exit_code == 2
    one_error_line(result.stderr, message)


def test_mel_refuses_to_overwrite_and_short_audio(tmp_path):
    tone(tmp_path / "a.wav", rate=22050)
    (tmp_path / "a.mel.npy").write_bytes(b"keep")
    result = invoke("mel", tmp_path / "a.wav", "-c", "hifigan-v1")
    assert result.exit_code == 1 and (tmp_path / "a.mel.npy").read_bytes() == b"keep"
    one_error_line(result.stderr, "already exists")
    sf.write(str(tmp_path / "short.wav"), np.zeros(100, dtype=np.float32), 22050)
    result = invoke("mel", tmp_path / "short.wav", "-c", "hifigan-v1")
    assert result.exit_code == 1 and not (tmp_path / "short.mel.npy").exists()
    one_error_line(result.stderr, "too short for one mel frame")


def test_features_section_is_checked_against_the_layers():
    base = load_config("hifigan-v1")
    assert base.features.n_mels == 80 and base.features.hop_length == 256
    layers = [{"type": "conv_transpose1d", "in_channels": 80, "out_channels": 1, "kernel_size": 4, "stride": 4}]
    features = {"sample_rate": 16000, "n_fft": 64, "hop_length": 4, "win_length": 64, "n_mels": 80}
    config = parse_config({"layers": layers, "features": features, "output_sample_rate": 16000})
    assert config.features.fmax is None
    with pytest.raises(ConfigError, match=r"features\.n_mels: 64 bands, but layers take 80"):
        parse_config({"layers": layers, "features": {**features, "n_mels": 64}, "output_sample_rate": 16000})
    with pytest.raises(ConfigError, match="output_sample_rate must be set to it"):
        parse_config({"layers": layers, "features": {**features, "hop_length": 8}, "output_sample_rate": 16000})
    with pytest.raises(ConfigError, match=r"features\.window: unknown key"):
        parse_config({"layers": layers, "features": {**features, "window": "hann"}, "output_sample_rate": 16000})
    with pytest.raises(ConfigError, match=r"features\.log: '2' is not one of"):
        parse_config({"layers": layers, "features": {**features, "log": "2"}, "output_sample_rate": 16000})


def test_mel_normalises_with_a_recipes_stats(tmp_path):
    """pwg-multiband-melgan's recipe: librosa's centred STFT, log10, then (x − mean) / scale."""
    y = _speech(tmp_path / "s.wav", seconds=0.8)
    mean, scale = np.linspace(-4, -2, 80), np.linspace(0.5, 1.5, 80)
    np.savez(tmp_path / "stats.npz", mean=mean, scale=scale)
    result = invoke("mel", tmp_path / "s.wav", "-c", "pwg-multiband-melgan", "--stats", tmp_path / "stats.npz")
    assert result.exit_code == 0, result.stderr
    ours = np.load(tmp_path / "s.mel.npy")
    # parallel_wavegan/bin/preprocess.py logmelfilterbank, then the StandardScaler's transform
    spc = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, window="hann", pad_mode="reflect")).T
    basis = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=80, fmax=7600)
    want = ((np.log10(np.maximum(1e-10, spc @ basis.T)) - mean) / scale).T
    assert ours.shape == want.shape
    np.testing.assert_allclose(ours, want, rtol=0, atol=2e-4)
    result = invoke("mel", tmp_path / "s.wav", "-c", "pwg-multiband-melgan", "--stats", tmp_path / "nope.npz", "-y")
    assert result.exit_code == 2
    one_error_line(result.stderr, "nope.npz: cannot read mean and scale")
