"""Nothing silently wrong, inputs untouched, bounded resources: one test per reported failure.

Cases where permissions matter run the command as an unprivileged user (``setpriv``), since root
ignores file modes; where that user cannot run this checkout's interpreter they are skipped with
the reason.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from clitools import PACKAGE_HOME, invoke
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


def one_error_line(result, text):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.stderr


def tone(path, seconds=0.5, rate=16000, subtype="PCM_16"):
    t = np.arange(int(seconds * rate)) / rate
    data = 0.5 * np.sin(2 * np.pi * 220 * t)
    sf.write(str(path), data, rate, subtype=subtype)
    return data


def write_config(path, layers, **top):
    path.write_text(yaml.safe_dump({"layers": layers, **top}))
    return path


CONV = {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": 1}


# ------------------------------------------------------------------ 1, 2: non-finite values


def test_nan_weights_are_a_weights_error_naming_the_tensor(tmp_path):
    from convt_audio.model.config import load_config
    from convt_audio.model.weights import read_tensors

    taps = read_tensors(load_config("sinc-x2").weights)["0.weight"].copy()
    taps[0, 0, 10] = np.nan
    save_file({"0.weight": taps}, str(tmp_path / "nan.safetensors"))
    tone(tmp_path / "n.wav")
    result = invoke(
        "run",
        tmp_path / "n.wav",
        "-c",
        "sinc-x2",
        "-w",
        tmp_path / "nan.safetensors",
        "-o",
        tmp_path / "o.wav",
        "--clip",
        "error",
        "--json",
    )
    assert result.exit_code == 2 and result.stdout == ""
    one_error_line(
        result, "tensor '0.weight' for layers[0] holds 1 non-finite value(s) (first nan at index (0, 0, 10))"
    )
    assert not (tmp_path / "o.wav").exists()
    result = invoke("info", "sinc-x2", "-w", tmp_path / "nan.safetensors")
    assert result.exit_code == 2 and "non-finite" in result.stderr
    config = write_config(tmp_path / "c.yaml", [CONV])
    save_file(
        {"0.weight": np.ones((1, 1, 3), np.float32), "0.bias": np.array([np.inf], np.float32)},
        str(tmp_path / "inf.safetensors"),
    )
    result = invoke(
        "run", tmp_path / "n.wav", "-c", config, "-w", tmp_path / "inf.safetensors", "-o", tmp_path / "o.wav"
    )
    assert result.exit_code == 2
    one_error_line(result, "tensor '0.bias' for layers[0] holds 1 non-finite value(s) (first inf")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_input_sample_fails_that_file_naming_the_frame(tmp_path, bad):
    data = tone(tmp_path / "f.wav", subtype="FLOAT").astype(np.float32)
    data[1000] = bad
    sf.write(str(tmp_path / "f.wav"), data, 16000, subtype="FLOAT")
    tone(tmp_path / "good.wav")
    result = invoke("run", tmp_path / "f.wav", tmp_path / "good.wav", "-o", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert any(f"f.wav: non-finite sample ({bad}) at frame 1000, channel 0" in line for line in lines)
    assert not any("Warning" in line or "RuntimeWarning" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.wav"]
    # asked for: replaced with 0, reported, and the rest of the output is what a 0 there gives
    result = invoke(
        "run", tmp_path / "f.wav", "-o", tmp_path / "z.wav", "--non-finite", "zero", "--json", "--subtype", "FLOAT"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["non_finite_input_samples_zeroed"] == 1
    assert "1 NaN/Inf input samples replaced with 0" in result.stderr
    data[1000] = 0.0
    sf.write(str(tmp_path / "zero.wav"), data, 16000, subtype="FLOAT")
    assert invoke("run", tmp_path / "zero.wav", "-o", tmp_path / "ref.wav", "--subtype", "FLOAT").exit_code == 0
    assert np.array_equal(sf.read(str(tmp_path / "z.wav"))[0], sf.read(str(tmp_path / "ref.wav"))[0])


def test_non_finite_output_is_counted_and_refused_under_clip_error(tmp_path):
    config = write_config(
        tmp_path / "big.yaml",
        [{"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1, "bias": False}],
    )
    save_file({"0.weight": np.full((1, 1, 1), 1e5, np.float32)}, str(tmp_path / "w.safetensors"))
    tone(tmp_path / "a.wav")  # 0.5 · 1e5 overflows float16 (max 65504)
    args = ["run", tmp_path / "a.wav", "-c", config, "-w", tmp_path / "w.safetensors", "--dtype", "float16"]
    result = invoke(*args, "-o", tmp_path / "o.wav", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["non_finite_output_samples"] > 1000
    assert "NaN/Inf output samples (an overflow) written as 0 or ±1" in result.stderr
    assert np.isfinite(sf.read(str(tmp_path / "o.wav"))[0]).all()
    result = invoke(*args, "-o", tmp_path / "e.wav", "--clip", "error")
    assert result.exit_code == 1 and "non-finite samples (NaN/Inf: an overflow)" in result.stderr
    assert not (tmp_path / "e.wav").exists()


# ------------------------------------------------------------------ 4, 8: bounded configs


def test_yaml_alias_bomb_and_deep_nesting_are_refused_fast(tmp_path):
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nlayers: *i\n")
    start = time.perf_counter()
    result = invoke("info", bomb)
    assert result.exit_code == 2 and time.perf_counter() - start < 5
    one_error_line(result, "bomb.yaml: line 2: YAML aliases (*a) are not allowed in a config")
    deep = tmp_path / "deep.yaml"
    deep.write_text("layers: " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = invoke("info", deep)
    assert result.exit_code == 2
    one_error_line(result, "nested deeper than 64 levels")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"type": ["conv1d"]}, "layers[0].type: ['conv1d'] is not one of"),
        ({"stride": 10**12}, "layers[0].stride: must be at most 1048576, got 1000000000000"),
        ({"dilation": 10**12}, "layers[0].dilation: must be at most 1048576"),
        ({"stride": 10**29}, "layers[0].stride: must be at most 1048576"),
        ({"kernel_size": 10**9}, "layers[0].kernel_size: must be at most 16777216"),
        ({"in_channels": 60000, "out_channels": 60000}, "layers[0]: a weight of shape (60000, 60000, 3) holds"),
        ({"padding_mode": ["zeros"]}, "layers[0].padding_mode: ['zeros'] is not one of"),
    ],
)
@pytest.mark.parametrize("command", ["run", "info", "init"])
def test_absurd_values_are_config_errors_with_the_key(tmp_path, change, message, command):
    config = write_config(tmp_path / "c.yaml", [{**CONV, **change}])
    tone(tmp_path / "a.wav")
    args = {
        "run": ["run", tmp_path / "a.wav", "-c", config, "-o", tmp_path / "o.wav"],
        "info": ["info", config],
        "init": ["init", config, "-o", tmp_path / "w.safetensors"],
    }[command]
    result = invoke(*args)
    assert result.exit_code == 2
    one_error_line(result, message)
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "w.safetensors").exists()


def test_init_and_design_refuse_absurd_sizes_and_seeds(tmp_path):
    config = write_config(tmp_path / "c.yaml", [{**CONV}])
    result = invoke("init", config, "-o", tmp_path / "w.safetensors", "--seed", 10**23)
    assert result.exit_code == 2
    one_error_line(result, "seed: must be an integer in [0, 2**63), got 100000000000000000000000")
    many = [{"type": "conv1d", "in_channels": 8192, "out_channels": 8192, "kernel_size": 3} for _ in range(6)]
    result = invoke("init", write_config(tmp_path / "big.yaml", many), "-o", tmp_path / "w.safetensors")
    assert result.exit_code == 2 and "parameters" in result.stderr and "at most" in result.stderr
    start = time.perf_counter()
    result = invoke("design", "sinc", "--factor", 1_000_000, "-o", tmp_path / "huge")
    assert result.exit_code == 2 and time.perf_counter() - start < 5
    one_error_line(result, "--factor 1000000: needs a 212,000,001-tap kernel at 140 dB (at most 16,777,216)")
    assert not list(tmp_path.glob("huge*"))


def test_threads_are_bounded(tmp_path):
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "-o", tmp_path / "o.wav", "--threads", 1_000_000)
    assert result.exit_code == 2
    one_error_line(result, "--threads: at most")
    assert not (tmp_path / "o.wav").exists()


# ------------------------------------------------------------------ 9, 10, 13: messages


def test_info_without_weights_describes_and_with_bad_weights_says_why_on_stderr(tmp_path):
    config = write_config(tmp_path / "c.yaml", [{**CONV}])
    result = invoke("info", config, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["weights_status"].startswith("none given")
    result = invoke("info", config, "-w", tmp_path / "missing.safetensors", "--json")
    assert result.exit_code == 2
    one_error_line(result, "missing.safetensors: weights file not found")


def test_a_file_name_with_a_newline_is_one_escaped_line(tmp_path):
    bad = tmp_path / "bad\nname.wav"
    bad.write_bytes(b"not audio at all")
    result = invoke("run", bad, "-o", tmp_path / "o.wav", "--json")
    assert result.exit_code == 1
    one_error_line(result, "bad\\nname.wav: not a readable audio file")
    assert "\\n" in json.loads(result.stdout)["error"] and "\n" not in json.loads(result.stdout)["error"]


def test_a_raw_pickle_checkpoint_is_refused_in_one_line(tmp_path):
    import pickle

    (tmp_path / "raw.pt").write_bytes(pickle.dumps({"0.weight": [1.0, 2.0]}))
    config = write_config(tmp_path / "c.yaml", [{**CONV}])
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "-c", config, "-w", tmp_path / "raw.pt", "-o", tmp_path / "o.wav")
    assert result.exit_code == 2
    one_error_line(result, "raw.pt: cannot load checkpoint")


# ------------------------------------------------------------------ 12: no leftovers


def test_stale_temporaries_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    host = socket.gethostname().replace(".", "_")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / f".a.wav.{host}-{dead_pid}.abcd_123.part"
    live = tmp_path / "out" / f".b.wav.{host}-{os.getpid()}.abcd_123.part"
    other_host = tmp_path / "out" / f".c.wav.elsewhere-{dead_pid}.abcd_123.part"
    mine = tmp_path / "out" / "notes.part"
    unmarked = tmp_path / "out" / f".d.wav.{host}-{dead_pid}.abcd_123.part"  # a copy: no mark of ours
    empty = tmp_path / "out" / f".e.wav.{host}-{dead_pid}.abcd_123.part"  # killed before it was marked
    for path in (stale, live, other_host, mine, unmarked, empty):
        path.write_bytes(b"" if path is empty else b"x")
        if path not in (unmarked, empty):
            os.setxattr(path, "user.convt-audio", b"part")
        os.utime(path, (time.time() - 60, time.time() - 60))
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "-o", tmp_path / "out" / "a.wav")
    assert result.exit_code == 0, result.output
    assert "removed 2 temporary file(s) left by runs that died" in result.stderr
    assert not stale.exists() and not empty.exists()
    assert live.exists() and other_host.exists() and mine.exists() and unmarked.exists()
    # scoped to one output (a cluster retry): only that output's stale parts go
    from convt_audio.io.atomic import remove_stale_parts

    for name in ("x.wav", "y[1].wav"):
        (tmp_path / "out" / f".{name}.{host}-{dead_pid}.abcd_123.part").write_bytes(b"x")
        os.setxattr(tmp_path / "out" / f".{name}.{host}-{dead_pid}.abcd_123.part", "user.convt-audio", b"part")
    removed = remove_stale_parts(tmp_path / "out", time.time() + 1, "y[1].wav")
    assert [p.name for p in removed] == [f".y[1].wav.{host}-{dead_pid}.abcd_123.part"]
    assert (tmp_path / "out" / f".x.wav.{host}-{dead_pid}.abcd_123.part").exists()


# ------------------------------------------------------------------ 14: compressed inputs


def test_circular_first_layer_on_mp3_equals_the_decoded_stream(tmp_path):
    rng = np.random.default_rng(1)
    sf.write(str(tmp_path / "x.mp3"), 0.2 * rng.standard_normal(44100 + 77), 44100, format="MP3")
    decoded, rate = sf.read(str(tmp_path / "x.mp3"), dtype="float32")
    sf.write(str(tmp_path / "x.wav"), decoded, rate, subtype="FLOAT")
    config = write_config(
        tmp_path / "circ.yaml",
        [
            {
                "type": "conv_transpose1d",
                "in_channels": 1,
                "out_channels": 1,
                "kernel_size": 9,
                "stride": 2,
                "padding": 4,
                "output_padding": 1,
                "padding_mode": "circular",
            }
        ],
    )
    assert invoke("init", config, "-o", tmp_path / "w.safetensors").exit_code == 0
    for name in ("x.mp3", "x.wav"):
        result = invoke(
            "run",
            tmp_path / name,
            "-c",
            config,
            "-w",
            tmp_path / "w.safetensors",
            "-o",
            tmp_path / f"{name}.out.wav",
            "--subtype",
            "FLOAT",
        )
        assert result.exit_code == 0, result.output
    from_mp3 = sf.read(str(tmp_path / "x.mp3.out.wav"))[0]
    assert np.array_equal(from_mp3, sf.read(str(tmp_path / "x.wav.out.wav"))[0])


# ------------------------------------------------------------------ 16: lazy weights


def test_an_unused_huge_tensor_is_never_read(tmp_path):
    """An .npz whose unused member declares 10 GB (and holds 16 bytes) loads like a small file."""
    config = write_config(tmp_path / "c.yaml", [{**CONV, "bias": False}])
    path = tmp_path / "w.npz"
    np.savez(path, **{"0.weight": np.ones((1, 1, 3), np.float32)})
    header = {"descr": "<f4", "fortran_order": False, "shape": (50_000, 50_000)}
    with zipfile.ZipFile(path, "a") as archive, archive.open("optimizer.state.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, header)
        member.write(b"\0" * 16)
    tone(tmp_path / "a.wav")
    # the peak read in the process itself (VmHWM): ru_maxrss would inherit the high-water mark of
    # this test process across exec, which the full-size vocoder tests raise to gigabytes
    code = (
        "import re, sys; from cli.main import app; sys.argv = ['convt-audio'] + sys.argv[1:]\n"
        "try: app()\nexcept SystemExit as e: print(re.search(r'VmHWM:\\s+(\\d+)', "
        "open('/proc/self/status').read()).group(1), e.code, file=sys.stderr)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "run",
            str(tmp_path / "a.wav"),
            "-c",
            str(config),
            "-w",
            str(path),
            "-o",
            str(tmp_path / "o.wav"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
        cwd=tmp_path,
    )
    rss_kb, code = done.stderr.strip().splitlines()[-1].split()
    assert code == "0", done.stderr
    assert "1 tensor(s) not used by the config: optimizer.state" in done.stderr
    assert int(rss_kb) < 2_000_000  # far below the 10 GB it declares
    shape_wrong = tmp_path / "shape.npz"
    np.savez(shape_wrong, **{"0.weight": np.ones((1, 1, 5), np.float32)})
    result = invoke("info", config, "-w", shape_wrong)
    assert result.exit_code == 2 and "has shape (1, 1, 5), expected (1, 1, 3)" in result.stderr


# ------------------------------------------------------------------ 6, 7, 15: permissions


@pytest.fixture
def as_nobody():
    """A world-writable folder and a runner that executes the CLI as an unprivileged user."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user (as a user, modes already apply)")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    base = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run(
        [*base, sys.executable, "-c", "import convt_audio, cli"],
        capture_output=True,
        cwd="/",
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    if probe.returncode != 0:
        pytest.skip(f"the unprivileged user cannot run this checkout: {probe.stderr.decode()[-200:]}")
    folder = Path(tempfile.mkdtemp(prefix="convt-nobody-"))
    folder.chmod(0o777)

    def run(*args):
        return subprocess.run(
            [*base, sys.executable, "-c", "from cli.main import app; app()", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=folder,
            env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
        )

    yield folder, run
    for path in folder.rglob("*"):
        if path.is_dir():
            path.chmod(0o777)
    shutil.rmtree(folder)


def test_an_unreadable_input_fails_alone(as_nobody):
    folder, run = as_nobody
    for name in ("a.wav", "ro.wav", "b.wav"):
        tone(folder / name)
    (folder / "ro.wav").chmod(0o000)
    done = run("run", "a.wav", "ro.wav", "b.wav", "-o", "out/")
    assert done.returncode == 1, done.stderr
    assert "convt-audio: error: ro.wav: cannot read (Permission denied)" in done.stderr
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a.wav", "b.wav"]


def test_an_unreadable_folder_in_a_recursive_walk_is_an_error_not_silence(as_nobody):
    folder, run = as_nobody
    (folder / "tree" / "locked").mkdir(parents=True)
    tone(folder / "tree" / "a.wav")
    tone(folder / "tree" / "locked" / "b.wav")
    (folder / "tree").chmod(0o777)
    (folder / "tree" / "locked").chmod(0o000)
    done = run("run", "tree", "--recursive", "-o", "out/")
    assert done.returncode == 1, done.stderr
    assert "tree/locked: cannot read this folder (Permission denied); its files were not run" in done.stderr
    assert [p.name for p in (folder / "out").iterdir()] == ["a.wav"]


def test_write_errors_name_the_output_and_exit_codes_fit(as_nobody):
    folder, run = as_nobody
    tone(folder / "a.wav")
    tone(folder / "b.wav")
    (folder / "ro").mkdir()
    (folder / "ro").chmod(0o555)
    done = run("run", "a.wav", "-o", "ro/x.wav")
    assert done.returncode == 1
    assert "ro/x.wav: cannot write in ro (Permission denied)" in done.stderr and ".part" not in done.stderr
    done = run("run", "a.wav", "b.wav", "-o", "ro/sub/")
    assert done.returncode == 2 and "ro/sub/: cannot create the output folder (Permission denied)" in done.stderr
    (folder / "c.yaml").write_text(yaml.safe_dump({"layers": [CONV]}))
    done = run("init", "c.yaml", "-o", "ro/w.safetensors")
    assert done.returncode == 2 and "ro/w.safetensors: cannot write in ro (Permission denied)" in done.stderr
    done = run("design", "sinc", "--factor", "2", "-o", "ro/s2")
    assert done.returncode == 2 and "Permission denied" in done.stderr and ".part" not in done.stderr
    assert list((folder / "ro").iterdir()) == []


def test_a_damaged_mp3_says_one_line_without_decoder_chatter(tmp_path):
    data = np.random.default_rng(0).standard_normal(48000 * 3) * 0.1
    sf.write(str(tmp_path / "m.mp3"), data, 48000, format="MP3")
    whole = (tmp_path / "m.mp3").read_bytes()
    half = len(whole) // 2
    (tmp_path / "cut.mp3").write_bytes(whole[:half] + b"\0" * 100 + whole[half + 500 : half + 900])
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import app; app()", "run", "cut.mp3", "-o", "o.wav", "-c", "sinc-x3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convt-audio: error: cut.mp3: truncated"), lines
    assert not (tmp_path / "o.wav").exists()


def test_ray_checks_the_output_folder_from_the_driver_first(as_nobody):
    pytest.importorskip("ray", reason="the [ray] extra (.ci/run installs it)")
    folder, run = as_nobody
    tone(folder / "a.wav")
    tone(folder / "b.wav")
    (folder / "ro").mkdir()
    (folder / "ro").chmod(0o555)
    done = run("run", "a.wav", "b.wav", "-o", "ro/", "--ray", "local")
    assert done.returncode == 2, done.stderr
    assert "ro: the output folder cannot be written from here (Permission denied)" in done.stderr
