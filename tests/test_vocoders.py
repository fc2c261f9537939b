"""Published generators: the built-in configs against plain PyTorch modules of the official code.

Each reference module gets random weights (weight_norm applied) and is saved in its official
checkpoint layout; ``convt-audio run`` on a random mel must give the module's own forward.
"""

import json
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import invoke
from helpers import one_thread
from reference_vocoders import HifiGanGenerator, MelGanGenerator, randomise

from convt_audio.model.config import load_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_stack


def _mel(frames: int, seed: int = 0) -> np.ndarray:
    """A log-mel-like (80, frames) float32 array: smooth over time, values around −11…2."""
    rng = np.random.default_rng(seed)
    base = rng.normal(-5.0, 2.0, size=(80, frames)).astype(np.float32)
    return np.cumsum(base * 0.2, axis=1, dtype=np.float32) / np.sqrt(np.arange(1, frames + 1, dtype=np.float32)) - 4


def _module(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated, still what checkpoints use
        if name.startswith("hifigan"):
            return randomise(HifiGanGenerator(name.split("-")[1]), seed=1)
        return randomise(MelGanGenerator(), seed=1)


def _checkpoint(tmp_path, name, module):
    if name.startswith("hifigan"):
        path = tmp_path / "g_00000042"  # the authors' trainer names them so, with no extension
        torch.save({"generator": module.state_dict()}, path)
    else:
        path = tmp_path / "best_netG.pt"
        torch.save(module.state_dict(), path)
    return path


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    bound = 1e-5 * max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(actual - expected).max()) <= bound
    assert 0.01 < float(np.abs(expected).std()) and float(np.mean(np.abs(expected) > 0.999)) < 0.5  # not saturated


