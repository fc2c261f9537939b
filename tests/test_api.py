"""The Python API: resample, load (whole arrays and live streams), convert — and the README's
Python examples, run as they are written."""

import re

import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import invoke, tone

import convt_audio
from convt_audio.core.errors import AudioError, ConvtAudioError, UsageError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVT_AUDIO_CACHE", str(tmp_path / "cache"))


def test_resample_gives_the_samples_run_r_writes(tmp_path):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal((44100 * 3, 2))).astype(np.float32)
    sf.write(str(tmp_path / "a.wav"), x, 44100, subtype="FLOAT")
    assert invoke("run", tmp_path / "a.wav", "-r", "48k", "-o", tmp_path / "b.wav").exit_code == 0
    y = convt_audio.resample(x, 44100, 48000)
    assert y.dtype == np.float32 and y.shape == (48000 * 3, 2)
    np.testing.assert_array_equal(y, sf.read(str(tmp_path / "b.wav"), dtype="float32")[0])


def test_resample_layouts_and_dtypes():
    x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    mono = convt_audio.resample(x, 16000, "48k")
    assert mono.dtype == np.float64 and mono.shape == (48000,)  # float64 stays float64
    stereo = convt_audio.resample(np.stack([x, -x], 1), 16000, 48000)
    np.testing.assert_array_equal(stereo[:, 0], mono)
    np.testing.assert_array_equal(stereo[:, 1], -mono)
    first = convt_audio.resample(np.stack([x, -x]), 16000, 48000, axis=1)  # (channels, frames)
    np.testing.assert_array_equal(first, stereo.T)
    assert convt_audio.resample(torch.from_numpy(x).float(), 16000, 44100).shape == (44100,)
    np.testing.assert_array_equal(convt_audio.resample(x, 16000, 16000), x)
    for bad, message in (([np.nan, 1.0], "x: holds NaN or Inf values"), (np.zeros(0), "x: has no frames")):
        with pytest.raises(UsageError, match=re.escape(message)):
            convt_audio.resample(np.asarray(bad), 16000, 48000)
    with pytest.raises(UsageError, match="sr_out"):
        convt_audio.resample(x, 16000, "fast")


def test_a_masked_array_is_refused_where_it_masks_and_read_where_it_does_not():
    """np.asarray reads the values under a mask: a gap filled with whatever was there."""
    x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    gapped = np.ma.masked_array(x, mask=np.arange(x.size) % 1000 == 0)
    gapped.data[gapped.mask] = 1e3  # what a gap can hold
    with pytest.raises(UsageError, match=re.escape("x: a masked array with 16 masked values; fill them first")):
        convt_audio.resample(gapped, 16000, 48000)
    whole = np.ma.masked_array(x, mask=np.zeros(x.size, bool))
    np.testing.assert_array_equal(convt_audio.resample(whole, 16000, 48000), convt_audio.resample(x, 16000, 48000))


