"""Audio I/O details: PCM rounding, subtypes, formats, atomic paths, truncation."""

import numpy as np
import pytest
import soundfile as sf

from convt_audio.core.errors import AudioError, UsageError
from convt_audio.io.atomic import atomic_path
from convt_audio.io.audio import AudioSink, choose_subtype, format_for, open_source


@pytest.mark.parametrize("subtype,bits", [("PCM_16", 16), ("PCM_24", 24), ("PCM_S8", 8)])
def test_pcm_is_rounded_to_nearest_not_down(tmp_path, subtype, bits):
    steps = 2 ** (bits - 1)
    values = np.array([0.7, 0.2, 0.49, 0.51, -0.2, -0.7, 100.3, -100.3, 0.0, 5.0]) / steps
    fmt = "AIFF" if subtype == "PCM_S8" else "WAV"
    path = tmp_path / ("x.aiff" if fmt == "AIFF" else "x.wav")
    sink = AudioSink(path, 16000, 1, fmt, subtype)
    sink.write(values[None])
    sink.close()
    back, _ = sf.read(str(path), dtype="float64")
    np.testing.assert_array_equal(np.round(back * steps), np.rint(values * steps))


def test_full_scale_and_clipping_count(tmp_path):
    sink = AudioSink(tmp_path / "x.wav", 16000, 1, "WAV", "PCM_16")
    sink.write(np.array([[1.0, -1.0, 1.5, -2.0, 0.999999]]))
    sink.close()
    back = sf.read(str(tmp_path / "x.wav"), dtype="int16")[0].tolist()
    assert back == [32767, -32768, 32767, -32768, 32767] and sink.clipped == 2


def test_formats_and_subtypes():
    assert format_for("a.flac") == "FLAC" and format_for("b.aif") == "AIFF" and format_for("c.WAV") == "WAV"
    with pytest.raises(UsageError, match="cannot write .mp4"):
        format_for("x.mp4")
    assert choose_subtype("FLAC", None, "FLOAT", "x") == "PCM_16"  # FLAC cannot hold floats
    assert choose_subtype("WAV", None, "PCM_24", "x") == "PCM_24"
    with pytest.raises(UsageError, match="subtype: OGG files cannot hold PCM_16"):
        choose_subtype("OGG", "PCM_16", None, "x")


def test_atomic_path_cleans_up_and_never_clobbers(tmp_path):
    dest = tmp_path / "o.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    dest.write_text("old")
    with pytest.raises(AudioError, match="appeared while writing; not replaced"):
        with atomic_path(dest, overwrite=False) as tmp:
            tmp.write_text("new")
    assert dest.read_text() == "old" and list(tmp_path.iterdir()) == [dest]
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new" and list(tmp_path.iterdir()) == [dest]


def test_streaming_wav_sizes_are_not_truncation(tmp_path):
    sf.write(str(tmp_path / "s.wav"), np.zeros(100), 8000, subtype="PCM_16")
    data = bytearray((tmp_path / "s.wav").read_bytes())
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # data size unknown, as a pipe writer leaves it
    (tmp_path / "s.wav").write_bytes(bytes(data))
    with open_source(tmp_path / "s.wav") as source:
        assert source.frames == 100


def test_npy_shape_errors(tmp_path):
    np.save(tmp_path / "i.npy", np.zeros((3, 100), dtype=np.int16))
    with pytest.raises(AudioError, match="must be a float array of shape"):
        open_source(tmp_path / "i.npy", 8000)
    np.save(tmp_path / "t.npy", np.zeros((100, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="more channels than frames"):
        open_source(tmp_path / "t.npy", 8000)
    # a short feature array of the wrong band count is told so, not that it is laid out wrong
    np.save(tmp_path / "m.npy", np.zeros((70, 50), dtype=np.float32))
    with pytest.raises(AudioError, match=r"shape \(70, 50\) holds 70 channels \(rows\); the stack takes 80$"):
        open_source(tmp_path / "m.npy", 86, expected_channels=80)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pcm_read_as_integers_gives_libsndfile_floats(tmp_path, subtype, dtype):
    """PCM blocks are read as integers and scaled here: the floats libsndfile gives, bit for bit."""
    path = tmp_path / "p.wav"
    sf.write(str(path), np.random.default_rng(0).uniform(-1, 1, (1001, 2)), 8000, subtype=subtype)
    with open_source(path) as source:
        got = np.concatenate(list(source.blocks(300, dtype)), axis=1)
        assert source.always_finite
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, sf.read(str(path), dtype=dtype)[0].T)


def test_pcm_sink_steps_whether_or_not_a_block_clips(tmp_path):
    """In-range blocks take the short path; a block with a clipped sample the full one: both
    give the nearest steps, clamped, and only the clipped sample is counted."""
    rng = np.random.default_rng(1)
    blocks = [rng.uniform(-0.99, 0.99, (2, 500)).astype(np.float32) for _ in range(3)]
    blocks[1][0, 7] = 1.5
    sink = AudioSink(tmp_path / "o.wav", 8000, 2, "WAV", "PCM_16")
    for block in blocks:
        sink.write(block)
    sink.close()
    want = np.clip(np.rint(np.concatenate(blocks, axis=1) * 32768.0), -32768, 32767).T
    got, _ = sf.read(str(tmp_path / "o.wav"), dtype="int16")
    np.testing.assert_array_equal(got, want.astype(np.int16))
    assert sink.clipped == 1
