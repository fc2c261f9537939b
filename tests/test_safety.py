"""Nothing lost, nothing silent: one test per reported failure of pipes, caches, rates, streams and
names (the Ray rows are in test_cluster.py). Each names the reproduction it guards."""

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from clitools import PACKAGE_HOME, ROOT, cli, invoke, one_error_line, shell, tone
from safetensors.numpy import save_file


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CONVT_AUDIO_CACHE", str(folder))
    return folder


# ------------------------------------------------------------------ an input is never written


def test_stdin_onto_its_own_file_is_refused(tmp_path):
    """CA run - -o a.wav -y < a.wav replaced a.wav with its own output."""
    tone(tmp_path / "a.wav")
    before = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "link.wav").symlink_to("a.wav")
    (tmp_path / "hard.wav").hardlink_to(tmp_path / "a.wav")
    for target in ("a.wav", "link.wav", "hard.wav", "./sub/../a.wav"):
        done = shell(f"$CA run - -o {target} -y < a.wav", tmp_path)
        assert done.returncode == 2, done.stderr
        one_error_line(done.stderr, "is the file standard input reads; choose another output")
    done = shell("$CA run a.wav -o - >> a.wav", tmp_path)  # standard output appends to the input
    assert done.returncode == 2
    one_error_line(done.stderr, "standard output: the output of a.wav is the input a.wav")
    assert (tmp_path / "a.wav").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "hard.wav", "link.wav"]


def test_stdin_into_a_folder_is_a_usage_error(tmp_path):
    tone(tmp_path / "a.wav")
    (tmp_path / "od").mkdir()
    for target in ("od", "od/", "new/"):
        done = shell(f"$CA run - -o {target} < a.wav", tmp_path)
        assert done.returncode == 2
        one_error_line(done.stderr, "is a folder; standard input has no name to give its output there")
    assert list((tmp_path / "od").iterdir()) == [] and not (tmp_path / "new").exists()


def test_an_input_that_a_planned_output_would_create_is_refused(tmp_path):
    """CA run a.wav a.48000hz.wav wrote a.48000hz.wav, then processed it again (exit 0, 2 written)."""
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", tmp_path / "a.48000hz.wav")
    assert result.exit_code == 2  # sox's IN OUT order: the hint, before any work
    one_error_line(result.stderr, "a.48000hz.wav: no such input; every path is an input here")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
    tone(tmp_path / "a.48000hz.wav")  # both exist: the batch would overwrite its second input
    result = invoke("run", tmp_path / "a.wav", tmp_path / "a.48000hz.wav", "--overwrite")
    assert result.exit_code == 2
    one_error_line(result.stderr, "a.48000hz.wav: the output of")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.48000hz.wav", "a.wav"]


def test_the_stale_part_sweep_never_takes_a_named_input_or_a_copy(tmp_path):
    """A salvaged .part given as the input was deleted by the sweep before it was read."""
    tone(tmp_path / "x.wav")
    dead = 4_000_000  # above any pid this machine hands out
    host = __import__("socket").gethostname()
    salvaged = tmp_path / f".t.wav.{host}-{dead}.abcd1234.part"
    marked = tmp_path / f".u.wav.{host}-{dead}.abcd1234.part"
    for path in (salvaged, marked):
        path.write_bytes((tmp_path / "x.wav").read_bytes())
        os.utime(path, (0, 0))
    os.setxattr(marked, "user.convt-audio", b"part")  # as ours carry (cp -a would copy it)
    result = invoke("run", salvaged, marked, "-o", tmp_path / "out/")
    assert result.exit_code == 0, result.output
    assert salvaged.read_bytes() == marked.read_bytes() == (tmp_path / "x.wav").read_bytes()
    assert "removed" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(  # .part is no format: .wav
        [salvaged.with_suffix(".wav").name, marked.with_suffix(".wav").name]
    )


