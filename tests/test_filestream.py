"""Per-file streaming: reading and writing beside the compute in threads only where that
overlaps other work, with the same samples and the same failures either way."""

import numpy as np
import pytest
import soundfile as sf

import convt_audio
from convt_audio.core.errors import AudioError
from convt_audio.io.audio import AudioSink, StdoutSink, open_source
from convt_audio.run import filestream


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVT_AUDIO_CACHE", str(tmp_path / "cache"))


class _Engine:
    def __init__(self, device):
        self.device = device


def _noise(path, rate=16000, frames=40000, channels=2, **kwargs):
    rng = np.random.default_rng(1)
    sf.write(str(path), (0.3 * rng.standard_normal((frames, channels))).astype(np.float32), rate, **kwargs)
    return path


@pytest.mark.parametrize(
    "source, sink, device, overlap",
    [
        ("a.wav", "b.wav", "cpu", False),  # PCM copied on the CPU: nothing to overlap
        ("a.wav", "b.aiff", "cpu", False),
        ("a.flac", "b.wav", "cpu", True),  # decoding
        ("a.wav", "b.flac", "cpu", True),  # encoding
        ("a.wav", "b.ogg", "cpu", True),
        ("a.wav", "b.wav", "cuda:0", True),  # a GPU computing
        ("a.wav", "-", "cpu", True),  # a pipe
    ],
)
def test_threads_only_where_they_overlap_other_work(tmp_path, source, sink, device, overlap):
    src = _noise(tmp_path / source)
    with open_source(src) as opened:
        if sink == "-":
            out = StdoutSink("wav", 16000, 2, "PCM_16", "clamp", None)
        else:
            fmt = sink.rsplit(".", 1)[1].upper()
            out = AudioSink(tmp_path / sink, 16000, 2, fmt, "VORBIS" if fmt == "OGG" else "PCM_16")
        assert filestream._overlaps(_Engine(device), opened, out) is overlap
        if sink != "-":
            out.close()


def test_inline_and_threaded_runs_write_the_same_file(tmp_path, monkeypatch):
    src = _noise(tmp_path / "a.wav", subtype="PCM_16", frames=100_003)
    inline = convt_audio.convert(src, tmp_path / "inline.wav", rate=44100, chunk=4096)
    monkeypatch.setattr(filestream, "_overlaps", lambda *args: True)
    threaded = convt_audio.convert(src, tmp_path / "threaded.wav", rate=44100, chunk=4096)
    assert inline.frames_out == threaded.frames_out == 275_634
    np.testing.assert_array_equal(
        sf.read(str(tmp_path / "inline.wav"), dtype="int16")[0],
        sf.read(str(tmp_path / "threaded.wav"), dtype="int16")[0],
    )


@pytest.mark.parametrize("threads", [False, True])
def test_a_failed_write_leaves_nothing_either_way(tmp_path, monkeypatch, threads):
    src = _noise(tmp_path / "a.wav", subtype="PCM_16", frames=100_000)
    monkeypatch.setattr(filestream, "_overlaps", lambda *args: threads)
    writes = []

    def failing(self, block):
        writes.append(block.shape)
        if len(writes) == 3:
            raise AudioError(f"{self.label}: write failed (No space left on device); is the disk full?")

    monkeypatch.setattr(AudioSink, "write", failing)
    with pytest.raises(AudioError, match="out.wav: write failed"):
        convt_audio.convert(src, tmp_path / "out.wav", rate=48000, chunk=4096)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["a.wav"]
