"""Streams as ffmpeg and sox make them: FLAC of unknown length (piped or saved), headerless raw
samples described by options, and the WAV header written to standard output. Each run must give
the samples of the same audio read from a plain WAV file."""

import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf
from clitools import ENTRY, cli, one_error_line, shell

needs_tools = pytest.mark.skipif(
    shutil.which("sox") is None or shutil.which("ffmpeg") is None,
    reason="the stream tests pipe through the real sox and ffmpeg (apt-get install sox ffmpeg)",
)


def _stereo(path, seconds=1.5, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    data = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1330 * t + 1)], 1)
    sf.write(str(path), data, rate, subtype="PCM_16")


def _same(a, b):
    x, y = sf.read(str(a), dtype="int32")[0], sf.read(str(b), dtype="int32")[0]
    assert x.shape == y.shape and np.array_equal(x, y), (x.shape, y.shape)


@pytest.fixture
def reference(tmp_path):
    _stereo(tmp_path / "x.wav")
    done = cli("run", "x.wav", "-r", "44.1k", "-o", "ref.wav", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "ref.wav"


@needs_tools
def test_ffmpeg_flac_of_unknown_length_piped_and_saved_gives_the_wav_samples(tmp_path, reference):
    done = shell(f"ffmpeg -loglevel error -i x.wav -f flac - | {ENTRY} run - -r 44.1k -o piped.wav", tmp_path)
    assert done.returncode == 0, done.stderr
    _same(reference, tmp_path / "piped.wav")
    # the same stream saved: its STREAMINFO says 0 samples, which libsndfile reports as 2^63 - 1
    done = shell("ffmpeg -loglevel error -i x.wav -f flac - > saved.flac", tmp_path)
    assert done.returncode == 0 and sf.info(str(tmp_path / "saved.flac")).frames > 1 << 62
    done = cli("run", "saved.flac", "-r", "44.1k", "-o", "saved.wav", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _same(reference, tmp_path / "saved.wav")
    # and to standard output, through sox: the whole file, not a short one with exit 0
    done = shell(f"{ENTRY} run saved.flac -r 44.1k -o - | sox -t wav - out.wav", tmp_path)
    assert done.returncode == 0, done.stderr
    _same(reference, tmp_path / "out.wav")


@needs_tools
def test_a_circular_first_layer_refuses_a_flac_of_unknown_length_in_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "layers:\n  - {type: conv_transpose1d, in_channels: 1, out_channels: 1, kernel_size: 4, stride: 2, "
        "padding: 1, padding_mode: circular, bias: false}\n"
    )
    sf.write(str(tmp_path / "m.wav"), np.zeros(800), 16000, subtype="PCM_16")
    assert cli("init", "c.yaml", "-o", "c.safetensors", cwd=tmp_path).returncode == 0
    shell("ffmpeg -loglevel error -i m.wav -f flac - > m.flac", tmp_path)
    done = cli("run", "m.flac", "-c", "c.yaml", "-w", "c.safetensors", "-o", "o.wav", cwd=tmp_path)
    assert done.returncode == 1
    one_error_line(done.stderr, "stream of unknown length")
    assert not (tmp_path / "o.wav").exists()


@needs_tools
@pytest.mark.parametrize(
    "sox_args, description",
    [
        ("-e signed -b 16", "--input-bits 16 --input-encoding signed-integer"),
        ("-e signed -b 24", "--input-bits 24 --input-encoding signed"),
        ("-e floating-point -b 32", "--input-bits 32 --input-encoding floating-point"),
        ("-e signed -b 16 -B", "--input-bits 16 --input-encoding signed --input-endian big"),
    ],
)
def test_raw_samples_from_sox_described_by_options_give_the_wav_samples(tmp_path, reference, sox_args, description):
    """(-b 16: the output is 16-bit whatever the raw width, as the reference is)"""
    raw = f"--input-type raw --input-rate 16000 --input-channels 2 {description}"
    done = shell(f"sox x.wav -t raw {sox_args} - | {ENTRY} run - {raw} -r 44.1k -b 16 -o piped.wav", tmp_path)
    assert done.returncode == 0, done.stderr
    _same(reference, tmp_path / "piped.wav")
    shell(f"sox x.wav -t raw {sox_args} x.pcm", tmp_path)  # a headerless file, named
    done = shell(f"{ENTRY} run x.pcm {raw} -r 44.1k -b 16 -o named.wav", tmp_path)
    assert done.returncode == 0, done.stderr
    _same(reference, tmp_path / "named.wav")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input-type", "raw", "--input-rate", "16000", "--input-channels", "2"], "missing --input-bits, --input-encoding"),
        (["--input-type", "raw"], "missing --input-rate, --input-channels, --input-bits, --input-encoding"),
        (["--input-bits", "16"], "--input-bits describe a headerless input: add --input-type raw"),
        (
            ["--input-type", "raw", "--input-rate", "16000", "--input-channels", "1", "--input-bits", "16",
             "--input-encoding", "unsigned"],
            "--input-bits: unsigned-integer samples of 16 bits are not read; use [8]",
        ),
        (
            ["--input-type", "raw", "--input-rate", "11025.5", "--input-channels", "1", "--input-bits", "16",
             "--input-encoding", "signed"],
            "a raw input's rate is a whole number of Hz",
        ),
        (["-t", "raw"], "--type is the output's container (raw only for -o -)"),
    ],
)  # fmt: skip
def test_an_incomplete_raw_description_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "x.raw").write_bytes(b"\0" * 400)
    done = cli("run", "x.raw", "-o", "y.wav", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    one_error_line(done.stderr, message)
    assert not (tmp_path / "y.wav").exists()


def test_a_raw_file_that_is_not_whole_frames_fails_alone(tmp_path):
    (tmp_path / "x.raw").write_bytes(b"\0" * 401)
    raw = ["--input-type", "raw", "--input-rate", "16000", "--input-channels", "2", "--input-bits", "16"]
    done = cli("run", "x.raw", "-o", "y.wav", *raw, "--input-encoding", "signed", cwd=tmp_path)
    assert done.returncode == 1
    one_error_line(done.stderr, "401 bytes is not a whole number of 4-byte frames")
    assert not (tmp_path / "y.wav").exists()


def _header_sizes(data: bytes) -> tuple[int, int]:
    assert data[:4] == b"RIFF" and data[36:40] == b"data"
    return struct.unpack("<I", data[4:8])[0], struct.unpack("<I", data[40:44])[0]


@needs_tools
def test_the_stdout_wav_header_carries_the_length_whenever_it_is_known(tmp_path, reference):
    expected = sf.info(str(reference)).frames * 2 * 2
    done = cli("run", "x.wav", "-r", "44.1k", "-o", "-", cwd=tmp_path)
    assert _header_sizes(done.stdout) == (expected + 36, expected) and len(done.stdout) == 44 + expected
    # a sox pipe whose header promises the length: the output's header gives the output's
    piped = subprocess.run(["sox", "x.wav", "-t", "wav", "-"], capture_output=True, cwd=tmp_path).stdout
    done = cli("run", "-", "-r", "44.1k", "-o", "-", stdin=piped, cwd=tmp_path)
    assert done.returncode == 0 and _header_sizes(done.stdout) == (expected + 36, expected)
    # and sox reads it downstream without a premature-end warning
    done = shell(f"sox x.wav -t wav - | {ENTRY} run - -r 44.1k -o - | sox -V2 -t wav - out.wav", tmp_path)
    assert done.returncode == 0 and b"Premature EOF" not in done.stderr, done.stderr
    _same(reference, tmp_path / "out.wav")
    # unknown length (FLAC from a pipe): the header says so, as pipes do
    flac = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", "x.wav", "-f", "flac", "-"], capture_output=True, cwd=tmp_path
    )
    done = cli("run", "-", "-r", "44.1k", "-o", "-", stdin=flac.stdout, cwd=tmp_path)
    assert done.returncode == 0 and _header_sizes(done.stdout) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert len(done.stdout) == 44 + expected
