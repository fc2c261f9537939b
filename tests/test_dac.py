"""Descript Audio Codec decoders against their own code (reference_vocoders.Dac, written from
dac/model/dac.py and dac/nn/quantize.py): the released weights.pth layout named; z -> audio and
codes -> audio (quantizer.from_codes, then the decoder) equal to the module's, whole and streamed."""

import warnings

import numpy as np
import pytest
import torch
from architectures import dac
from clitools import invoke
from reference_vocoders import DAC_CODEBOOKS, DAC_HPARAMS, Dac, randomise

import convt_audio
from convt_audio.model.config import load_config, parse_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_stack

NAMES = sorted(DAC_HPARAMS)


def _decoder(name, latent=1024, dim=1536):
    """The DAC's quantizer and decoder (``.decoder(z)``, ``.decode_codes(codes)``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Dac(name, latent, dim)


def _weights_pth(module, path):
    """As the released weights.pth holds them: the whole state_dict (an encoder beside it) and metadata."""
    state = dict(module.state_dict())
    state["encoder.block.0.weight_g"] = torch.ones(64, 1, 1)  # not the decoder's: not reported unused
    torch.save({"state_dict": state, "metadata": {"kwargs": {"sample_rate": 44100}}}, path)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_the_builtin_names_every_decoder_tensor_of_weights_pth(name):
    with torch.device("meta"):
        module = _decoder(name)
    official = {}
    for key, tensor in module.state_dict().items():
        full = f"state_dict.{key}"
        if key.endswith("weight_g") or ".in_proj." in key:  # in_proj: the encoder's side
            continue
        if key.endswith("weight_v"):
            full = full[: -len("_v")]
        official[full] = tuple(tensor.shape)
    config = load_config(name)
    ours = {full: leaf.tensor_shapes()[local] for leaf, names in zip(config.leaves, config.tensor_names)
            for local, full in names.items()}  # fmt: skip
    assert ours == official


@pytest.mark.parametrize("name", NAMES)
def test_z_decodes_as_the_module_in_float64(tmp_path, name):
    """At 1/24 of the width (64 channels, latent 16), random weights saved as weights.pth with an
    encoder and metadata beside the decoder: float64 relative error <= 1e-9 at chunk 7 and whole."""
    module = randomise(_decoder(name, latent=16, dim=64), seed=6)
    config = parse_config(dac(name, latent=16, dim=64))
    stack, unused = load_stack(config, _weights_pth(module, tmp_path / "weights.pth"), dtype=None)
    assert unused == []
    stack = stack.to(dtype=torch.float64)
    z = torch.from_numpy(np.random.default_rng(2).normal(0, 1, (1, 16, 23)))
    with torch.no_grad():
        want = module.double()(z)
    assert 0.01 < float(want.std())
    for chunks in ([7], [23]):
        got = run_chunked(stack, z, chunks)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= 1e-9 * float(want.abs().max())


def test_late_layers_streamed_in_slices_decode_as_the_module(tmp_path, monkeypatch):
    """A block grown past the slice size by the upsamplers goes through the layers after in
    slices of frames (forced small here, as 96 channels at 44.1 kHz are in a full decode): the
    output is still the module's, float64 to 1e-9, and slices were in fact taken."""
    from convt_audio.core import streaming

    module = randomise(_decoder("dac-44khz", latent=16, dim=64), seed=6)
    config = parse_config(dac("dac-44khz", latent=16, dim=64))
    stack, _ = load_stack(config, _weights_pth(module, tmp_path / "weights.pth"), dtype=None)
    stack = stack.to(dtype=torch.float64)
    z = torch.from_numpy(np.random.default_rng(3).normal(0, 1, (2, 16, 19)))
    with torch.no_grad():
        want = module.double()(z)
    taken = []
    monkeypatch.setattr(streaming, "SLICE_ELEMENTS", 1000)
    monkeypatch.setattr(streaming, "slices", lambda chunk, cut=streaming.slices: taken.append(cut(chunk)) or taken[-1])
    for chunks in ([7], [19], [1, 5, 2]):
        got = run_chunked(stack, z, chunks)
        assert float((got - want).abs().max()) <= 1e-9 * float(want.abs().max())
    assert max(taken) > 10


def test_info_reads_the_latent_rate():
    """z is (1024, frames) at rate / hop: 75 Hz for dac-24khz, taken from the config."""
    result = invoke("info", "dac-24khz")
    assert result.exit_code == 0 and "75 Hz (the config's feature rate) -> 24000 Hz" in result.stdout


