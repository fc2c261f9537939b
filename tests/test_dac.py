"""Descript Audio Codec decoders against their own code (reference_vocoders.DacDecoder, written from
dac/model/dac.py): the released weights.pth layout named, and z -> audio equal to the module's."""

import warnings

import numpy as np
import pytest
import torch
from architectures import dac
from clitools import invoke
from reference_vocoders import DAC_HPARAMS, DacDecoder, randomise

from convt_audio.model.config import load_config, parse_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_stack

NAMES = sorted(DAC_HPARAMS)


def _decoder(name, latent=1024, dim=1536):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DacDecoder(latent, dim, DAC_HPARAMS[name])


@pytest.mark.parametrize("name", NAMES)
def test_the_builtin_names_every_decoder_tensor_of_weights_pth(name):
    with torch.device("meta"):
        module = _decoder(name)
    official = {}
    for key, tensor in module.state_dict().items():
        full = f"state_dict.decoder.{key}"
        if key.endswith("weight_g"):
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
    state = {f"decoder.{k}": v for k, v in module.state_dict().items()}
    state["encoder.block.0.weight_g"] = torch.ones(64, 1, 1)  # not the decoder's: not reported unused
    torch.save({"state_dict": state, "metadata": {"kwargs": {"sample_rate": 44100}}}, tmp_path / "weights.pth")
    config = parse_config(dac(name, latent=16, dim=64))
    stack, unused = load_stack(config, tmp_path / "weights.pth", dtype=None)
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
    state = {f"decoder.{k}": v for k, v in module.state_dict().items()}
    torch.save({"state_dict": state, "metadata": {"kwargs": {"sample_rate": 44100}}}, tmp_path / "weights.pth")
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