def _decoder(tmp_path):
    config = tmp_path / "dec.yaml"
    config.write_text(
        "layers:\n"
        "- {type: conv1d, in_channels: 4, out_channels: 8, kernel_size: 5, padding: 2}\n"
        "- {type: leaky_relu, negative_slope: 0.1}\n"
        "- {type: conv_transpose1d, in_channels: 8, out_channels: 4, kernel_size: 8, stride: 4, padding: 2}\n"
        "- type: residual\n"
        "  layers:\n"
        "  - {type: conv1d, in_channels: 4, out_channels: 4, kernel_size: 3, dilation: 3, padding: 3}\n"
        "- {type: conv1d, in_channels: 4, out_channels: 1, kernel_size: 7, padding: 3}\n"
        "- {type: tanh}\n"
    )
    assert invoke("init", config, "-o", tmp_path / "w.safetensors").exit_code == 0
    return config, tmp_path / "w.safetensors"


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_a_stream_fed_random_chunks_equals_the_whole_array(tmp_path, kind):
    config, weights = _decoder(tmp_path)
    model = convt_audio.load(config, weights, device="cpu", dtype="float64")
    x = np.random.default_rng(1).standard_normal((2, 4, 301))  # (batch, channels, frames)
    x = torch.from_numpy(x) if kind == "torch" else x
    whole = model(x)
    assert type(whole) is type(x) and tuple(whole.shape) == (2, 1, model.output_frames(301))
    stream = model.stream()
    sizes = np.random.default_rng(2).integers(1, 40, 100)
    parts, start = [], 0
    for size in sizes:
        if start >= 301:
            break
        parts.append(stream.push(x[..., start : start + size]))
        start += size
    parts.append(stream.flush())
    joined = torch.cat(parts, -1) if kind == "torch" else np.concatenate(parts, -1)
    np.testing.assert_allclose(np.asarray(joined), np.asarray(whole), atol=1e-12)
    stream.reset()  # a new signal: (channels, frames) this time
    single = np.concatenate([np.asarray(stream.push(np.asarray(x[0])[..., :150])), np.asarray(stream.flush())], -1)
    np.testing.assert_allclose(single, np.asarray(model(np.asarray(x[0])[..., :150])), atol=1e-12)
    with pytest.raises(UsageError, match=r"has 3 channels; dec takes 4 \(arrays are \(channels, frames\).*\)$"):
        model(np.zeros((3, 50)))
    with pytest.raises(UsageError, match=r"has 50 channels.*shape \(50, 4\) looks like \(frames, channels\), pass x.T"):
        model(np.zeros((50, 4)))  # a feature array saved frames first


def test_a_live_stream_hands_out_each_pushs_frames_at_once(tmp_path, monkeypatch):
    """On CUDA a file's stream hands each block's frames out one block late, so that their copy
    to the host runs while the next block computes. ``model.stream()`` must not: a live caller
    is waiting for those frames, and one push late is one push of latency (8 mel frames: 93 ms).
    Here the CPU's streams are made to hold frames back as CUDA's do."""
    from convt_audio.model.engines import TorchStream

    original = TorchStream.__init__

    def as_on_cuda(self, engine, batch, tail, overlap=None):
        original(self, engine, batch, tail, True if overlap is None else overlap)

    monkeypatch.setattr(TorchStream, "__init__", as_on_cuda)
    config, weights = _decoder(tmp_path)
    model = convt_audio.load(config, weights, device="cpu", dtype="float64")
    x = np.random.default_rng(3).standard_normal((4, 120))
    sizes = [7, 1, 16, 3, 30, 2, 61]
    held = model.engine.open_stream(1)  # a file's stream, as on CUDA: this push's frames held back
    assert held.push(x[None, :, :40]).shape[-1] == 0
    plain = TorchStream(model.engine, 1, None, overlap=False)
    for stream in (model.stream(), model.stream(graphs=True)):
        parts, at = [], 0
        for size in sizes:
            part = stream.push(x[:, at : at + size])
            assert part.shape[-1] == plain.push(x[None, :, at : at + size]).shape[-1], (size, at)
            parts.append(part)
            at += size
        parts.append(stream.flush())
        np.testing.assert_allclose(np.concatenate(parts, -1), model(x), atol=1e-12)
        plain.reset()
    # a config then a second stack (`run -c … -r …`'s engine): its live stream holds nothing back either
    from convt_audio.model.engines import ChainedEngine

    (tmp_path / "up.yaml").write_text(
        "layers:\n- {type: conv_transpose1d, in_channels: 1, out_channels: 1, kernel_size: 6, stride: 2, padding: 2}\n"
        "- {type: tanh}\n"  # not a resampler's stack: the torch engine runs it
    )
    assert invoke("init", tmp_path / "up.yaml", "-o", tmp_path / "up.safetensors").exit_code == 0
    second = convt_audio.load(tmp_path / "up.yaml", tmp_path / "up.safetensors", device="cpu", dtype="float64").engine
    chained = ChainedEngine(model.engine, second, ())
    plain = [TorchStream(engine, 1, None, False) for engine in (model.engine, second)]
    streams = {"held": chained.open_stream(1), "live": chained.open_live_stream(1)}
    lengths: dict = {"held": [], "live": [], "want": []}
    for at in range(0, 120, 10):
        chunk = x[None, :, at : at + 10]
        lengths["want"].append(plain[1].push(plain[0].push(chunk)).shape[-1])
        for name, stream in streams.items():
            lengths[name].append(stream.push(chunk).shape[-1])
    assert lengths["live"] == lengths["want"] and lengths["held"] != lengths["want"]


