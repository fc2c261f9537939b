"""Engines: which one runs a config, and each one's streams against the whole-signal forward."""

import numpy as np
import pytest
import torch
from helpers import stream_chunks

from convt_audio.core.errors import DeviceError, InputTooShortError
from convt_audio.model.config import load_config, parse_config
from convt_audio.model.engines import TorchEngine, TorchStream, build_engine
from convt_audio.model.weights import load_params
from convt_audio.resampling.chain import ResamplerChain

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DECODER = {
    "layers": [
        {
            "type": "conv1d",
            "in_channels": 2,
            "out_channels": 16,
            "kernel_size": 5,
            "padding": 2,
            "padding_mode": "circular",
        },
        {
            "type": "conv_transpose1d",
            "in_channels": 16,
            "out_channels": 8,
            "kernel_size": 16,
            "stride": 8,
            "padding": 4,
            "padding_mode": "reflect",
        },
        {"type": "snake", "channels": 8},
        {
            "type": "conv_transpose1d",
            "in_channels": 8,
            "out_channels": 4,
            "kernel_size": 4,
            "stride": 2,
            "padding": 1,
            "groups": 2,
            "output_padding": 1,
        },
        {"type": "gelu"},
        {
            "type": "conv1d",
            "in_channels": 4,
            "out_channels": 1,
            "kernel_size": 7,
            "padding": 3,
            "padding_mode": "replicate",
        },
        {"type": "tanh"},
    ]
}


def decoder_params(seed=0):
    config = parse_config(DECODER)
    from convt_audio.model.stack import Stack

    stack = Stack.initialised(config.layers, seed)
    params = [{k: v.numpy() for k, v in p.items()} for p in stack.params]
    params[2]["alpha"] = np.full((1, 8, 1), 0.7, dtype=np.float32)
    return config, params


def run(engine, x, sizes, batch=1, tail=None, **kw):
    stream = TorchStream(engine, batch, tail, **kw) if kw else engine.open_stream(batch, tail)
    return stream_chunks(stream, x, sizes)


def whole(config, params, x, dtype=torch.float64):
    from convt_audio.model.stack import Stack

    stack = Stack(config.layers, [{k: torch.from_numpy(v).to(dtype) for k, v in p.items()} for p in params])
    return stack.forward(torch.from_numpy(x).to(dtype)).numpy()


