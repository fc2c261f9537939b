"""Shell and batch habits: pipes through real sox, containers, safe re-runs, one-line errors."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clitools import PACKAGE_HOME, invoke

ROOT = Path(__file__).resolve().parents[1]
SOX = shutil.which("sox")
needs_sox = pytest.mark.skipif(SOX is None, reason="sox is not installed (.ci/run installs it with apt)")


def cli(*args, stdin=None, cwd=None, env=None):
    """The real console entry point in a subprocess, bytes in and out."""
    return subprocess.run(
        [sys.executable, "-c", "from cli.main import app; app()", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME, **(env or {})},
    )


def tone(path, seconds=0.5, rate=16000, subtype=None, channels=1, **kw):
    t = np.arange(int(seconds * rate)) / rate
    data = np.stack([0.4 * np.sin(2 * np.pi * (330 + 110 * c) * t) for c in range(channels)], 1)
    sf.write(
        str(path),
        data,
        rate,
        subtype=subtype or ("PCM_16" if kw.get("format", "WAV") in ("WAV", "AIFF", "FLAC") else None),
        **kw,
    )
    return data


# ------------------------------------------------------------------ pipes


@needs_sox
def test_sox_pipeline_end_to_end(tmp_path):
    """sox in.wav -t wav - | convt-audio run - -r 48000 -o - | sox - out.flac (sox sniffs the type)"""
    tone(tmp_path / "in.wav", seconds=1.0, rate=16000)
    command = (
        f"{SOX} in.wav -t wav - | {sys.executable} -c 'from cli.main import app; app()' run - -r 48000 "
        f"-o - | {SOX} - out.flac"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME, "CONVT_AUDIO_CACHE": str(tmp_path / "c")},
    )
    assert done.returncode == 0, done.stderr
    out, rate = sf.read(str(tmp_path / "out.flac"))
    assert rate == 48000 and out.shape[0] == 48000
    direct = invoke("run", tmp_path / "in.wav", "-r", 48000, "-o", tmp_path / "direct.wav")
    assert direct.exit_code == 0
    np.testing.assert_array_equal(out, sf.read(str(tmp_path / "direct.wav"))[0])


def test_stdout_is_only_audio_and_the_header_is_exact(tmp_path):
    tone(tmp_path / "a.wav", seconds=0.25)
    done = cli("run", "a.wav", "-o", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    audio, rate = sf.read(io.BytesIO(done.stdout))
    assert rate == 48000 and audio.shape[0] == 12000
    assert b"->" in done.stderr and done.stdout[:4] == b"RIFF"
    assert int.from_bytes(done.stdout[40:44], "little") == 12000 * 2  # data size known: the input is a file


@pytest.mark.parametrize(
    "kind,subtype,nbytes",
    [
        ("raw", "PCM_24", 3),
        ("raw", "FLOAT", 4),
        pytest.param("flac", None, None, marks=needs_sox),
    ],
)
def test_stdout_types(tmp_path, kind, subtype, nbytes):
    data = tone(tmp_path / "a.wav", seconds=0.1, channels=2)
    args = ["run", "a.wav", "-o", "-", "-t", kind, "-c", "sinc-x2"] + (["--subtype", subtype] if subtype else [])
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    if kind == "flac":  # a FLAC stream that does not know its length (a pipe's): sox decodes it
        decoded = subprocess.run([SOX, "-t", "flac", "-", "-t", "wav", "-"], input=done.stdout, capture_output=True)
        assert decoded.returncode == 0, decoded.stderr
        audio, rate = sf.read(io.BytesIO(decoded.stdout))
        assert rate == 32000 and audio.shape == (3200, 2)
    else:  # interleaved little-endian frames, nothing else
        assert len(done.stdout) == 3200 * 2 * nbytes
        raw = sf.read(io.BytesIO(done.stdout), format="RAW", subtype=subtype, samplerate=32000, channels=2)[0]
        # at the original times the tone comes back (away from the ends' filter transients)
        np.testing.assert_allclose(raw[::2][300:-300], data[300:-300], atol=2e-4)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "AIFF"])
def test_stdin_audio(tmp_path, fmt):
    tone(tmp_path / f"a.{fmt.lower()}", seconds=0.2, format=fmt)
    done = cli("run", "-", "-o", "out.wav", stdin=(tmp_path / f"a.{fmt.lower()}").read_bytes(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sf.info(str(tmp_path / "out.wav")).frames == 3200 * 3
    assert invoke("run", tmp_path / f"a.{fmt.lower()}", "-o", tmp_path / "ref.wav").exit_code == 0
    np.testing.assert_array_equal(sf.read(str(tmp_path / "out.wav"))[0], sf.read(str(tmp_path / "ref.wav"))[0])


def test_stdin_npy(tmp_path):
    array = np.random.default_rng(0).standard_normal((1, 500)).astype(np.float32) * 0.1
    buffer = io.BytesIO()
    np.save(buffer, array)
    done = cli("run", "-", "--input-rate", 8000, "-o", "-", stdin=buffer.getvalue(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    audio, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    assert rate == 48000 and audio.shape[0] == 3000  # no -c, no -r: 48 kHz
    np.save(tmp_path / "a.npy", array)  # the same samples as from the file
    assert invoke("run", tmp_path / "a.npy", "--input-rate", 8000, "-o", tmp_path / "a.wav").exit_code == 0
    np.testing.assert_array_equal(audio, sf.read(str(tmp_path / "a.wav"), dtype="float32")[0])


@pytest.mark.parametrize(
    "args,stdin,message",
    [
        (["run", "-", "a.wav"], b"", "- (standard input) must be the only input"),
        (["run", "-"], b"x", "- (standard input) needs -o FILE, or -o - for standard output"),
        (["run", "-", "-o", "o.wav"], b"", "<stdin>: nothing to read"),
        (["run", "-", "-o", "o.wav"], b"garbage that is no audio", "<stdin>: not a readable audio stream"),
        (["run", "a.wav", "-o", "-", "--json"], b"", "--json and -o - both want standard output"),
        (
            ["run", "a.wav", "-o", "-", "-t", "ogg"],
            b"",
            "--type: 'ogg' is not one of ['wav', 'flac', 'raw'] (for -o -)",
        ),
        (["run", "a.wav", "a.wav", "-o", "-"], b"", "-o - (standard output) takes one input"),
    ],
)
def test_pipe_misuse_is_one_line(tmp_path, args, stdin, message):
    tone(tmp_path / "a.wav", seconds=0.1)
    done = cli(*args, stdin=stdin, cwd=tmp_path)
    assert done.returncode in (1, 2), done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert done.stdout == b"" and not (tmp_path / "o.wav").exists()


# ------------------------------------------------------------------ containers


def test_type_picks_the_container_and_mp3_inputs_default_to_pcm16(tmp_path):
    (tmp_path / "in").mkdir()
    tone(tmp_path / "in" / "a.mp3", seconds=0.3, rate=24000, format="MP3", subtype="MPEG_LAYER_III")
    tone(tmp_path / "in" / "b.wav", seconds=0.3, rate=24000)
    result = invoke("run", tmp_path / "in", "-r", 48000, "-o", tmp_path / "out", "-t", "FLAC")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.flac", "b.flac"]
    result = invoke("run", tmp_path / "in" / "a.mp3", "-r", 48000)  # beside it, as WAV
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "in" / "a.48000hz.wav")).subtype == "PCM_16"


def test_opus_is_opus_and_its_rates_are_checked_first(tmp_path):
    tone(tmp_path / "a.wav", seconds=0.5, rate=16000)
    result = invoke("run", tmp_path / "a.wav", "-o", tmp_path / "a.opus")  # 48 kHz: an Opus rate
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "a.opus")).subtype == "OPUS"
    result = invoke("run", tmp_path / "a.wav", "-c", "sinc-x2", "-o", tmp_path / "b.opus")
    assert result.exit_code == 1
    assert "b.opus: .opus holds 8000, 12000, 16000, 24000, 48000 Hz, not 32000 Hz" in result.stderr
    assert not (tmp_path / "b.opus").exists() and not list(tmp_path.glob(".*part"))


# ------------------------------------------------------------------ safe batches


def test_one_output_file_for_several_inputs_is_an_error(tmp_path):
    tone(tmp_path / "a.wav")
    tone(tmp_path / "b.wav")
    result = invoke("run", tmp_path / "a.wav", tmp_path / "b.wav", "-o", tmp_path / "t.wav")
    assert result.exit_code == 2
    assert "t.wav: names one file, but there are 2 inputs; give a folder" in result.stderr
    assert not (tmp_path / "t.wav").exists()


def test_reruns_never_process_their_own_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    tone(tmp_path / "d" / "x.wav")
    tone(tmp_path / "d" / "sub" / "y.wav")
    for _ in range(3):
        assert invoke("run", "d", "-R", "--skip-existing").exit_code == 0
    names = sorted(p.relative_to(tmp_path / "d").as_posix() for p in (tmp_path / "d").rglob("*.wav"))
    assert names == ["sub/y.48000hz.wav", "sub/y.wav", "x.48000hz.wav", "x.wav"]
    for _ in range(2):
        assert invoke("run", ".", "-o", "up/", "-R", "-n").exit_code == 0
    assert not (tmp_path / "up" / "up").exists()
    assert sorted(p.relative_to(tmp_path / "up").as_posix() for p in (tmp_path / "up").rglob("*.wav")) == [
        "d/sub/y.wav",
        "d/x.wav",
    ]


def test_a_bad_file_fails_alone_and_the_rest_is_written(tmp_path):
    tone(tmp_path / "a.wav")
    np.save(tmp_path / "b.npy", np.zeros((1, 100), np.float32))
    (tmp_path / "c.wav").write_bytes(b"junk")
    tone(tmp_path / "d.wav")
    result = invoke("run", tmp_path, "-o", tmp_path / "up")
    assert result.exit_code == 1
    assert "b.npy: .npy inputs need --input-rate HZ" in result.stderr and "c.wav: not a readable" in result.stderr
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["a.wav", "d.wav"]


def test_y_overwrites_and_n_skips(tmp_path):
    tone(tmp_path / "a.wav")
    assert invoke("run", tmp_path / "a.wav", "-o", tmp_path / "o.wav").exit_code == 0
    assert invoke("run", tmp_path / "a.wav", "-o", tmp_path / "o.wav").exit_code == 1
    assert invoke("run", tmp_path / "a.wav", "-o", tmp_path / "o.wav", "-y").exit_code == 0
    result = invoke("run", tmp_path / "a.wav", "-o", tmp_path / "o.wav", "-n", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "skipped"


# ------------------------------------------------------------------ one-line errors, flags


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "a.wav", "--dtype", "float8"], "Invalid value for '--dtype'"),
        (["run", "a.wav", "--chunk", "0"], "--chunk: must be a positive number of frames or 'auto', got '0'"),
        (["run", "a.wav", "--overwrite", "--skip-existing"], "--overwrite and --skip-existing exclude each other"),
        (["run", "a.wav", "--bogus"], "No such option: --bogus"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["run", "a.wav", "--threads", "x"], "Invalid value for '--threads'"),
    ],
)
def test_option_errors_are_our_one_line_with_exit_2(tmp_path, args, message):
    tone(tmp_path / "a.wav", seconds=0.1)
    done = cli(*args, cwd=tmp_path)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("convt-audio: error: ") and message in lines[0]
    assert "╭" not in done.stderr.decode()


def test_enums_ignore_case_and_flags_show_as_flags(tmp_path):
    tone(tmp_path / "a.wav", seconds=0.1)
    result = invoke(
        "run",
        tmp_path / "a.wav",
        "-o",
        tmp_path / "o.wav",
        "--subtype",
        "pcm_24",
        "--dtype",
        "FLOAT64",
        "--clip",
        "CLAMP",
    )
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "o.wav")).subtype == "PCM_24"
    help_text = invoke("run", "--help").stdout
    for flag in ("--overwrite", "--json", "--recursive", "--quiet", "--fail-fast"):
        line = next(line for line in help_text.splitlines() if flag in line)
        assert "<bool>" not in line, line


# ------------------------------------------------------------------ reports


def test_clipping_is_reported_even_quietly_and_rescale_fits_the_peak(tmp_path):
    t = np.arange(16000) / 16000
    sf.write(str(tmp_path / "loud.wav"), np.sign(np.sin(2 * np.pi * 200 * t)) * 0.999, 16000, subtype="PCM_16")
    result = invoke("run", tmp_path / "loud.wav", "-o", tmp_path / "a.wav", "-q")
    assert result.exit_code == 0
    assert "loud.wav" not in result.stderr.split("warning")[0]  # nothing but the warning
    assert "samples clipped (" in result.stderr and "--clip rescale" in result.stderr
    # -D: rounded plainly, so that the scaled samples are within half a step of the float output
    result = invoke("run", tmp_path / "loud.wav", "-o", tmp_path / "b.wav", "--clip", "rescale", "--json", "-D")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["clipped_samples"] == 0 and report["gain_db"] < -0.5
    scaled = sf.read(str(tmp_path / "b.wav"), dtype="int16")[0]
    assert np.abs(scaled).max() == 32767  # the peak lands on the largest step
    reference = invoke("run", tmp_path / "loud.wav", "-o", tmp_path / "f.wav", "--subtype", "FLOAT")
    assert reference.exit_code == 0
    full = sf.read(str(tmp_path / "f.wav"))[0]
    np.testing.assert_allclose(scaled / 32768, full * 10 ** (report["gain_db"] / 20), atol=1 / 32768)


def test_progress_in_a_terminal_keeps_result_lines_whole(tmp_path):
    import pty
    import re

    for name in ("a", "b", "c"):
        tone(tmp_path / f"{name}.wav", seconds=1.0)
    pid, fd = pty.fork()
    if pid == 0:  # the child: stderr and stdout are the terminal
        os.chdir(tmp_path)
        os.environ["PYTHONPATH"] = PACKAGE_HOME
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-c",
                "from cli.main import app; app()",
                "run",
                "a.wav",
                "b.wav",
                "c.wav",
                "-o",
                "out",
                "--chunk",
                "512",
                "-j",
                "2",
            ],
        )
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace")).replace("\r", "\n")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for name in ("a", "b", "c"):  # each result is a line of its own, not fused with a bar
        assert any(
            re.fullmatch(rf"{name}\.wav -> out/{name}\.wav \(1\.00 s at 48000 Hz, [0-9.]+x real time\)", line)
            for line in lines
        ), lines
    assert "3 inputs: 3 written, 0 skipped, 0 failed" in lines


def test_info_says_what_runs_and_how_in_numbers(tmp_path, monkeypatch):
    import convt_audio.model.engines

    monkeypatch.setattr(convt_audio.model.engines, "cuda_may_exist", lambda: False)  # a machine without NVIDIA's driver
    facts = json.loads(invoke("info", "--json").stdout)
    assert (
        facts["engine"] == "numpy-resampler" and facts["device"] == "cpu" and "by an FFT" in facts["engine_explained"]
    )
    assert facts["rate_factor"] == 3 and facts["lookahead_input_frames"] == 106 and "#" not in facts["layers"][0]
    assert isinstance(facts["layers"][0]["channels_in"], int) and "joint when" in facts["channels_explained"]
    text = invoke("info", "hifigan-v2").stdout
    assert "engine:          torch" in text and "look-ahead:" in text and "latency" not in text
    facts = json.loads(invoke("info", "hifigan-v2", "--json").stdout)
    assert {row.get("computed_as") for row in facts["layers"] if row["type"] == "conv_transpose1d"} == {"polyphase"}
    result = invoke("info", "sinc-x2", "-w", tmp_path / "nope.safetensors")
    assert result.exit_code == 2 and result.stdout.count("nope.safetensors") == 1
