"""BigVGAN v2 built-ins against NVIDIA's generator (written from bigvgan.py in reference_vocoders.py):
every tensor of the official checkpoint named, and the decode equal to the module's forward."""

import warnings

import numpy as np
import pytest
import torch
from architectures import bigvgan
from clitools import invoke
from reference_vocoders import BIGVGAN_HPARAMS, BigVGAN, randomise

from convt_audio.core.errors import WeightsError
from convt_audio.model.config import load_config, parse_config
from convt_audio.model.engines import build_engine
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_params, load_stack

NAMES = sorted(BIGVGAN_HPARAMS)


def _module(name, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm, as the released checkpoints use it
        return BigVGAN(name, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_the_builtin_names_every_tensor_of_the_official_checkpoint(name):
    """The full-size module, built on the meta device: its state_dict keys and shapes are what
    the built-in config reads (weight norm's g and v for each weight) or recomputes (filters)."""
    with torch.device("meta"):
        module = _module(name)
    official = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    config = load_config(name)
    ours = {}
    for leaf, names, base in zip(config.leaves, config.tensor_names, config.bases_in(None)):
        for local, full in names.items():
            ours[full] = leaf.tensor_shapes()[local]
        for local, array in leaf.computed_tensors().items():
            ours[base + local] = array.shape
    expected = {}
    for key, shape in official.items():
        full = f"generator.{key}"
        if key.endswith(("weight_g", "weight_v")):
            full = full[: -len("_g")]  # g and v fold into the weight
            shape = official[key[: -len("_g")] + "_v"]
        expected[full] = shape
    assert set(ours) == set(expected)
    for full, shape in expected.items():
        assert tuple(n for n in ours[full] if n != 1) == tuple(n for n in shape if n != 1), full
    assert config.features.n_mels == BIGVGAN_HPARAMS[name]["num_mels"]
    assert sum(p.numel() for p in module.parameters()) > 100e6  # the real size


@pytest.mark.parametrize("name", NAMES)
def test_decodes_as_the_module_in_float64(tmp_path, name):
    """The same architecture at 1/12 of the width (128 channels first), random weights saved as
    bigvgan_generator.pt: float64 relative error <= 1e-9 at chunk 7 and at the default chunk."""
    module = randomise(_module(name, upsample_initial_channel=128), seed=5)
    checkpoint = tmp_path / "bigvgan_generator.pt"
    torch.save({"generator": module.state_dict()}, checkpoint)
    config = parse_config(bigvgan(name, initial=128))
    stack, unused = load_stack(config, checkpoint, dtype=None)
    assert unused == []
    stack = stack.to(dtype=torch.float64)
    mels = BIGVGAN_HPARAMS[name]["num_mels"]
    mel = torch.from_numpy(np.random.default_rng(1).normal(-4, 1.5, (1, mels, 19)))
    with torch.no_grad():
        want = module.double()(mel)
    assert 0.01 < float(want.std()) and float((want.abs() > 0.999).double().mean()) < 0.5  # not saturated
    engine = build_engine(config, load_params(config, checkpoint, "float64")[0], "cpu", "float64")
    for chunks in ([7], [engine.preferred_chunk()]):
        got = run_chunked(stack, mel, chunks)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= 1e-9 * float(want.abs().max())


def test_a_checkpoint_with_other_filters_is_refused(tmp_path):
    module = randomise(_module(NAMES[0], upsample_initial_channel=128), seed=5)
    state = module.state_dict()
    state["resblocks.0.activations.0.upsample.filter"] = state["resblocks.0.activations.0.upsample.filter"] * 1.1
    torch.save({"generator": state}, tmp_path / "g.pt")
    with pytest.raises(WeightsError, match=r"resblocks\.0\.activations\.0\.upsample\.filter' .* differs"):
        load_stack(parse_config(bigvgan(NAMES[0], initial=128)), tmp_path / "g.pt")


def test_info_shows_the_recipe_and_the_alias_free_rows():
    result = invoke("info", "bigvgan-v2-24khz-100band-256x")
    assert result.exit_code == 0, result.stderr
    assert "100-band log-mel at 24000 Hz: n_fft 1024, hop 256" in result.stdout
    assert "alias_free" in result.stdout and "parameters:      11" in result.stdout


def test_the_full_size_builtin_decodes_as_the_module(tmp_path):
    """bigvgan-v2-22khz-80band-256x itself (112 M parameters), random weights saved as NVIDIA's
    bigvgan_generator.pt: float64 relative error <= 1e-9 at chunk 7 and at the default chunk."""
    name = "bigvgan-v2-22khz-80band-256x"
    module = randomise(_module(name), seed=7)
    torch.save({"generator": module.state_dict()}, tmp_path / "bigvgan_generator.pt")
    module = module.double()
    config = load_config(name)
    stack, unused = load_stack(config, tmp_path / "bigvgan_generator.pt", dtype=None)
    assert unused == []
    stack = stack.to(dtype=torch.float64)
    mel = torch.from_numpy(np.random.default_rng(3).normal(-4, 1.5, (1, 80, 9)))
    with torch.no_grad():
        want = module(mel)
    del module
    assert 0.01 < float(want.std()) and float((want.abs() > 0.999).double().mean()) < 0.5  # not saturated
    engine = build_engine(
        config, load_params(config, tmp_path / "bigvgan_generator.pt", "float64")[0], "cpu", "float64"
    )
    for chunks in ([7], [engine.preferred_chunk()]):
        got = run_chunked(stack, mel, chunks)
        assert got.shape == want.shape == (1, 1, 9 * 256)
        assert float((got - want).abs().max()) <= 1e-9 * float(want.abs().max())
