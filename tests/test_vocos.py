"""vocos-mel-24khz and vocos-encodec-24khz against Vocos written from the authors' code
(tests/reference_vocoders.py), at full size with random weights saved as the hub's
pytorch_model.bin holds them: every tensor named, float64 decodes equal to Vocos.decode to 1e-9 at
chunk 1, 7 and the default, at the fewest frames each decodes; the command line end to end;
`mel -c vocos-mel-24khz` computes its features; codes through codes_to_features and the adaptive
LayerNorm's row of each bandwidth."""

import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import invoke, one_error_line
from reference_vocoders import Vocos, randomise

import convt_audio
from convt_audio.model.config import load_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_stack

HOP = 256


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A full-size Vocos (13.5 M parameters) with random weights, saved as its state_dict, the
    feature extractor's buffers beside the decoder's as in the hub's file."""
    torch.manual_seed(0)
    model = randomise(Vocos(), seed=1).double()
    path = tmp_path_factory.mktemp("vocos") / "pytorch_model.bin"
    state = {k: v.float() for k, v in model.state_dict().items()}
    state["feature_extractor.mel_spec.spectrogram.window"] = torch.hann_window(1024)
    state["feature_extractor.mel_spec.mel_scale.fb"] = torch.zeros(513, 100)
    torch.save(state, path)
    return model.float().double(), path  # the float32 values, computed in float64


def test_every_decoder_tensor_of_the_checkpoint_is_named(checkpoint):
    model, path = checkpoint
    config = load_config("vocos-mel-24khz")
    ours = {full for names in config.tensor_names for full in names.values()}
    assert ours == set(model.state_dict())
    stack, unused = load_stack(config, path, dtype=torch.float64)
    assert unused == []  # the feature extractor's window and filterbank: weights_ignore
    assert sum(p.numel() for p in model.parameters()) + 1024 == sum(
        t.numel() for layer in stack.params for t in layer.values()
    )


@pytest.mark.parametrize("frames", [2, 3, 9, 40])
def test_float64_decodes_equal_vocos_at_every_chunk_size(checkpoint, frames):
    model, path = checkpoint
    mel = torch.from_numpy(np.random.default_rng(frames).normal(-3, 1.5, (1, 100, frames)))
    with torch.no_grad():
        want = model.decode(mel)[:, None, :]
    assert want.shape[-1] == (frames - 1) * HOP  # the hub's head: padding "center", torch.istft
    scale = want.abs().max()
    stack, _ = load_stack(load_config("vocos-mel-24khz"), path, dtype=torch.float64)
    for chunks in (1, 7):
        assert (run_chunked(stack, mel, chunks) - want).abs().max() / scale < 1e-9, chunks
    default = convt_audio.load("vocos-mel-24khz", str(path), dtype="float64", device="cpu")(mel.numpy()[0])
    assert np.abs(default - want.numpy()[0]).max() / float(scale) < 1e-9


