"""encodec-24khz against EnCodec 24 kHz written from the authors' code (tests/reference_encodec.py),
full size with random weights saved as ``encodec_24khz-*.th`` holds them: every decoder tensor
named; float64 decodes of integer codes equal ``EncodecModel.decode`` to 1e-9 at chunk 1, 7 and the
default, at every bitrate, and for 1 to 6 frames (EnCodec's zero-extending reflect); codes written
by EnCodec's own ``encode`` decode through the command line."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import invoke, one_error_line
from reference_encodec import EncodecModel
from reference_vocoders import randomise

import convt_audio
from convt_audio.core.errors import UsageError
from convt_audio.model.config import load_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_stack

HOP = 320


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """EnCodec 24 kHz (encoder, 32 codebooks, decoder) with random weights, its state_dict saved."""
    torch.manual_seed(0)
    model = randomise(EncodecModel(), seed=2)
    path = tmp_path_factory.mktemp("encodec") / "encodec_24khz-d7cc33bc.th"
    torch.save(model.state_dict(), path)
    return model.double().eval(), path


def _codes(rows: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 1024, (1, rows, frames)))


def _decode(model, codes):
    with torch.no_grad():
        return model.decode([(codes, None)])


def test_every_decoder_tensor_of_the_checkpoint_is_named(checkpoint):
    model, path = checkpoint
    config = load_config("encodec-24khz")
    ours = {full for names in config.tensor_names for full in names.values()}
    decoder = {k for k in model.state_dict() if k.startswith("decoder.")}
    codebooks = {f"quantizer.vq.layers.{i}._codebook.embed" for i in range(32)}
    assert ours == {k.replace("weight_g", "weight").replace("weight_v", "weight") for k in decoder} | codebooks
    _, unused = load_stack(config, path, dtype=torch.float64)
    assert unused == []  # the encoder and the codebooks' training buffers: weights_ignore
    bare = dataclasses.replace(config, weights_ignore=())
    _, unused = load_stack(bare, path, dtype=torch.float64)
    assert {name.split(".")[0] for name in unused} == {"encoder", "quantizer"}
    assert not any(name.endswith("_codebook.embed") for name in unused)


@pytest.mark.parametrize("rows, frames", [(32, 40), (8, 9), (2, 1), (4, 3), (32, 6), (16, 7)])
def test_float64_decodes_equal_encodec_at_every_chunk_size(checkpoint, rows, frames):
    model, path = checkpoint
    codes = _codes(rows, frames, seed=rows + frames)
    want = _decode(model, codes)
    assert want.shape == (1, 1, frames * HOP)
    scale = want.abs().max()
    stack, _ = load_stack(load_config("encodec-24khz"), path, dtype=torch.float64)
    x = torch.full((1, 32, frames), float(convt_audio.kinds.codebooks.ABSENT), dtype=torch.float64)
    x[:, :rows] = codes.double()
    for chunks in (1, 7, [2, 5, 1]):
        assert (run_chunked(stack, x, chunks) - want).abs().max() / scale < 1e-9, chunks
    default = convt_audio.load("encodec-24khz", str(path), dtype="float64", device="cpu")(codes.numpy()[0])
    assert np.abs(default - want.numpy()[0]).max() / float(scale) < 1e-9


def test_codes_from_encodecs_own_encode_decode_through_the_command_line(checkpoint, tmp_path):
    model, path = checkpoint
    t = np.arange(24000) / 24000
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    model.set_target_bandwidth(6.0)  # 8 codebooks
    with torch.no_grad():
        frames = model.encode(torch.from_numpy(wav)[None, None])
    codes = frames[0][0]
    assert codes.shape == (1, 8, 75)
    np.save(tmp_path / "codes.npy", codes.numpy())  # (1, n_q, frames), as encode returns them
    result = invoke("run", tmp_path / "codes.npy", "-c", "encodec-24khz", "-w", path, "-o", tmp_path / "out.wav")
    assert result.exit_code == 0, result.stderr
    info = sf.info(str(tmp_path / "out.wav"))
    assert info.samplerate == 24000 and info.frames == 75 * HOP
    want = _decode(model, codes)[0, 0].numpy()
    got = sf.read(str(tmp_path / "out.wav"), dtype="float64")[0]
    assert np.abs(got - np.clip(want, -1, 1)).max() < 1e-4 * max(1.0, np.abs(want).max())  # float32 decode


def test_more_codebooks_than_the_model_or_a_bad_code_is_refused(checkpoint, tmp_path):
    _, path = checkpoint
    np.save(tmp_path / "many.npy", _codes(33, 5).numpy()[0])
    result = invoke("run", tmp_path / "many.npy", "-c", "encodec-24khz", "-w", path, "-o", tmp_path / "a.wav")
    assert result.exit_code == 1
    one_error_line(result.stderr, "holds 33 codebook rows; the model has 32 codebooks")
    np.save(tmp_path / "turned.npy", _codes(8, 75).numpy()[0].T)  # (frames, codebooks)
    result = invoke("run", tmp_path / "turned.npy", "-c", "encodec-24khz", "-w", path, "-o", tmp_path / "t.wav")
    assert result.exit_code == 1 and not (tmp_path / "t.wav").exists()
    one_error_line(
        result.stderr, "holds 75 codebook rows; the model has 32 codebooks: it looks like (frames, codebooks)"
    )
    with pytest.raises(UsageError, match=r"shape \(75, 8\) looks like \(frames, codebooks\), pass x.T"):
        convt_audio.load("encodec-24khz", path)(np.load(tmp_path / "turned.npy"))
    bad = _codes(8, 5).numpy()[0]
    bad[3, 4] = 1024
    np.save(tmp_path / "bad.npy", bad)
    result = invoke("run", tmp_path / "bad.npy", "-c", "encodec-24khz", "-w", path, "-o", tmp_path / "b.wav")
    assert result.exit_code == 1
    one_error_line(result.stderr, "codes row 3, frame 4: 1024 is outside [0, 1024)")
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "b.wav").exists()


def test_float_codes_are_refused_not_decoded(checkpoint, tmp_path):
    """Codes are integers: a float array of them fails naming its type and shape, on the
    command line (exit 1, no output) and in the API, rather than decoding or being taken as
    features."""
    _, path = checkpoint
    np.save(tmp_path / "float.npy", _codes(8, 5).numpy()[0].astype(np.float32))
    result = invoke("run", tmp_path / "float.npy", "-c", "encodec-24khz", "-w", path, "-o", tmp_path / "f.wav")
    assert result.exit_code == 1
    one_error_line(result.stderr, "float.npy: .npy input is float32 (8, 5); the stack decodes a codec's integer codes")
    assert not (tmp_path / "f.wav").exists()
    model = convt_audio.load("encodec-24khz", str(path), device="cpu")
    with pytest.raises(convt_audio.ConvtAudioError, match=r"x: a float64 array of shape \(8, 5\); this stack decodes"):
        model(_codes(8, 5).numpy()[0].astype(np.float64))
    with pytest.raises(convt_audio.ConvtAudioError, match="chunk: a float32 array"):
        model.stream().push(_codes(8, 5).numpy()[0].astype(np.float32))