def test_o_dir_puts_a_named_file_at_dir_name(tmp_path, monkeypatch):
    """run in/a.wav -o out/ wrote out/in/a.wav; cp, sox and ffmpeg users expect out/a.wav."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in" / "deep").mkdir(parents=True)
    tone(tmp_path / "in" / "a.wav")
    tone(tmp_path / "in" / "deep" / "b.wav")
    assert invoke("run", "in/a.wav", "in/deep/b.wav", "-o", "out/").exit_code == 0
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "a.wav",
        "b.wav",
    ]
    assert invoke("run", "in", "-R", "-o", "tree/").exit_code == 0  # a folder keeps its layout
    assert (tmp_path / "tree" / "deep" / "b.wav").exists()
    tone(tmp_path / "b.wav")
    result = invoke("run", "b.wav", "in/deep/b.wav", "-o", "clash/")
    assert result.exit_code == 2 and "would both write" in result.stderr and not (tmp_path / "clash").exists()


def test_a_long_output_name_fits_with_its_temporary_name(tmp_path):
    """A valid 234-byte name failed: the .part name added about 25 bytes."""
    tone(tmp_path / "a.wav")
    name = "z" * 230 + ".wav"
    result = invoke("run", tmp_path / "a.wav", "-o", tmp_path / name)
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / name)).samplerate == 48000
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


# ------------------------------------------------------------------ what was promised, or a failure


def test_a_stdin_stream_shorter_than_its_header_fails(tmp_path):
    """head -c 197507 speech.wav | CA run - -o o.wav wrote half the file with exit 0."""
    tone(tmp_path / "s.wav", seconds=12.34)
    data = (tmp_path / "s.wav").read_bytes()
    (tmp_path / "half.wav").write_bytes(data[:197507])
    done = cli("run", "-", "-o", tmp_path / "o.wav", stdin=(tmp_path / "half.wav").read_bytes())
    assert done.returncode == 1
    one_error_line(done.stderr, "-: truncated: the stream's header promises 197440 frames, it ended after 98731")
    at = data.find(b"data")
    huge = data[: at + 4] + struct.pack("<I", 0xFFFFFFF0) + data[at + 8 : 200000]
    done = cli("run", "-", "-o", tmp_path / "o.wav", stdin=huge)
    assert done.returncode == 1 and b"truncated" in done.stderr
    assert not (tmp_path / "o.wav").exists() and not list(tmp_path.glob(".*.part"))
    # the lengths a pipe writer puts when it does not know one are not promises
    for size in (0xFFFFFFFF, 0x7FFFF000):
        unknown = data[: at + 4] + struct.pack("<I", size) + data[at + 8 :]
        done = cli("run", "-", "-o", tmp_path / f"{size}.wav", stdin=unknown)
        assert done.returncode == 0, done.stderr
        assert sf.info(str(tmp_path / f"{size}.wav")).frames == 3 * 197440


def test_npy_on_stdin_is_mapped_not_held(tmp_path):
    """A 400 MB .npy on stdin peaked at 835 MB (82 MB as a path)."""
    frames = 25_000_000  # 100 MB of float32
    np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.float32, (1, frames))[:] = 0.25
    code = (
        "import resource, sys\nfrom cli.main import app\ntry:\n    app()\nfinally:\n"
        "    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "    open('peak.txt', 'w').write(peak.split()[1])\n"
    )
    done = shell(
        f'{__import__("sys").executable} -c "{code}" run - --input-rate 16000 -o - -t raw < big.npy '
        f"| wc -c > bytes.txt",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert int((tmp_path / "bytes.txt").read_text()) == 3 * frames * 4
    assert int((tmp_path / "peak.txt").read_text()) < 220_000  # kB: far below the array's 100 MB twice
    assert not list(Path("/tmp").glob("convt-audio-stdin-*"))


def test_npy_without_channels_names_the_input(tmp_path):
    """A (0, 100) .npy: the error named the temporary output file."""
    np.save(tmp_path / "zero.npy", np.zeros((0, 100), np.float32))
    result = invoke("run", tmp_path / "zero.npy", "--input-rate", 16000, "-o", tmp_path / "o.wav")
    assert result.exit_code == 1
    one_error_line(result.stderr, "zero.npy: .npy input of shape (0, 100) has no channels")
    assert ".part" not in result.stderr and list(tmp_path.iterdir()) == [tmp_path / "zero.npy"]


# ------------------------------------------------------------------ closed and broken standard streams


@pytest.mark.parametrize(
    "redirect,code,message",
    [
        ("run a.wav -o x.wav >&-", 0, None),
        ("run a.wav -o x.wav 2>&-", 0, None),
        ("info sinc-x3 >&-", 2, "standard output is closed; info writes there"),
        ("configs >&-", 2, "standard output is closed; configs writes there"),
        ("run a.wav -o - >&-", 2, "standard output is closed; -o - writes there"),
        ("run a.wav -o x.wav --json >&-", 2, "standard output is closed; --json writes there"),
        ("run - -o x.wav <&-", 2, "standard input is closed; - reads from it"),
    ],
)
def test_closed_standard_streams(tmp_path, redirect, code, message):
    """>&- crashed with AttributeError 'NoneType' … isatty; <&- gave OSError [Errno 9]."""
    tone(tmp_path / "a.wav")
    done = shell(f"$CA {redirect}", tmp_path)
    assert done.returncode == code, done.stderr
    if message:
        one_error_line(done.stderr, message)
        assert not (tmp_path / "x.wav").exists()
    else:
        assert b"Traceback" not in done.stderr and sf.info(str(tmp_path / "x.wav")).frames == 24000


@pytest.mark.parametrize("kind", ["flac", "wav", "raw"])
def test_a_pipe_that_closes_or_a_full_disk_is_one_line(tmp_path, kind):
    """-t flac | head -c 100 printed an 8-line cffi traceback; >/dev/full 'is the disk full?'."""
    tone(tmp_path / "a.wav", seconds=20)
    done = shell(f"$CA run a.wav -o - -t {kind} | head -c 100 > /dev/null", tmp_path)
    assert done.returncode == 1
    one_error_line(done.stderr, "a.wav: <stdout>: the reading end of the pipe closed")
    done = shell(f"$CA run a.wav -o - -t {kind} > /dev/full", tmp_path)
    assert done.returncode == 1
    one_error_line(done.stderr, "a.wav: <stdout>: write failed (No space left on device)")


def test_json_reader_that_closes_stops_the_batch_with_one_line(tmp_path):
    """run dir_of_6/ --json | head -c 10 stopped after 2 of 6 files with exit 1 and no error line."""
    (tmp_path / "d").mkdir()
    for i in range(6):
        tone(tmp_path / "d" / f"f{i}.wav")
    done = shell("$CA run d/ -o out/ --json | head -c 10 > /dev/null", tmp_path)
    assert done.returncode == 1
    one_error_line(done.stderr, "standard output closed after")
    assert b"input(s) not run" in done.stderr and not list((tmp_path / "out").glob(".*.part"))


def test_info_into_a_closed_pipe_is_one_line(tmp_path):
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that has gone away: every write fails
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import app; app()", "info", "hifigan-v1"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    os.close(write_end)
    assert done.returncode == 1
    one_error_line(done.stderr, "standard output: write failed (Broken pipe)")


# ------------------------------------------------------------------ names printed are escaped


def test_names_with_control_characters_are_escaped(tmp_path):
    """design -o $'t\\e[2J\\e]0;PWNED\\a\\nX' sent raw ESC, OSC and newline bytes to the terminal."""
    name = "t\x1b[2J\x1b]0;PWNED\a\nX"
    done = cli("design", "sinc", "--factor", 3, "-o", tmp_path / name)
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stderr and b"\a" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert b"\\x1b[2J" in done.stderr
    done = cli("init", tmp_path / f"{name}.yaml", "-o", tmp_path / f"{name}.pt")
    assert done.returncode == 0 and b"\x1b" not in done.stderr and len(done.stderr.splitlines()) == 1
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "evil\x1b[2J",
                "description": "bell\a\nnext",
                "layers": [{"type": "relu"}, {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1}],
            }
        )
    )
    assert cli("init", config, "-o", tmp_path / "c.safetensors").returncode == 0
    done = cli("info", config, "-w", tmp_path / "c.safetensors")
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stdout and b"\a" not in done.stdout and b"evil\\x1b[2J" in done.stdout


# ------------------------------------------------------------------ numbers too big are usage errors


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "a.wav", "-r", "1e400"], "--rate: at most 2147483647 Hz"),
        (["run", "x.npy", "--input-rate", "1e400", "-o", "o.wav"], "--input-rate: at most 2147483647 Hz"),
        (["run", "x.npy", "--input-rate", "1e30", "-o", "o.wav"], "--input-rate: at most 2147483647 Hz"),
        (["run", "x.npy", "--input-rate", "2147483648", "-o", "o.wav"], "--input-rate: at most 2147483647 Hz"),
        (
            ["run", "x.npy", "--input-rate", "2147483647", "-c", "sinc-x3", "-o", "o.wav"],
            "--input-rate 2147483647: output sample rate",
        ),
        (
            ["run", "x.npy", "-c", "big.yaml", "-o", "o.wav"],
            "output_sample_rate: must be an integer from 1 to 2147483647",
        ),
        (["info", "sinc-x3", "--input-rate", "1e400"], "--input-rate: at most 2147483647 Hz"),
        (["run", "a.wav", "-r", "2147483648"], "--rate: at most 2147483647 Hz"),
        (
            ["run", "a.wav", "-r", "1000000000"],
            "--rate: resampling goes up to 6144000 Hz (8 × 768 kHz), got 1000000000",
        ),
        (["design", "sinc", "--factor", "3", "--stopband", "nan", "-o", "d"], "--stopband: must be a finite number"),
        (
            ["design", "sinc", "--factor", "200000", "-o", "d"],
            "--factor 200000: needs a 42,400,001-tap kernel at 140 dB",
        ),
    ],
)
def test_numbers_too_big_are_one_usage_line(tmp_path, cache, args, message):
    """OverflowError, 'I' format requires …, 37-line tracebacks, a --factor the user never gave."""
    tone(tmp_path / "a.wav")
    np.save(tmp_path / "x.npy", np.zeros((1, 100), np.float32))
    (tmp_path / "big.yaml").write_text(
        yaml.safe_dump(
            {
                "output_sample_rate": 2147483648,
                "layers": [{"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1}],
            }
        )
    )
    done = cli(*args, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    one_error_line(done.stderr, message)
    assert b"--factor" not in done.stderr or args[0] == "design"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "big.yaml", "x.npy"]  # no cache, no files


# ------------------------------------------------------------------ a cache is checked, never trusted


def test_a_tampered_or_foreign_cache_entry_is_redesigned(tmp_path, cache):
    """A sinc-x2 config copied to sinc-160-147.yaml made 88200 Hz audio; taps ×0.5 were used as they were."""
    tone(tmp_path / "in.wav", rate=44100, seconds=1)
    assert invoke("run", tmp_path / "in.wav", "-r", 48000, "-o", tmp_path / "first.wav").exit_code == 0
    first = sf.read(str(tmp_path / "first.wav"))[0]
    entry = cache / "sinc-160-147.safetensors"
    from safetensors import safe_open

    with safe_open(str(entry), framework="numpy") as handle:
        meta = handle.metadata()
        stages = {name: handle.get_tensor(name) for name in handle.keys()}
    assert sorted(stages) == ["stage0", "stage1"]  # the sharp ×2 and the short 80/147
    save_file({**stages, "stage1": stages["stage1"] * 0.5}, str(entry), metadata=meta)  # same key and checksum
    (cache / "sinc-160-147.yaml").write_text((ROOT / "configs" / "sinc-x2.yaml").read_text())
    result = invoke("run", tmp_path / "in.wav", "-r", 48000, "-o", tmp_path / "second.wav", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output_rate"] == 48000
    assert sf.info(str(tmp_path / "second.wav")).samplerate == 48000
    np.testing.assert_array_equal(sf.read(str(tmp_path / "second.wav"))[0], first)
    with safe_open(str(entry), framework="numpy") as handle:  # rewritten with the right taps
        np.testing.assert_array_equal(handle.get_tensor("stage1"), stages["stage1"])
    for garbage in (b"", b"not safetensors", entry.read_bytes()[:100]):
        entry.write_bytes(garbage)
        assert invoke("run", tmp_path / "in.wav", "-r", 48000, "-o", tmp_path / "g.wav", "-y").exit_code == 0
        np.testing.assert_array_equal(sf.read(str(tmp_path / "g.wav"))[0], first)


def test_a_cache_that_cannot_be_written_never_fails_a_run(tmp_path, cache, monkeypatch):
    """A full tmpfs as the cache: exit 1, 'SafetensorError: … No space left on device'."""
    import safetensors.numpy

    tone(tmp_path / "in.wav", rate=44100)

    def full(*args, **kwargs):
        from safetensors import SafetensorError

        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    result = invoke("run", tmp_path / "in.wav", "-r", 48000, "-o", tmp_path / "o.wav")
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "o.wav")).frames == 24000
    assert not cache.exists() or not list(cache.iterdir())  # no half-written entry


def test_nothing_unusable_is_designed_or_cached(tmp_path, cache):
    """-r 44101 designed for 3.8 s and left a 6-33 MB pair in the cache, then failed; design wrote
    files that run refused. (44101 Hz now works: test_resample.py.)"""
    sf.write(str(tmp_path / "in.wav"), np.zeros(30), 3)  # 3 Hz: ×2,048,000 is past the stride bound
    done = cli("run", tmp_path / "in.wav", "-r", 6144000, timeout=20)
    assert done.returncode == 2
    one_error_line(done.stderr, "--rate 6144000: 3 Hz -> 6144000 Hz is a 2048000 resampler, which needs a")
    assert b"and a stride of 2,048,000 (at most 1,048,576)" in done.stderr
    assert not cache.exists()
    assert cli("design", "sinc", "--factor", 200000, "-o", tmp_path / "d").returncode == 2
    assert not list(tmp_path.glob("d*"))


# ------------------------------------------------------------------ every resource bounded first


def _write_config(path, layers):
    path.write_text(yaml.safe_dump({"layers": layers}))
    return path


def test_the_budget_follows_ulimit(tmp_path):
    import subprocess
    import sys

    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY)); "
        "from convt_audio.core.process import memory_budget; print(memory_budget())"
    )
    env = {**os.environ, "PYTHONPATH": PACKAGE_HOME}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == (3 << 30) // 2


def test_a_block_too_big_for_memory_is_refused_first(tmp_path):
    """2 × conv_transpose1d (k=65536, s=65536) on one frame asked for 17 GB for one block."""
    wide = {
        "type": "conv_transpose1d",
        "in_channels": 1,
        "out_channels": 1,
        "kernel_size": 65536,
        "stride": 65536,
        "bias": False,
    }
    config = _write_config(tmp_path / "c.yaml", [wide, dict(wide)])
    assert invoke("init", config, "-o", tmp_path / "w.safetensors").exit_code == 0
    np.save(tmp_path / "one.npy", np.ones((1, 1), np.float32))
    done = cli(
        "run",
        tmp_path / "one.npy",
        "--input-rate",
        "1/4294967296",
        "-c",
        config,
        "-w",
        tmp_path / "w.safetensors",
        "-o",
        tmp_path / "o.wav",
        timeout=60,
    )
    assert done.returncode == 1
    one_error_line(done.stderr, "one.npy: layers[1] would hold 17,180,393,472 bytes (17.2 GB")
    assert b"over the memory budget" in done.stderr and b"CONVT_AUDIO_MAX_MEMORY" in done.stderr
    assert not (tmp_path / "o.wav").exists()


def test_automatic_blocks_shrink_to_the_budget_and_give_the_same_samples(tmp_path, monkeypatch):
    """A 45,000-branch parallel took 3.3 GB for 1 s of audio and grew with the length."""
    config = _write_config(
        tmp_path / "c.yaml",
        [
            {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": 1},
            {"type": "parallel", "branches": [[{"type": "relu"}] for _ in range(300)]},
        ],
    )
    assert invoke("init", config, "-o", tmp_path / "w.safetensors").exit_code == 0
    tone(tmp_path / "a.wav", seconds=2)
    common = ["-c", config, "-w", tmp_path / "w.safetensors", "--subtype", "FLOAT"]
    assert invoke("run", tmp_path / "a.wav", *common, "-o", tmp_path / "free.wav").exit_code == 0
    monkeypatch.setenv("CONVT_AUDIO_MAX_MEMORY", "4M")  # 300 branches × 4 bytes: ~800 frames a block
    assert invoke("run", tmp_path / "a.wav", *common, "-o", tmp_path / "tight.wav").exit_code == 0
    np.testing.assert_allclose(
        sf.read(str(tmp_path / "tight.wav"))[0], sf.read(str(tmp_path / "free.wav"))[0], rtol=1e-6, atol=1e-6
    )
    from convt_audio.model.config import load_config
    from convt_audio.model.engines import build_engine
    from convt_audio.model.weights import load_params
    from convt_audio.run.runner import fit_chunk

    cfg = load_config(config)
    engine = build_engine(cfg, load_params(cfg, tmp_path / "w.safetensors")[0], "cpu")
    chunk = fit_chunk(engine, None, 1, 4 << 20)
    assert engine.block_bytes(chunk, 1)[0] <= 1 << 20 < engine.block_bytes(2 * chunk, 1)[0]
    result = invoke("run", tmp_path / "a.wav", *common, "-o", tmp_path / "user.wav", "--chunk", 100000)
    assert result.exit_code == 1 and "a smaller --chunk (it is 100000)" in result.stderr
    monkeypatch.setenv("CONVT_AUDIO_MAX_MEMORY", "lots")  # a usage error once, before any file
    result = invoke("run", tmp_path / "a.wav", *common, "-o", tmp_path / "bad.wav")
    assert result.exit_code == 2
    one_error_line(result.stderr, "CONVT_AUDIO_MAX_MEMORY: 'lots' is not a size in bytes")


def test_an_output_larger_than_the_free_space_is_refused_first(tmp_path, monkeypatch):
    """A ×10⁶ config on a 4 KB .npy filled a 50 MB tmpfs before failing."""
    import shutil
    from collections import namedtuple

    tone(tmp_path / "a.wav")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 0, 10**4))
    result = invoke("run", tmp_path / "a.wav", "-o", tmp_path / "o.wav")
    assert result.exit_code == 1
    one_error_line(result.stderr, "o.wav: the output needs 48 kB (24,000 frames × 1 channel(s) of PCM_16), but")
    assert not (tmp_path / "o.wav").exists()
    assert invoke("run", tmp_path / "a.wav", "-o", tmp_path / "o.flac").exit_code == 1  # FLAC: bounded by PCM
    assert invoke("run", tmp_path / "a.wav", "-o", tmp_path / "o.ogg").exit_code == 0  # lossy: not estimated


# ------------------------------------------------------------------ weights: the right tensor, every bit


def _weight_norm_checkpoint(tmp_path, zero=False):
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.utils.weight_norm(torch.nn.Conv1d(1, 4, 5, padding=2)),
        torch.nn.LeakyReLU(0.1),
        torch.nn.utils.weight_norm(torch.nn.ConvTranspose1d(4, 1, 4, stride=2, padding=1)),
    )
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if zero:
        state["0.weight_v"][:] = 0
    torch.save(state, tmp_path / "wn.pt")
    config = _write_config(
        tmp_path / "wn.yaml",
        [
            {"type": "conv1d", "in_channels": 1, "out_channels": 4, "kernel_size": 5, "padding": 2},
            {"type": "leaky_relu", "negative_slope": 0.1},
            {
                "type": "conv_transpose1d",
                "in_channels": 4,
                "out_channels": 1,
                "kernel_size": 4,
                "stride": 2,
                "padding": 1,
            },
        ],
    )
    return module, config


def test_float64_folds_weight_norm_in_float64(tmp_path):
    """--dtype float64 folded in float64, rounded to float32, and differed from the model by ~4e-6."""
    import torch

    module, config = _weight_norm_checkpoint(tmp_path)
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 4000)
    np.save(tmp_path / "x.npy", x[None])
    result = invoke(
        "run",
        tmp_path / "x.npy",
        "--input-rate",
        8000,
        "-c",
        config,
        "-w",
        tmp_path / "wn.pt",
        "--dtype",
        "float64",
        "--subtype",
        "DOUBLE",
        "-o",
        tmp_path / "y.wav",
        "--chunk",
        7,
    )
    assert result.exit_code == 0, result.output
    with torch.no_grad():
        expected = module.double()(torch.from_numpy(x)[None, None]).numpy()[0, 0]
    np.testing.assert_allclose(sf.read(str(tmp_path / "y.wav"))[0], expected, rtol=0, atol=1e-13)


def test_a_zero_norm_v_is_named(tmp_path):
    """A zero-norm weight_v was reported as 'generator.0.weight' holding 1 non-finite value."""
    _, config = _weight_norm_checkpoint(tmp_path, zero=True)
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "-c", config, "-w", tmp_path / "wn.pt", "-o", tmp_path / "o.wav")
    assert result.exit_code == 2
    one_error_line(result.stderr, "tensor '0.weight_v' for layers[0] has a zero norm where weight norm divides by it")


# ------------------------------------------------------------------ smaller cases


def test_plot_of_a_silent_file(tmp_path):
    """plot a.wav silent.wav gave 'ValueError: minvalue must be less than or equal to maxvalue'."""
    pytest.importorskip("matplotlib")
    tone(tmp_path / "a.wav")
    sf.write(str(tmp_path / "silent.wav"), np.zeros(96000), 192000)
    result = invoke("plot", tmp_path / "a.wav", tmp_path / "silent.wav", "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_spectrogram_reads_db_re_full_scale_with_the_same_window_in_seconds():
    from convt_audio.plots import SPECTROGRAM_FLOOR_DB, spectrogram_dbfs

    for rate in (16000, 48000):
        t = np.arange(rate) / rate
        times, freqs, db = spectrogram_dbfs(np.sin(2 * np.pi * 1000 * t), rate)
        assert freqs[1] - freqs[0] == pytest.approx(50.0)  # 20 ms windows at either rate
        assert abs(db[np.argmin(abs(freqs - 1000)), len(times) // 2]) < 0.1  # a full-scale sine: 0 dB
        assert 1.0 - 0.005 <= times[-1] <= 1.0  # frames centred on the signal, to its end
    assert (spectrogram_dbfs(np.zeros(1000), 8000)[2] == SPECTROGRAM_FLOOR_DB).all()


def test_the_automatic_block_on_a_gpu_fits_its_free_memory(monkeypatch):
    """On CUDA a block's buffers live on the device: the automatic block shrinks to a quarter
    of its free memory (plus what torch's allocator holds unused) where that is below the host
    budget, and a block given by hand that cannot fit it is refused naming the device."""
    import torch

    from convt_audio.core.errors import AudioError
    from convt_audio.run.runner import fit_chunk

    class OnGpu:  # what fit_chunk reads of an engine
        torch_device = torch.device("cuda:0")

        def preferred_chunk(self):
            return 4096

        def min_input_frames(self):
            return 1

        def block_bytes(self, frames, batch):
            return frames * batch * 1000, "layers[3] (conv1d)", frames * batch * 600

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3_000_000, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 1_500_000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 500_000)
    assert fit_chunk(OnGpu(), None, 1, budget=1 << 40) == 512  # 4 MB free in all: 512 × 1000 ≤ 1 MB
    assert fit_chunk(OnGpu(), None, 16, budget=1 << 40) == 32  # sixteen files' rows in one block
    assert fit_chunk(OnGpu(), None, 1, budget=1 << 20) == 256  # the host budget where it is less
    with pytest.raises(AudioError, match=r"over the 4 MB free on cuda:0; use a smaller --chunk"):
        fit_chunk(OnGpu(), 8192, 1, budget=1 << 40)