def test_load_picks_the_engine_the_command_line_picks():
    assert convt_audio.load("sinc-x3", device="cpu").engine.name == "numpy-resampler"
    assert convt_audio.load("sinc-x3", device="cpu", dtype="bfloat16").engine.name == "torch"


def test_convert_keeps_every_guarantee_of_run(tmp_path):
    tone(tmp_path / "a.wav", rate=44100)
    record = convt_audio.convert(tmp_path / "a.wav", tmp_path / "b.flac", rate=48000)
    assert record.status == "ok" and record.output_rate == 48000 and record.frames_out == 24000
    assert record.as_dict()["frames_out"] == 24000 and "reason" not in record.as_dict()
    assert sf.info(str(tmp_path / "b.flac")).samplerate == 48000
    with pytest.raises(AudioError, match="already exists"):
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "b.flac", rate=48000)
    assert convt_audio.convert(tmp_path / "a.wav", tmp_path / "b.flac", rate=48000, skip_existing=True).as_dict() == {
        "input": str(tmp_path / "a.wav"),
        "output": str(tmp_path / "b.flac"),
        "status": "skipped",
        "reason": "output exists",
    }
    before = (tmp_path / "a.wav").read_bytes()
    with pytest.raises(UsageError, match="an input is never overwritten"):
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "a.wav", rate=48000, overwrite=True)
    assert (tmp_path / "a.wav").read_bytes() == before
    with pytest.raises(UsageError, match=re.escape("rate: resampling goes up to 6144000 Hz")) as refused:
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "c.wav", rate=10**9)  # the bound run -r has
    assert "target_rate" not in str(refused.value)  # the parameter the caller knows: rate=
    with pytest.raises(ConvtAudioError, match=r"^rate: 'abc' is not a rate in Hz"):
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "c.wav", rate="abc")
    # a word where a flag goes is refused: overwrite="no" would have overwritten
    with pytest.raises(UsageError, match="overwrite: must be True or False, got 'no'"):
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "b.flac", rate=48000, overwrite="no")
    with pytest.raises(UsageError, match="dither: must be True or False, got 0"):
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "c.wav", rate=48000, dither=0)
    with pytest.raises(UsageError, match="unknown option"):
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "c.wav", colour="blue")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a.wav", "b.flac"]


def test_convert_refuses_words_the_command_line_would_not_offer(tmp_path):
    tone(tmp_path / "a.wav", rate=44100)
    with pytest.raises(UsageError, match=r"clip.*'bogus' is not one of \['clamp', 'error', 'rescale'\]"):
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "b.wav", rate=48000, clip="bogus")
    with pytest.raises(UsageError, match="non_finite"):
        convt_audio.convert(tmp_path / "a.wav", tmp_path / "b.wav", rate=48000, non_finite="skip")
    assert not (tmp_path / "b.wav").exists()


def test_the_json_record_is_the_file_report(tmp_path):
    """--json prints FileReport.as_dict(): the same keys, in the dataclass's order, for each status."""
    import json
    from dataclasses import fields

    from convt_audio.run.filestream import FileReport

    tone(tmp_path / "a.wav", rate=16000)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    result = invoke("run", tmp_path / "a.wav", tmp_path / "bad.wav", "-o", tmp_path / "out", "--json", "-c", "sinc-x3")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "error"]
    order = [f.name for f in fields(FileReport)]
    for record in records:
        assert FileReport.from_dict(record).as_dict() == record
        assert list(record) == sorted(record, key=order.index)
    assert set(records[0]) == set(order) - {"reason", "error", "gain_db", "resumed"}
    assert set(records[1]) == {"input", "output", "status", "error"}