def test_the_full_size_builtin_decodes_as_the_module(tmp_path):
    """dac-44khz itself (latent 1024, 1536 channels), random weights saved as weights.pth: float64
    relative error <= 1e-9 at chunk 7 and at the default chunk."""
    from convt_audio.model.engines import build_engine
    from convt_audio.model.weights import load_params

    module = randomise(_decoder("dac-44khz"), seed=8)
    _weights_pth(module, tmp_path / "weights.pth")
    module = module.double()
    config = load_config("dac-44khz")
    stack, unused = load_stack(config, tmp_path / "weights.pth", dtype=None)
    assert unused == []
    stack = stack.to(dtype=torch.float64)
    z = torch.from_numpy(np.random.default_rng(4).normal(0, 1, (1, 1024, 9)))
    with torch.no_grad():
        want = module(z)
    del module
    engine = build_engine(config, load_params(config, tmp_path / "weights.pth", "float64")[0], "cpu", "float64")
    for chunks in ([7], [engine.preferred_chunk()]):
        got = run_chunked(stack, z, chunks)
        assert got.shape == want.shape == (1, 1, 9 * 512)
        assert float((got - want).abs().max()) <= 1e-9 * float(want.abs().max())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rows, frames", [(None, 23), (2, 1), (3, 7)])
def test_codes_decode_as_quantizer_from_codes_then_the_decoder(tmp_path, name, rows, frames):
    """Integer codes — every codebook, or the first few (a lower bitrate) — through the same
    built-in that takes z: float64 relative error <= 1e-9 whole, at chunk 1 and 7, and for 1 frame."""
    module = randomise(_decoder(name, latent=16, dim=64), seed=7).double()
    n_q = rows or DAC_CODEBOOKS[name]
    codes = torch.from_numpy(np.random.default_rng(frames).integers(0, 1024, (1, n_q, frames)))
    with torch.no_grad():
        want = module.decode_codes(codes)
    config = parse_config(dac(name, latent=16, dim=64))
    stack, _ = load_stack(config, _weights_pth(module.float(), tmp_path / "weights.pth"), dtype=torch.float64)
    module.double()
    x = torch.full((1, DAC_CODEBOOKS[name], frames), float(convt_audio.kinds.codebooks.ABSENT), dtype=torch.float64)
    x[:, :n_q] = codes.double()
    for chunks in ([1], [7], [frames]):
        got = run_chunked(stack, x, chunks)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= 1e-9 * float(want.abs().max()), chunks


def test_the_full_size_builtin_takes_codes_and_latents_from_the_command_line(tmp_path):
    """dac-24khz, full size, random weights: a (1, 8, frames) int64 .npy of codes (8 of its 32
    codebooks, as DAC.encode(n_quantizers=8) returns them) and a float .npy of z decode through
    the same -c dac-24khz; codes past the codebooks or out of range are refused."""
    import soundfile as sf

    module = randomise(_decoder("dac-24khz"), seed=9)
    weights = _weights_pth(module, tmp_path / "weights.pth")
    module = module.double()
    codes = np.random.default_rng(3).integers(0, 1024, (1, 8, 12))
    np.save(tmp_path / "codes.npy", codes)
    with torch.no_grad():
        z = module.quantizer.from_codes(torch.from_numpy(codes))
        want = module.decoder(z)[0, 0].numpy()
    np.save(tmp_path / "z.npy", z[0].float().numpy())
    for source in ("codes", "z"):
        result = invoke(
            "run", tmp_path / f"{source}.npy", "-c", "dac-24khz", "-w", weights, "-o", tmp_path / f"{source}.wav"
        )
        assert result.exit_code == 0, result.stderr
        got = sf.read(str(tmp_path / f"{source}.wav"), dtype="float64")[0]
        assert got.shape == want.shape == (3832,)  # DAC 24 kHz: 12 frames give 12·320 − 8
        assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max()), source  # float32 decode
    vocoder = convt_audio.load("dac-24khz", str(weights), dtype="float64", device="cpu")
    assert np.abs(vocoder(codes[0]) - want).max() <= 1e-9 * np.abs(want).max()
    assert np.abs(vocoder(z[0].numpy()) - want).max() <= 1e-9 * np.abs(want).max()
    bad = codes.copy()
    bad[0, 5, 2] = -3
    np.save(tmp_path / "bad.npy", bad)
    result = invoke("run", tmp_path / "bad.npy", "-c", "dac-24khz", "-w", weights, "-o", tmp_path / "bad.wav")
    assert result.exit_code == 1 and "codes row 5, frame 2: -3 is outside [0, 1024)" in result.stderr
    assert not (tmp_path / "bad.wav").exists()