def test_one_mel_frame_is_refused_as_too_short(checkpoint):
    """torch.istft(center=True), Vocos's own head, has no output for one frame (it raises); the
    stack says how many frames it needs."""
    model, path = checkpoint
    mel = torch.zeros(1, 100, 1, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        model.decode(mel)
    vocoder = convt_audio.load("vocos-mel-24khz", str(path), dtype="float64", device="cpu")
    with pytest.raises(convt_audio.ConvtAudioError, match="2"):
        vocoder(mel.numpy()[0])


def test_the_command_line_decodes_a_mel_and_computes_its_features(checkpoint, tmp_path):
    model, path = checkpoint
    t = np.arange(24000) / 24000
    sf.write(str(tmp_path / "a.wav"), 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)), 24000)
    result = invoke("mel", tmp_path / "a.wav", "-c", "vocos-mel-24khz", "-o", tmp_path / "a.npy")
    assert result.exit_code == 0, result.stderr
    mel = np.load(tmp_path / "a.npy")
    librosa = pytest.importorskip("librosa")
    y = sf.read(str(tmp_path / "a.wav"), dtype="float32")[0]
    spec = librosa.feature.melspectrogram(
        y=y, sr=24000, n_fft=1024, hop_length=256, center=True, pad_mode="reflect", power=1.0, n_mels=100,
        htk=True, norm=None,
    )  # fmt: skip
    want = np.log(np.clip(spec, 1e-7, None))
    assert mel.shape == want.shape == (100, 24000 // HOP + 1)
    # float32 rounding, measured on the magnitudes (a log near the 1e-7 floor magnifies it)
    assert np.abs(np.exp(mel) - np.exp(want)).max() / np.exp(want).max() < 1e-5
    loud = want > want.max() - 4.6  # within 40 dB of the peak
    assert np.abs(mel - want)[loud].max() < 1e-4
    result = invoke("run", tmp_path / "a.npy", "-c", "vocos-mel-24khz", "-w", path, "-o", tmp_path / "b.wav")
    assert result.exit_code == 0, result.stderr
    info = sf.info(str(tmp_path / "b.wav"))
    assert info.samplerate == 24000 and info.frames == (mel.shape[1] - 1) * HOP
    with torch.no_grad():
        want = model.decode(torch.from_numpy(mel).double()[None])[0].numpy()
    got = sf.read(str(tmp_path / "b.wav"), dtype="float64")[0]
    assert np.abs(got - np.clip(want, -1, 1)).max() < 1e-4  # float32 decode, FLOAT file


# -- vocos-encodec-24khz ------------------------------------------------------------------------

ENCODEC_HOP = 320
BANDWIDTHS = {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16}  # kbps: codebooks


@pytest.fixture(scope="module")
def encodec_checkpoint(tmp_path_factory):
    """Vocos for EnCodec, full size (10.1 M parameters), random weights (each bandwidth's
    LayerNorm rows differ), saved as its state_dict with a stand-in of EnCodec's own tensors."""
    model = randomise(Vocos.encodec_24khz(), seed=3).double()
    path = tmp_path_factory.mktemp("vocos-encodec") / "pytorch_model.bin"
    state = {k: v.float() for k, v in model.state_dict().items()}
    state["feature_extractor.encodec.decoder.model.0.conv.conv.bias"] = torch.zeros(512)
    torch.save(state, path)
    return model.float().double(), path


def test_every_tensor_of_the_encodec_variant_is_named(encodec_checkpoint):
    model, path = encodec_checkpoint
    config = load_config("vocos-encodec-24khz")
    assert {full for names in config.tensor_names for full in names.values()} == set(model.state_dict())
    _, unused = load_stack(config.with_condition(6), path, dtype=torch.float64)
    assert unused == []  # EnCodec's own tensors: weights_ignore


@pytest.mark.parametrize("kbps, frames", [(1.5, 1), (3.0, 2), (6.0, 9), (12.0, 40), (6.0, 1)])
def test_codes_decode_equal_vocos_at_each_bandwidth_and_chunk_size(encodec_checkpoint, kbps, frames):
    model, path = encodec_checkpoint
    rows = BANDWIDTHS[kbps]
    codes = torch.from_numpy(np.random.default_rng(frames + rows).integers(0, 1024, (rows, frames)))
    with torch.no_grad():
        want = model.decode(model.codes_to_features(codes), bandwidth_id=torch.tensor([rows.bit_length() - 2]))
    want = want[:, None, :]
    assert want.shape[-1] == frames * ENCODEC_HOP
    scale = want.abs().max()
    config = load_config("vocos-encodec-24khz").with_condition(kbps)
    stack, _ = load_stack(config, path, dtype=torch.float64)
    x = torch.full((1, 16, frames), float(convt_audio.kinds.codebooks.ABSENT), dtype=torch.float64)
    x[0, :rows] = codes.double()
    for chunks in (1, 7, [3, 1]):
        assert (run_chunked(stack, x, chunks) - want).abs().max() / scale < 1e-9, chunks
    vocoder = convt_audio.load("vocos-encodec-24khz", str(path), dtype="float64", device="cpu", condition=kbps)
    assert np.abs(vocoder(codes.numpy()) - want.numpy()[0]).max() / float(scale) < 1e-9


def test_the_bandwidth_is_chosen_on_the_command_line_and_checked_against_the_codes(encodec_checkpoint, tmp_path):
    model, path = encodec_checkpoint
    codes = np.random.default_rng(5).integers(0, 1024, (1, 8, 30))  # (1, n_q, frames): 6 kbps
    np.save(tmp_path / "codes.npy", codes)
    out = tmp_path / "out.wav"
    result = invoke(
        "run", tmp_path / "codes.npy", "-c", "vocos-encodec-24khz", "-w", path, "--condition", "6", "-o", out
    )
    assert result.exit_code == 0, result.stderr
    with torch.no_grad():
        want = model.decode(model.codes_to_features(torch.from_numpy(codes[0])), bandwidth_id=torch.tensor([2]))
    got = sf.read(str(out), dtype="float64")[0]
    assert got.shape == (30 * ENCODEC_HOP,)
    assert np.abs(got - np.clip(want[0].numpy(), -1, 1)).max() < 1e-4 * max(1.0, float(want.abs().max()))
    for condition, message in (
        (None, "this config needs --condition VALUE: its bandwidth: 1.5, 3, 6 or 12 kbps (codes of 2, 4, 8, 16 rows)"),
        ("5", "--condition: '5' is not a bandwidth: 1.5, 3, 6 or 12 kbps"),
        ("12", "codes have 8 rows"),
    ):
        bad = tmp_path / f"bad-{condition}.wav"
        extra = () if condition is None else ("--condition", condition)
        result = invoke("run", tmp_path / "codes.npy", "-c", "vocos-encodec-24khz", "-w", path, *extra, "-o", bad)
        assert result.exit_code == (1 if condition == "12" else 2), result.stderr
        one_error_line(result.stderr, message)
        assert not bad.exists()
    result = invoke("run", tmp_path / "codes.npy", "-c", "encodec-24khz", "--condition", "6", "-o", tmp_path / "x.wav")
    assert result.exit_code == 2
    one_error_line(result.stderr, "--condition: encodec-24khz has no condition to choose")


def test_copy_synthesis_equals_vocos_on_its_own_features(checkpoint, tmp_path):
    """`mel` then `run -c vocos-mel-24khz` on a speech-like file, against the authors' pipeline
    in float32: Vocos.decode(feature_extractor(wav)), with torchaudio's MelSpectrogram written
    from its code. Equal to float32 rounding (the features' and the decode's)."""
    from reference_vocoders import MelSpectrogramFeatures

    model, path = checkpoint
    t = np.arange(2 * 24000) / 24000
    wav = 0.2 * np.sin(2 * np.pi * (150 + 40 * np.sin(2 * np.pi * 2 * t)) * t) + 0.01 * np.random.default_rng(
        1
    ).standard_normal(t.size)
    sf.write(str(tmp_path / "in.wav"), wav, 24000, subtype="FLOAT")
    assert invoke("mel", tmp_path / "in.wav", "-c", "vocos-mel-24khz", "-o", tmp_path / "in.npy").exit_code == 0
    result = invoke("run", tmp_path / "in.npy", "-c", "vocos-mel-24khz", "-w", path, "-o", tmp_path / "out.wav")
    assert result.exit_code == 0, result.stderr
    got = sf.read(str(tmp_path / "out.wav"), dtype="float64")[0]
    audio = torch.from_numpy(sf.read(str(tmp_path / "in.wav"), dtype="float32")[0])[None]
    with torch.no_grad():
        features = MelSpectrogramFeatures()(audio)
        want = model.float().decode(features)[0].double().numpy()
    model.double()
    assert np.abs(np.load(tmp_path / "in.npy") - features[0].numpy()).max() < 1e-3  # the features themselves
    assert got.shape == want.shape == ((features.shape[-1] - 1) * HOP,)  # 47872 of 48000: center padding
    assert np.abs(got - want).max() / np.abs(want).max() < 2e-5  # measured 1.5e-6
