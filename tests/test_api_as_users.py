"""The Python API with the inputs users bring: librosa's and torchaudio's (channels, frames),
int16 as soundfile and soxr give it, stereo through a mono stack, and the names dir() shows."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from clitools import PACKAGE_HOME, cli

import convt_audio
from convt_audio.core.errors import UsageError


def _noise(shape, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, shape).astype(np.float32)


def test_a_channels_first_array_is_refused_with_the_hint_or_taken_with_axis():
    x = _noise((2, 96000))
    with pytest.raises(UsageError, match=r"more channels than frames .* pass axis=-1 for \(channels, frames\)"):
        convt_audio.resample(x, 44100, 48000)
    y = convt_audio.resample(x, 44100, 48000, axis=-1)
    assert y.shape == (2, 104490)
    np.testing.assert_array_equal(y, convt_audio.resample(x.T.copy(), 44100, 48000).T)
    # the old trap: a 2 x 4800 array is not 4800 channels of 2 frames
    with pytest.raises(UsageError, match="more channels than frames"):
        convt_audio.resample(_noise((2, 4800)), 44100, 48000)
    with pytest.raises(UsageError, match="more channels than frames"):  # torchaudio's mono (1, frames)
        convt_audio.resample(_noise((1, 4800)), 44100, 48000)
    assert convt_audio.resample(_noise((1, 1)), 44100, 48000).shape[1] == 1  # one frame, one channel
    # a square array fits both layouts: refused until axis says which
    with pytest.raises(UsageError, match=r"shape \(2, 2\) fits \(frames, channels\) and \(channels, frames\)"):
        convt_audio.resample(_noise((2, 2)), 44100, 48000)
    square = _noise((3, 3))
    np.testing.assert_array_equal(
        convt_audio.resample(square, 44100, 48000, axis=-1),
        convt_audio.resample(square.T.copy(), 44100, 48000, axis=0).T,
    )
    with pytest.raises(UsageError, match=r"axis: 3 is not an axis"):
        convt_audio.resample(x, 44100, 48000, axis=3)


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_integer_samples_come_back_in_their_type_scaled_and_clipped_as_soxr_does(dtype):
    full = np.iinfo(dtype).max
    t = np.arange(44100) / 44100
    loud = np.clip(1.2 * np.sin(2 * np.pi * 997 * t), -1, 1)  # clipped square-ish: overshoots when resampled
    x = np.round(np.stack([loud, 0.25 * np.sin(2 * np.pi * 440 * t)], 1) * full).astype(dtype)
    y = convt_audio.resample(x, 44100, 48000)
    peer = soxr.resample(x, 44100, 48000)
    assert y.dtype == peer.dtype == dtype and y.shape == (48000, 2)
    wide = np.float64 if dtype == np.int32 else np.float32  # int16 computes in float32, int32 in float64
    floats = convt_audio.resample(x.astype(wide) * wide(1 / (full + 1)), 44100, 48000)
    expected = np.clip(np.rint(floats * (full + 1)), -(full + 1), full)
    np.testing.assert_array_equal(y, expected.astype(dtype))  # rounded and clipped, never wrapped
    assert y[:, 0].max() == full and y[:, 0].min() == -(full + 1)


def test_stereo_through_a_mono_stack_runs_each_channel_as_run_does(tmp_path):
    x = _noise((2, 4000))
    model = convt_audio.load("sinc-x3")
    y = model(x)
    assert y.shape == (2, 12000)
    np.testing.assert_array_equal(y[1], model(x[1:2])[0])
    np.testing.assert_array_equal(model(x[None])[0], y)
    stream = model.stream()
    parts = [stream.push(x[:, i : i + 333]) for i in range(0, 4000, 333)] + [stream.flush()]
    np.testing.assert_array_equal(np.concatenate(parts, -1), y)
    # the command line's per_channel run of the same samples gives the same output
    sf.write(str(tmp_path / "x.wav"), x.T, 16000, subtype="FLOAT")
    assert cli("run", "x.wav", "-c", "sinc-x3", "-o", "y.wav", cwd=tmp_path).returncode == 0
    np.testing.assert_allclose(sf.read(str(tmp_path / "y.wav"), dtype="float32")[0].T, y, atol=1e-6)


def test_soundfiles_frames_first_layout_given_to_a_model_is_refused_not_run_as_thousands_of_channels():
    """``model(x)`` takes ``(channels, frames)``; soundfile's ``(frames, channels)`` array ran
    through a one-channel stack as 4000 "channels" of 2 frames each (garbage, no word), and a
    stream's ``(1024, 2)`` blocks as 1024 channels that gave no frames at all."""
    x = _noise((4000, 2))
    model = convt_audio.load("sinc-x3")
    swapped = r"has more channels than frames as \(channels, frames\).* \(soundfile's layout\) is given as"
    with pytest.raises(UsageError, match=r"x: shape \(4000, 2\) " + swapped + " x.T$"):
        model(x)
    with pytest.raises(UsageError, match=r"x: shape \(1, 4000, 2\) .* with its last two axes swapped"):
        model(x[None])
    with pytest.raises(UsageError, match=r"arrays\[1\]: shape \(4000, 2\) " + swapped):
        list(model.map([x.T, x]))
    with pytest.raises(UsageError, match=r"chunk: shape \(1024, 2\) " + swapped + " chunk.T"):
        model.stream().push(x[:1024])
    pool = model.pool()
    with pytest.raises(UsageError, match=r"chunk: shape \(1024, 2\) " + swapped):
        pool.push({pool.open(): x[:1024]})
    np.testing.assert_array_equal(model(x.T), convt_audio.load("sinc-x3")(x.T.copy()))
    # a stream may start with fewer frames than channels (one 5.1 frame), up to 8 channels, and
    # a later chunk of a wide stream may be short: only the first chunk fixes the layout
    assert model.stream().push(_noise((6, 1))).shape == (6, 0)
    with pytest.raises(UsageError, match=r"a stream of more than 8 channels starts with a chunk of as many frames"):
        model.stream().push(_noise((16, 1)))
    wide = model.stream()
    wide.push(_noise((16, 400)))
    assert wide.push(_noise((16, 3))).shape[0] == 16