def test_engine_choice():
    sinc = load_config("sinc-x3")
    params, _ = load_params(sinc)
    engine = build_engine(sinc, params, "cpu")
    assert isinstance(engine, ResamplerChain) and engine.kernels() == ["spectral"]  # alias-free: one FFT pair
    assert build_engine(sinc, params, "cpu", "float64").kernels() == ["fft"]  # 212 taps per phase: by FFT
    assert isinstance(build_engine(sinc, params, "cpu", "float16"), TorchEngine)
    assert isinstance(build_engine(sinc, params, "cpu", kernel="transposed"), TorchEngine)
    config, dparams = decoder_params()
    assert isinstance(build_engine(config, dparams, "cpu"), TorchEngine)
    with pytest.raises(DeviceError, match="kernel numpy: needs a one-channel conv_transpose1d"):
        build_engine(config, dparams, "cpu", kernel="numpy")
    with pytest.raises(DeviceError, match="dtype: 'float8' is not one of"):
        build_engine(sinc, params, "cpu", "float8")
    with pytest.raises(DeviceError, match="device: 'gpu' is not one of auto, cpu, cuda, cuda:N"):
        build_engine(sinc, params, "gpu")
    with pytest.raises(DeviceError, match="device: 'cuda:x'"):
        build_engine(sinc, params, "cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_is_an_error_not_a_fallback():
    sinc = load_config("sinc-x3")
    with pytest.raises(DeviceError, match="device='cuda': CUDA is not available"):
        build_engine(sinc, load_params(sinc)[0], "cuda")


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("sizes", [[1], [7], [4096], [3, 50, 1]])
def test_torch_engine_streams_exactly(sizes, overlap):
    config, params = decoder_params()
    engine = build_engine(config, params, "cpu", "float64")
    x = np.random.default_rng(0).standard_normal((1, 2, 300))
    tail = x[..., -engine.leading_circular_frames() :]
    got = run(engine, x, sizes, tail=tail, overlap=overlap)
    want = whole(config, params, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_conv1d_weights_are_stored_in_the_layout_their_streams_take(dtype):
    """On the CPU in float32 and bfloat16 a conv1d weight is built channels-last, which is what
    its streams convolve with: opening streams copies no weight (it used to copy each one then,
    holding every weight twice for a moment and leaving the freed originals in the heap).
    float64, which oneDNN does not run, stays as stored."""
    config, params = decoder_params()
    engine = TorchEngine.build(config, params, device="cpu", dtype=dtype)
    convolutions = [p for leaf, p in zip(engine.stack.leaves, engine.stack.params) if leaf.type == "conv1d"]
    frames_last = dtype != "float64"
    for layer in convolutions:
        weight = layer["weight"]
        assert weight.unsqueeze(2).is_contiguous(memory_format=torch.channels_last) == frames_last
        assert weight.is_contiguous() != frames_last
    stored = [layer["weight"].data_ptr() for layer in convolutions]
    x = np.random.default_rng(0).standard_normal((1, 2, 300)).astype(np.float32)
    y = run(engine, x, [7, 100])
    assert [layer["weight"].data_ptr() for layer in convolutions] == stored
    tolerance = {"float32": 1e-5, "bfloat16": 5e-2, "float64": 1e-9}[dtype]
    want = whole(config, params, x)
    assert np.abs(y - want).max() <= tolerance * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_a_polyphase_transposed_weight_is_held_once(dtype):
    """On the CPU in float32 and bfloat16 a conv_transpose1d that streams as polyphase keeps that
    form alone: the original beside it was 97 MB of DAC 44 kHz's decoder. One that streams
    transposed (8 → 4 channels in 2 groups), every layer under ``kernel="transposed"``, and
    float64 (which oneDNN does not run) keep the weight as stored. Streams and the engine
    stack's whole-signal forward (which reads the original back) still give the stack's output."""
    config, params = decoder_params()
    engine = TorchEngine.build(config, params, device="cpu", dtype=dtype)
    first, second = [p for leaf, p in zip(engine.stack.leaves, engine.stack.params) if leaf.type == "conv_transpose1d"]
    assert set(first) == ({"polyphase", "bias"} if dtype != "float64" else {"weight", "bias"})
    assert set(second) == {"weight", "bias"}
    transposed = TorchEngine.build(config, params, device="cpu", dtype=dtype, kernel="transposed")
    assert all("polyphase" not in p for p in transposed.stack.params)
    x = np.random.default_rng(3).standard_normal((1, 2, 300)).astype(np.float32)
    want = whole(config, params, x)
    tolerance = {"float32": 1e-5, "bfloat16": 5e-2, "float64": 1e-9}[dtype] * max(1.0, np.abs(want).max())
    for built in (engine, transposed):
        got = run(built, x, [7, 100], tail=x[..., -built.leading_circular_frames() :])
        assert np.abs(got - want).max() <= tolerance
    forward = engine.stack.forward(torch.from_numpy(x).to(getattr(torch, dtype))).double().numpy()
    assert np.abs(forward - want).max() <= tolerance


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("float16", 2e-2), ("bfloat16", 5e-2)])
def test_dtypes_on_cpu(dtype, tolerance):
    config, params = decoder_params()
    engine = build_engine(config, params, "cpu", dtype)
    x = np.random.default_rng(1).standard_normal((1, 2, 200)).astype(np.float32)
    got = run(engine, x, [64], tail=x[..., -engine.leading_circular_frames() :])
    want = whole(config, params, x)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= tolerance * max(1.0, np.abs(want).max())