@pytest.mark.parametrize("name,frames", [("hifigan-v1", 23), ("hifigan-v2", 61), ("hifigan-v3", 57), ("melgan", 64)])
def test_run_equals_the_official_module(tmp_path, name, frames):
    module = _module(name)
    checkpoint = _checkpoint(tmp_path, name, module)
    mel = _mel(frames)
    np.save(tmp_path / "mel.npy", mel)
    with torch.no_grad():
        expected = module(torch.from_numpy(mel)[None]).numpy()[0]
    result = invoke(
        "run",
        tmp_path / "mel.npy",
        "-c",
        name,
        "-w",
        checkpoint,
        "-o",
        tmp_path / "out.wav",
        "--subtype",
        "FLOAT",
        "--chunk",
        7,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output_rate"] == 22050 and report["input_rate"] == pytest.approx(22050 / 256)
    assert report["frames_out"] == frames * 256
    audio, rate = sf.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    assert rate == 22050
    _close(audio.T, expected)


@pytest.mark.parametrize("name", ["hifigan-v1", "hifigan-v2", "hifigan-v3", "melgan"])
def test_streaming_at_irregular_chunks_equals_the_official_module(tmp_path, name):
    module = _module(name)
    checkpoint = _checkpoint(tmp_path, name, module)
    stack, unused = load_stack(load_config(name), checkpoint)
    assert unused == []
    mel = torch.from_numpy(_mel(45, seed=3))[None]
    with torch.no_grad():
        expected = module(mel).numpy()
    for chunks in ([1], [3, 1, 8], [45]):
        _close(run_chunked(stack, mel, chunks).numpy(), expected)


def test_one_thread_streams_take_winograds_path_and_equal_the_official_module(tmp_path):
    """On one thread (a file's halves, a live stream) HiFi-GAN V1's resblock layers with kernels
    7 and 11 and 64 or 128 channels run as Winograd's tiled product once a chunk gives 256 outputs:
    the same output as the authors' module within the contract's tolerance, live pushes of 8
    frames and whole chunks alike."""
    from convt_audio.kinds import conv_torch

    module = _module("hifigan-v1")
    stack, _ = load_stack(load_config("hifigan-v1"), _checkpoint(tmp_path, "hifigan-v1", module))
    mel = torch.from_numpy(_mel(45, seed=4))[None]
    with torch.no_grad():
        expected = module(mel).numpy()
    with one_thread():
        for chunks in ([8], [45], [3, 17]):
            _close(run_chunked(stack, mel, chunks).numpy(), expected)
    kernels = []
    for leaf, params in zip(stack.leaves, stack.params):
        if leaf.type != "conv1d":
            continue
        weight4 = conv_torch.derived(params["weight"], "channels_last", conv_torch.channels_last_weight)
        if conv_torch.derived(weight4, "winograd", lambda _: None) is not None:
            kernels.append((leaf.in_channels, leaf.kernel_size))
    # kernels 7 and 11, 3 dilations x 2 convolutions, in the stages of 128 and 64 channels (256:
    # weights past WINOGRAD_MAX_WEIGHTS)
    assert sorted(kernels) == sorted((c, k) for c in (64, 128) for k in (7, 11) for _ in range(6))


def test_a_vocoder_then_a_rate_is_one_stream(tmp_path):
    """-c hifigan-v2 -r 48000: the vocoder's 22050 Hz resampled in the same run, the same samples
    as the vocoder's run piped into run -r."""
    module = _module("hifigan-v2")
    checkpoint = _checkpoint(tmp_path, "hifigan-v2", module)
    np.save(tmp_path / "mel.npy", _mel(30))
    common = ["-c", "hifigan-v2", "-w", checkpoint, "--subtype", "FLOAT"]
    result = invoke("run", tmp_path / "mel.npy", *common, "-r", "48k", "-o", tmp_path / "48.wav", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output_rate"] == 48000 and report["engine"] == "torch+numpy-resampler"
    assert report["frames_out"] == -(-30 * 256 * 48000 // 22050)
    assert invoke("run", tmp_path / "mel.npy", *common, "-o", tmp_path / "22.wav").exit_code == 0
    assert invoke("run", tmp_path / "22.wav", "-r", "48000", "-o", tmp_path / "piped.wav").exit_code == 0
    assert np.array_equal(sf.read(str(tmp_path / "48.wav"))[0], sf.read(str(tmp_path / "piped.wav"))[0])


def test_a_folder_of_mels_batches_and_needs_no_rate(tmp_path):
    module = _module("hifigan-v3")
    checkpoint = _checkpoint(tmp_path, "hifigan-v3", module)
    (tmp_path / "mels" / "sub").mkdir(parents=True)
    np.save(tmp_path / "mels" / "a.npy", _mel(20, 1))
    np.save(tmp_path / "mels" / "sub" / "b.npy", _mel(33, 2)[None])  # (1, 80, frames) as mel functions return
    result = invoke(
        "run", tmp_path / "mels", "--recursive", "-c", "hifigan-v3", "-w", checkpoint, "-o", tmp_path / "wavs", "--json"
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "wavs").as_posix() for p in (tmp_path / "wavs").rglob("*.wav")) == [
        "a.wav",
        "sub/b.wav",
    ]
    assert sf.info(str(tmp_path / "wavs" / "sub" / "b.wav")).frames == 33 * 256


def test_fractional_input_rate_and_its_check(tmp_path):
    module = _module("hifigan-v3")
    checkpoint = _checkpoint(tmp_path, "hifigan-v3", module)
    np.save(tmp_path / "m.npy", _mel(12))
    for rate in ("86.1328125", "22050/256", "86.13"):
        result = invoke(
            "run",
            tmp_path / "m.npy",
            "-c",
            "hifigan-v3",
            "-w",
            checkpoint,
            "--input-rate",
            rate,
            "-o",
            tmp_path / "o.wav",
            "--overwrite",
        )
        assert result.exit_code == 0, result.output
    result = invoke(
        "run", tmp_path / "m.npy", "-c", "hifigan-v3", "-w", checkpoint, "--input-rate", 100, "-o", tmp_path / "p.wav"
    )
    assert result.exit_code == 2  # the user's own --input-rate, refused before any file runs
    assert "--input-rate 100: input rate 100 Hz × 256 = 25600 Hz, but" in result.stderr and "22050 Hz" in result.stderr
    assert not (tmp_path / "p.wav").exists()
    result = invoke("run", tmp_path / "m.npy", "-c", "hifigan-v3", "-w", checkpoint, "--input-rate", "fast")
    assert result.exit_code == 2 and "--input-rate: 'fast' is not a rate in Hz" in result.stderr


@pytest.mark.parametrize(
    "case,code,message",
    [
        (
            "no_weights",
            2,
            "hifigan-v1: this built-in architecture ships without weights; pass the trained "
            "generator's checkpoint with -w CHECKPOINT",
        ),
        ("transposed", 1, "looks like (frames, channels)"),
        ("wrong_model", 2, "missing tensor 'generator.conv_pre.weight'"),
        # HiFi-GAN's release puts do_ (discriminators, optimisers) beside g_: which one was given
        ("discriminators", 2, "expected shape (512, 80, 7); the file holds 2 tensors under 'mpd', 'msd'"),
    ],
)
def test_vocoder_bad_inputs(tmp_path, case, code, message):
    mel = _mel(16)
    args = ["run", tmp_path / "mel.npy", "-c", "hifigan-v1", "-o", tmp_path / "out.wav"]
    if case == "transposed":
        mel = mel.T.copy()
        module = _module("hifigan-v2")
        args[3] = "hifigan-v2"
        args += ["-w", _checkpoint(tmp_path, "hifigan-v2", module)]
    elif case == "wrong_model":
        args += ["-w", _checkpoint(tmp_path, "melgan", _module("melgan"))]
    elif case == "discriminators":
        layer = {"discriminators.0.convs.0.weight": torch.randn(4, 1, 5, 1)}
        torch.save(
            {"mpd": layer, "msd": {"discriminators.0.convs.0.weight": torch.randn(4, 1, 15)}, "steps": 9},
            tmp_path / "do",
        )
        args += ["-w", tmp_path / "do"]
    np.save(tmp_path / "mel.npy", mel)
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.wav").exists()


def test_info_shows_the_generator_tree_and_checks_a_checkpoint(tmp_path):
    result = invoke("info", "hifigan-v2", "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["input_rate"] == 22050 / 256 and facts["output_rate"] == 22050 and facts["rate_factor"] == 256
    assert facts["parameters"] == 925985  # the paper's V2: 0.92 M
    types = [row["type"] for row in facts["layers"]]
    assert types.count("parallel") == 4 and types.count("residual") == 4 * 3 * 3
    nested = [row for row in facts["layers"] if row["depth"] == 2]
    assert nested[0]["path"] == "layers[3].branches[0][0].layers[0]"
    checkpoint = _checkpoint(tmp_path, "hifigan-v2", _module("hifigan-v2"))
    result = invoke("info", "hifigan-v2", "-w", checkpoint, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["weights_status"] == "ok"
    assert invoke("info", "hifigan-v1", "-w", checkpoint).exit_code == 2  # V2's shapes are not V1's


def test_shipped_architecture_configs_are_the_generated_ones(tmp_path):
    from architectures import write_configs

    from convt_audio.model.config import builtin_configs

    shipped = builtin_configs()
    for path in write_configs(tmp_path):
        assert path.read_text() == shipped[path.stem].read_text(), f"regenerate configs/{path.name}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_vocoder_equals_the_module(tmp_path):
    module = _module("hifigan-v2")
    checkpoint = _checkpoint(tmp_path, "hifigan-v2", module)
    mel = _mel(200)
    np.save(tmp_path / "mel.npy", mel)
    with torch.no_grad():
        expected = module(torch.from_numpy(mel)[None]).numpy()[0]
    result = invoke(
        "run",
        tmp_path / "mel.npy",
        "-c",
        "hifigan-v2",
        "-w",
        checkpoint,
        "--device",
        "cuda",
        "-o",
        tmp_path / "g.wav",
        "--subtype",
        "FLOAT",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["device"].startswith("cuda")
    _close(sf.read(str(tmp_path / "g.wav"), dtype="float32", always_2d=True)[0].T, expected)


@pytest.mark.parametrize("name", ["hifigan-v1", "hifigan-v3"])
def test_a_parallel_wavegan_trainer_checkpoint_loads_into_the_builtin(tmp_path, name):
    """checkpoint-*steps.pkl of parallel-wavegan's trainer ({"model": {"generator", ...}, "optimizer",
    "steps"}): recognised by its names, decoded as its own HiFiGANGenerator decodes, named by info -w."""
    from reference_vocoders import HIFIGAN_HPARAMS, PwgHiFiGANGenerator

    h = HIFIGAN_HPARAMS[name.split("-")[1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = randomise(
            PwgHiFiGANGenerator(
                channels=h["upsample_initial_channel"],
                upsample_scales=h["upsample_rates"],
                upsample_kernel_sizes=h["upsample_kernel_sizes"],
                resblock_kernel_sizes=h["resblock_kernel_sizes"],
                resblock_dilations=h["resblock_dilation_sizes"],
                use_additional_convs=h["resblock"] == "1",
            ),
            seed=4,
        )
    checkpoint = tmp_path / "checkpoint-400000steps.pkl"
    torch.save(
        {"model": {"generator": module.state_dict(), "discriminator": {}}, "optimizer": {}, "steps": 400000},
        checkpoint,
    )
    stack, unused = load_stack(load_config(name), checkpoint, dtype=None)
    assert unused == ["steps"] or unused == []
    mel = torch.from_numpy(_mel(17, seed=2))[None]
    with torch.no_grad():
        expected = module.double()(mel.double()).numpy()
    for chunks in ([7], [32]):  # 32: the default chunk of a HiFi-GAN-sized stack
        got = run_chunked(stack.to(dtype=torch.float64), mel.double(), chunks).numpy()
        assert float(np.abs(got - expected).max()) <= 1e-9 * float(np.abs(expected).max())
    result = invoke("info", name, "-w", checkpoint)
    assert result.exit_code == 0, result.stderr
    assert "layout parallel-wavegan" in result.stdout


@pytest.mark.parametrize("name", ["pwg-melgan", "pwg-multiband-melgan"])
def test_parallel_wavegan_melgans_decode_as_their_trainer_generator(tmp_path, name):
    """parallel-wavegan's MelGANGenerator (+ PQMF synthesis for multi-band), reduced width, random
    weights in a trainer checkpoint: float64 relative error <= 1e-9 at chunk 7 and the default chunk."""
    from architectures import PWG_MELGAN, pwg_melgan
    from reference_vocoders import PQMF, PwgMelGANGenerator

    from convt_audio.model.config import parse_config
    from convt_audio.model.engines import build_engine
    from convt_audio.model.weights import load_params

    width, scales, stacks, subbands = PWG_MELGAN[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = randomise(PwgMelGANGenerator(out_channels=subbands, channels=64, upsample_scales=scales,
                                              stacks=stacks), seed=3)  # fmt: skip
    pqmf = PQMF(subbands).double() if subbands > 1 else None
    checkpoint = tmp_path / "checkpoint-1000000steps.pkl"
    torch.save({"model": {"generator": module.state_dict()}, "steps": 1000000}, checkpoint)
    config = parse_config(pwg_melgan(name, channels=64))
    stack, unused = load_stack(config, checkpoint, dtype=None)
    assert unused == []
    mel = torch.from_numpy(_mel(21, seed=4)).double()[None]
    with torch.no_grad():
        want = module.double()(mel)
        if pqmf is not None:
            want = pqmf.synthesis(want)
    engine = build_engine(config, load_params(config, checkpoint, "float64")[0], "cpu", "float64")
    stack = stack.to(dtype=torch.float64)
    for chunks in ([7], [engine.preferred_chunk()]):
        got = run_chunked(stack, mel, chunks)
        assert got.shape == want.shape == (1, 1, 21 * 256)
        assert float((got - want).abs().max()) <= 1e-9 * float(want.abs().max())


@pytest.mark.parametrize("name", ["pwg-melgan", "pwg-multiband-melgan"])
def test_parallel_wavegan_builtins_name_every_generator_tensor(name):
    from architectures import PWG_MELGAN
    from reference_vocoders import PwgMelGANGenerator

    width, scales, stacks, subbands = PWG_MELGAN[name]
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        module = PwgMelGANGenerator(out_channels=subbands, channels=width, upsample_scales=scales, stacks=stacks)
    official = {}
    for key, tensor in module.state_dict().items():
        if key.endswith("weight_g"):
            continue
        official[f"model.generator.{key.removesuffix('_v')}"] = tuple(tensor.shape)
    config = load_config(name)
    ours = {full: leaf.tensor_shapes()[local] for leaf, names in zip(config.leaves, config.tensor_names)
            for local, full in names.items()}  # fmt: skip
    assert ours == official