def test_the_stream_protocol_is_guarded():
    model = convt_audio.load("sinc-x3")
    stream = model.stream()
    stream.push(_noise((2, 100)))
    with pytest.raises(UsageError, match="every chunk of a stream has the same batch and channels"):
        stream.push(_noise((1, 100)))
    stream.flush()
    with pytest.raises(UsageError, match="flushed; reset"):
        stream.push(_noise((2, 100)))
    with pytest.raises(UsageError, match="flushed already"):
        stream.flush()
    stream.reset()
    assert stream.push(_noise((1, 50))).shape[0] == 1  # a new signal, of any layout


def test_a_streams_sample_type_is_fixed_by_its_first_chunk_with_frames():
    """int16 pushed after float chunks came back as floats of the int16 samples' scale, and a
    float chunk after int16 ones as int16: a stream now refuses a change of sample type. Chunks
    of no frames (a server's "nothing new") may be of any type, before and after."""
    model = convt_audio.load("sinc-x3")
    pcm = (_noise((1, 3000)) * 32767).astype(np.int16)
    stream = model.stream()
    stream.push(np.zeros((1, 0)))  # float64, no frames: fixes nothing
    parts = [stream.push(pcm[:, :1000]), stream.push(np.zeros((1, 0))), stream.push(pcm[:, 1000:])]
    with pytest.raises(UsageError, match="chunk: float samples after int16 chunks; every chunk of a stream"):
        stream.push(_noise((1, 10)))
    parts.append(stream.flush())
    assert all(part.dtype == np.int16 for part in parts)
    np.testing.assert_array_equal(np.concatenate(parts, -1), model(pcm))
    stream.reset()  # a new signal may be of another type
    assert stream.push(_noise((1, 500))).dtype == np.float32
    with pytest.raises(UsageError, match="chunk: int16 samples after float chunks"):
        stream.push(pcm[:, :10])
    pool = model.pool()
    session = pool.open()
    pool.push({session: np.zeros((1, 0))})
    assert pool.push({session: pcm[:, :1000]})[session].dtype == np.int16
    with pytest.raises(UsageError, match="chunk: float samples after int16 chunks"):
        pool.push({session: _noise((1, 10))})
    assert session.flush().dtype == np.int16


def test_public_names_are_visible_before_first_use_and_help_lists_them():
    code = (
        "import convt_audio, pydoc, sys; names = dir(convt_audio); "
        "assert {'resample', 'load', 'convert', 'Model', 'Stream', 'FileReport', 'RunOptions', 'ConvtAudioError'} "
        "<= set(names), names; print('torch' in sys.modules); text = pydoc.render_doc(convt_audio); "
        "assert 'resample' in text and 'ConvtAudioError' in text"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PACKAGE_HOME}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "False"  # dir() alone imports no torch