def test_deterministic_flag_turns_on_torchs_deterministic_algorithms():
    config, params = decoder_params()
    x = np.random.default_rng(2).standard_normal((1, 2, 100)).astype(np.float32)
    free = run(build_engine(config, params, "cpu", "float32"), x, [17], tail=x[..., -2:])
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        engine = build_engine(config, params, "cpu", "float32", deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        np.testing.assert_allclose(run(engine, x, [17], tail=x[..., -2:]), free, rtol=1e-5, atol=1e-6)
    finally:
        torch.use_deterministic_algorithms(False)


def test_a_cpu_model_leaves_the_processs_tf32_flags_alone():
    """A model on the CPU does not turn TF32 off for the process: a training script that loads a
    CPU vocoder to listen to its samples keeps its GPU's TF32 products (only a CUDA model turns
    them off, for exact float32)."""
    config, params = decoder_params()
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = [flag.allow_tf32 for flag in flags]
    try:
        for flag in flags:
            flag.allow_tf32 = True
        build_engine(config, params, "cpu", "float32")
        assert [flag.allow_tf32 for flag in flags] == [True, True]
    finally:
        for flag, value in zip(flags, saved):
            flag.allow_tf32 = value


def test_too_short_through_an_engine():
    config, params = decoder_params()
    engine = build_engine(config, params, "cpu")
    stream = engine.open_stream(1, np.zeros((1, 2, 0), np.float32))
    with pytest.raises(InputTooShortError):
        stream.flush()


def test_preferred_chunks():
    config, params = decoder_params()
    # widest activation per input frame: 8 channels × 8 = 4 × 16 = 64 -> 2^17 / 64 frames
    assert build_engine(config, params, "cpu").preferred_chunk() == 2048
    hifigan = load_config("hifigan-v1")  # widest 32 channels × 256: 2^17 / 8192 = 16, at least 64
    assert build_engine(hifigan, [{k: np.zeros(v, np.float32) for k, v in leaf.tensor_shapes().items()}
                                  for leaf in hifigan.leaves], "cpu").preferred_chunk() == 64  # fmt: skip
    sinc = load_config("sinc-x3")
    engine = build_engine(sinc, load_params(sinc)[0], "cpu")
    assert engine.preferred_chunk() % engine.stages[0].step == 0  # whole FFT windows


@cuda
@pytest.mark.parametrize("sizes", [[1, 7], [4096]])
def test_cuda_stream_equals_cpu(sizes):
    config, params = decoder_params()
    x = np.random.default_rng(3).standard_normal((1, 2, 5000)).astype(np.float32)
    tail = x[..., -2:]
    gpu = run(build_engine(config, params, "cuda", "float32"), x, sizes, tail=tail)
    cpu = run(build_engine(config, params, "cpu", "float32"), x, sizes, tail=tail)
    assert gpu.shape == cpu.shape
    assert np.abs(gpu - cpu).max() <= 1e-5 * max(1.0, np.abs(cpu).max())


@cuda
@pytest.mark.parametrize("dtype,tolerance", [("float16", 2e-2), ("bfloat16", 5e-2), ("float64", 1e-9)])
def test_cuda_dtypes(dtype, tolerance):
    config, params = decoder_params()
    x = np.random.default_rng(4).standard_normal((1, 2, 3000)).astype(np.float32)
    got = run(build_engine(config, params, "cuda", dtype), x, [512], tail=x[..., -2:])
    want = whole(config, params, x)
    assert np.abs(got - want).max() <= tolerance * max(1.0, np.abs(want).max())


@cuda
def test_cuda_deterministic_repeats_exactly():
    config, params = decoder_params()
    x = np.random.default_rng(5).standard_normal((1, 2, 3000)).astype(np.float32)
    try:
        engine = build_engine(config, params, "cuda", "float32", deterministic=True)
        np.testing.assert_array_equal(run(engine, x, [256], tail=x[..., -2:]), run(engine, x, [256], tail=x[..., -2:]))
    finally:
        torch.use_deterministic_algorithms(False)


@cuda
def test_cuda_run_command(tmp_path):
    import soundfile as sf
    from typer.testing import CliRunner

    from cli.main import app

    sf.write(str(tmp_path / "a.wav"), np.random.default_rng(6).standard_normal(8000) * 0.1, 16000)
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "a.wav"),
            "-c",
            "sinc-x3",
            "--device",
            "cuda",
            "-o",
            str(tmp_path / "g.wav"),
            "--subtype",
            "FLOAT",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "a.wav"),
            "-c",
            "sinc-x3",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "c.wav"),
            "--subtype",
            "FLOAT",
        ],
    )
    g, c = sf.read(str(tmp_path / "g.wav"))[0], sf.read(str(tmp_path / "c.wav"))[0]
    assert g.shape == c.shape and np.abs(g - c).max() <= 1e-5