def test_float16_on_the_cpu_is_warned_of_and_bfloat16_is_not(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        convt_audio.load("sinc-x3", dtype="float16", device="cpu")
        convt_audio.load("sinc-x3", dtype="bfloat16", device="cpu")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "float16 on the CPU has no fast kernels" in messages[0]
    sf.write(str(tmp_path / "x.wav"), _noise(1600), 16000)
    done = cli("run", "x.wav", "-c", "sinc-x3", "--dtype", "float16", "--device", "cpu", "-o", "y.wav", cwd=tmp_path)
    assert done.returncode == 0 and b"warning: float16 on the CPU has no fast kernels" in done.stderr


def test_load_runs_under_the_command_lines_process_tuning():
    code = (
        "import os, convt_audio; m = convt_audio.load('sinc-x3', device='cpu', dtype='bfloat16'); import torch; "
        "print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads() <= len(os.sched_getaffinity(0)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["PASSIVE", "True"]
    # a user's own setting wins
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": PACKAGE_HOME, "OMP_WAIT_POLICY": "ACTIVE"},
    )
    assert done.stdout.split()[0] == "ACTIVE"


def test_threads_spin_only_where_nothing_else_runs(monkeypatch):
    from convt_audio.core import process

    monkeypatch.setattr(process, "usable_cpus", lambda: 2)
    monkeypatch.setattr(process, "others_running", lambda looks=5: 0)
    assert process.wait_settings() == {"GOMP_SPINCOUNT": str(process.SPIN_COUNT)}
    monkeypatch.setattr(process, "others_running", lambda looks=5: 1)  # a busy process beside
    assert process.wait_settings() == {"OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setattr(process, "others_running", lambda looks=5: None)  # no /proc/loadavg
    assert process.wait_settings() == {"OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setattr(process, "others_running", lambda looks=5: 0)
    monkeypatch.setattr(process, "usable_cpus", lambda: 1)  # one core: no barrier to spin at
    assert process.wait_settings() == {"OMP_WAIT_POLICY": "PASSIVE"}
    # the running count is read from /proc/loadavg, less this process, the least of its looks
    running = process.others_running(looks=2)
    fields = Path("/proc/loadavg").read_text().split()
    assert running is not None and 0 <= running <= int(fields[3].split("/")[1])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: convt_audio.resample([[1, 2], [3]], 16000, 48000), "not an array of numbers"),
        (
            lambda: convt_audio.resample(np.zeros((0, 2)), 16000, 48000),
            r"has no frames \(an empty array of shape \(0, 2\)\)",
        ),
        (lambda: convt_audio.resample(np.zeros(10, dtype=np.uint16), 16000, 48000), "uint16 samples are not read"),
        (lambda: convt_audio.resample(torch.zeros(4).to_sparse(), 16000, 48000), "sparse torch tensor"),
        (lambda: convt_audio.load(123), "config: a path or a built-in name, got int"),
        (lambda: convt_audio.load("sinc-x3", threads=0), "threads: must be a positive whole number"),
        (lambda: convt_audio.load("sinc-x3").stream(graphs="no"), "graphs: must be True or False, got 'no'"),
        (lambda: convt_audio.resample([0.0] * 64, 8000, 16000, allow_aliasing="no"), "allow_aliasing: must be True or"),
        (lambda: convt_audio.convert("a.wav", "b.wav", overwrite=True, skip_existing=True), "exclude each other"),
    ],
)
def test_bad_api_inputs_raise_our_errors_only(call, message):
    with pytest.raises(UsageError, match=message):
        call()


def test_bfloat16_tensors_are_read():
    x = torch.from_numpy(_noise(16000)).to(torch.bfloat16)
    y = convt_audio.resample(x, 16000, 48000)
    assert isinstance(y, torch.Tensor) and y.shape == (48000,)


def test_every_kind_class_is_exported_with_the_contracts():
    from convt_audio.kinds import KINDS

    assert {cls.__name__ for cls in KINDS.values()} <= set(convt_audio.__all__)
    for name in ("Kind", "register", "Engine", "Stream", "RunOptions", "RunRequest", "FileReport"):
        assert name in convt_audio.__all__ and getattr(convt_audio, name) is not None
