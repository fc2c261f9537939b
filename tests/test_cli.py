"""End-to-end tests of every command, as users and scripts run them."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import clitools
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from clitools import PACKAGE_HOME, invoke

from convt_audio.model.config import load_config
from convt_audio.model.weights import load_stack


def tone(path, seconds=0.5, rate=16000, channels=1, subtype="PCM_16", amplitude=0.5):
    """clitools.tone, with this file's order of arguments."""
    return clitools.tone(path, seconds, rate, subtype, channels, amplitude=amplitude)


def engine_output(config_name, weights, x):
    """What the engine's whole-signal forward gives for a [channels, frames] input."""
    config = load_config(config_name)
    stack, _ = load_stack(config, weights, dtype="float64")
    x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    if stack.in_channels == 1 and x.shape[0] > 1:
        return stack.forward(x[:, None, :]).reshape(-1, stack.output_frames(x.shape[-1])).numpy()
    return stack.forward(x[None])[0].numpy()


def no_leftovers(folder):
    return [p.name for p in Path(folder).rglob("*") if p.name.endswith(".part")]


@pytest.fixture
def decoder(tmp_path):
    """A small learned stack (2 channels in, 1 out) with weights from `init`."""
    config = tmp_path / "dec.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "dec",
                "weights": "dec.safetensors",
                "layers": [
                    {
                        "type": "conv1d",
                        "in_channels": 2,
                        "out_channels": 8,
                        "kernel_size": 5,
                        "padding": 2,
                        "padding_mode": "reflect",
                    },
                    {
                        "type": "conv_transpose1d",
                        "in_channels": 8,
                        "out_channels": 4,
                        "kernel_size": 8,
                        "stride": 4,
                        "padding": 2,
                    },
                    {"type": "leaky_relu", "negative_slope": 0.1},
                    {"type": "conv1d", "in_channels": 4, "out_channels": 1, "kernel_size": 7, "padding": 3},
                    {"type": "tanh"},
                ],
            }
        )
    )
    result = invoke("init", config, "-o", tmp_path / "dec.safetensors", "--seed", 7)
    assert result.exit_code == 0, result.output
    return config


# ---------------------------------------------------------------------------------------- run


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("PCM_24", 2), ("FLOAT", 1), ("FLOAT", 2)])
def test_run_default_config_rates_lengths_subtypes(tmp_path, subtype, channels):
    src = tmp_path / "in.wav"
    data = tone(src, channels=channels, subtype=subtype)
    result = invoke("run", src)
    assert result.exit_code == 0, result.output
    out = tmp_path / "in.48000hz.wav"
    info = sf.info(str(out))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (48000, 3 * len(data), channels, subtype)
    y, _ = sf.read(str(out), always_2d=True)
    x, _ = sf.read(str(src), always_2d=True, dtype="float32")
    want = engine_output("sinc-x3", None, x.T).T
    tolerance = {"PCM_16": 2 / 32768, "PCM_24": 2 / 2**23, "FLOAT": 1e-6}[subtype]
    assert np.abs(y - want).max() <= tolerance


def test_run_learned_stack_equals_engine_and_joint_channels(tmp_path, decoder):
    src = tmp_path / "st.wav"
    tone(src, channels=2, subtype="FLOAT")
    out = tmp_path / "out.wav"
    result = invoke("run", src, "-c", decoder, "-o", out, "--chunk", 37)
    assert result.exit_code == 0, result.output
    y, rate = sf.read(str(out), always_2d=True, dtype="float32")
    x, _ = sf.read(str(src), always_2d=True, dtype="float32")
    assert rate == 64000 and y.shape == (x.shape[0] * 4, 1)
    np.testing.assert_allclose(y.T, engine_output(str(decoder), None, x.T), atol=2e-6)


def test_per_channel_and_flac_output(tmp_path):
    src = tmp_path / "st.wav"
    tone(src, channels=2, subtype="PCM_16")
    out = tmp_path / "st.flac"
    result = invoke("run", src, "-c", "sinc-x2", "-o", out, "--channels", "per_channel")
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 32000, 2)


def test_subtype_option_and_bad_subtype_for_format(tmp_path):
    src = tmp_path / "a.wav"
    tone(src)
    assert invoke("run", src, "-o", tmp_path / "f.wav", "--subtype", "FLOAT").exit_code == 0
    assert sf.info(str(tmp_path / "f.wav")).subtype == "FLOAT"
    result = invoke("run", src, "-o", tmp_path / "f.ogg", "--subtype", "PCM_24")
    assert result.exit_code == 1
    assert "--subtype: OGG files cannot hold PCM_24" in result.stderr
    assert not (tmp_path / "f.ogg").exists()


def test_clipping_is_counted_or_refused(tmp_path):
    src = tmp_path / "loud.wav"
    tone(src, subtype="FLOAT", amplitude=1.5)
    result = invoke("run", src, "-o", tmp_path / "c.wav", "--subtype", "PCM_16", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["clipped_samples"] > 0
    assert sf.read(str(tmp_path / "c.wav"))[0].max() <= 1.0
    result = invoke("run", src, "-o", tmp_path / "e.wav", "--subtype", "PCM_16", "--clip", "error")
    assert result.exit_code == 1
    assert "e.wav: output would clip" in result.stderr
    assert not (tmp_path / "e.wav").exists() and no_leftovers(tmp_path) == []


def test_existing_output_refused_skipped_overwritten(tmp_path):
    src = tmp_path / "a.wav"
    tone(src)
    out = tmp_path / "o.wav"
    out.write_bytes(b"keep me")
    result = invoke("run", src, "-o", out)
    assert result.exit_code == 1 and "o.wav: already exists" in result.stderr
    assert out.read_bytes() == b"keep me"
    result = invoke("run", src, "-o", out, "--skip-existing", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "skipped"
    assert out.read_bytes() == b"keep me"
    assert invoke("run", src, "-o", out, "--overwrite").exit_code == 0
    assert sf.info(str(out)).samplerate == 48000
    result = invoke("run", src, "-o", out, "--overwrite", "--skip-existing")
    assert result.exit_code == 2


def test_batch_folder_recursive_mirrors_paths_and_keeps_going(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    tone(tmp_path / "in" / "a.wav")
    (tmp_path / "in" / "b.wav").write_bytes(b"RIFF garbage that is not audio")
    tone(tmp_path / "in" / "sub" / "c.flac")
    tone(tmp_path / "in" / "sub" / "d.wav", seconds=0.2)
    result = invoke("run", "in", "-o", "out", "--recursive", "--json")
    assert result.exit_code == 1
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in reports] == ["ok", "error", "ok", "ok"]
    assert "b.wav: not a readable audio file" in reports[1]["error"]
    assert result.stderr.count("convt-audio: error:") == 1
    assert sorted(str(p.relative_to("out")) for p in Path("out").rglob("*")) == [
        "a.wav",
        "sub",
        "sub/c.flac",
        "sub/d.wav",
    ]
    assert no_leftovers(tmp_path) == []
    # --fail-fast stops at the bad file
    result = invoke("run", "in", "-o", "out2", "--recursive", "--fail-fast", "--json")
    assert result.exit_code == 1
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["ok", "error"]
    # without --recursive only the top level
    result = invoke("run", "in", "-o", "out3", "--json")
    assert len(result.stdout.splitlines()) == 2


def test_several_files_and_jobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in "abcd":
        tone(tmp_path / f"{name}.wav", seconds=0.3)
    result = invoke("run", "a.wav", "b.wav", "c.wav", "d.wav", "-o", "o", "--jobs", 2, "--json")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4
    assert sorted(p.name for p in Path("o").iterdir()) == ["a.wav", "b.wav", "c.wav", "d.wav"]
    assert invoke("run", "a.wav", "-o", "newdir/").exit_code == 0  # a trailing "/" means a folder
    assert sorted(p.name for p in Path("newdir").iterdir()) == ["a.wav"]
    ref = sf.read("o/a.wav")[0]
    assert invoke("run", "a.wav", "-o", "single.wav").exit_code == 0
    np.testing.assert_array_equal(sf.read("single.wav")[0], ref)


def test_npy_input(tmp_path):
    x = (np.random.default_rng(0).standard_normal((2, 3000)) * 0.1).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = invoke("run", tmp_path / "x.npy", "--input-rate", 8000, "-c", "sinc-x3", "-o", tmp_path / "x.wav")
    assert result.exit_code == 0, result.output
    y, rate = sf.read(str(tmp_path / "x.wav"), always_2d=True, dtype="float32")
    assert rate == 24000 and sf.info(str(tmp_path / "x.wav")).subtype == "FLOAT"
    np.testing.assert_allclose(y.T, engine_output("sinc-x3", None, x), atol=2e-6)
    result = invoke("run", tmp_path / "x.npy")
    assert result.exit_code == 1 and ".npy inputs need --input-rate" in result.stderr  # that file fails


def test_json_stdout_is_only_json(tmp_path):
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "--json")
    report = json.loads(result.stdout)
    for key in (
        "input",
        "output",
        "input_rate",
        "output_rate",
        "frames_in",
        "frames_out",
        "seconds",
        "clipped_samples",
        "wall_seconds",
        "realtime_factor",
        "device",
    ):
        assert key in report
    assert report["frames_out"] == 3 * report["frames_in"] and report["device"] == "cpu"


def test_quiet_prints_nothing_on_success(tmp_path):
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "--quiet")
    assert result.exit_code == 0 and result.output == ""


# ------------------------------------------------------------------------------- bad inputs


def _bad_config(tmp_path, layers, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"layers": layers}))
    return path


CT = {"type": "conv_transpose1d", "in_channels": 1, "out_channels": 1, "kernel_size": 4, "stride": 2}


@pytest.mark.parametrize(
    "case,code,message",
    [
        ("missing", 1, "nope.wav: no such file"),
        ("not_audio", 1, "junk.wav: not a readable audio file"),
        ("empty", 1, "empty.wav: an empty file (0 bytes)"),
        ("truncated", 1, "trunc.wav: truncated: the header promises"),
        ("bad_yaml", 2, "bad.yaml: invalid YAML at line"),
        ("unknown_key", 2, "bad.yaml: layers[0].kernal: unknown key for conv_transpose1d"),
        ("bad_param", 2, "bad.yaml: layers[0].stride: must be a positive integer, got 0"),
        ("missing_tensor", 2, "missing tensor '0.bias' for layers[0] (conv_transpose1d)"),
        ("bad_shape", 2, "tensor '0.weight' for layers[0] (conv_transpose1d) has shape (1, 1, 3), expected (1, 1, 4)"),
        ("channels", 1, "a.wav: the file has 3 channels but layers[0].in_channels is 2"),
        ("too_short", 1, "a.wav: input too short: 3 frames reach layers[0] (conv1d), which needs at least 50"),
        ("bad_device", 2, "--device: 'tpu' is not one of auto, cpu, cuda, cuda:N"),
        ("no_cuda", 2, "--device cuda: CUDA is not available"),
        ("bad_chunk", 2, "--chunk"),
        ("bad_output_ext", 1, "cannot write .xyz"),
    ],
)
def test_bad_inputs_one_line_and_exit_code(tmp_path, case, code, message):
    if case == "no_cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here; the error path needs a machine without it")
    src = tmp_path / "a.wav"
    tone(src)
    args = ["run", src, "-o", tmp_path / "out.wav"]
    if case == "missing":
        args[1] = tmp_path / "nope.wav"
    elif case == "not_audio":
        args[1] = tmp_path / "junk.wav"
        args[1].write_bytes(b"\x00" * 100)
    elif case == "empty":
        args[1] = tmp_path / "empty.wav"
        args[1].write_bytes(b"")
    elif case == "truncated":
        args[1] = tmp_path / "trunc.wav"
        tone(args[1], seconds=1)
        data = args[1].read_bytes()
        args[1].write_bytes(data[: len(data) // 2])
    elif case == "bad_yaml":
        (tmp_path / "bad.yaml").write_text("layers: [\n  - {type: relu\n")
        args += ["-c", tmp_path / "bad.yaml"]
    elif case == "unknown_key":
        args += ["-c", _bad_config(tmp_path, [{**CT, "kernal": 3}])]
    elif case == "bad_param":
        args += ["-c", _bad_config(tmp_path, [{**CT, "stride": 0}])]
    elif case in ("missing_tensor", "bad_shape"):
        cfg = _bad_config(tmp_path, [CT])
        tensors = {"0.weight": torch.zeros(1, 1, 4 if case == "missing_tensor" else 3), "0.bias": torch.zeros(1)}
        if case == "missing_tensor":
            del tensors["0.bias"]
        torch.save(tensors, tmp_path / "w.pt")
        args += ["-c", cfg, "-w", tmp_path / "w.pt"]
    elif case == "channels":
        tone(src, channels=3)
        cfg = _bad_config(tmp_path, [{**CT, "in_channels": 2}])
        invoke("init", cfg, "-o", tmp_path / "w.safetensors")
        args += ["-c", cfg, "-w", tmp_path / "w.safetensors"]
    elif case == "too_short":
        sf.write(str(src), np.zeros(3), 16000)
        cfg = _bad_config(tmp_path, [{"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 50}])
        invoke("init", cfg, "-o", tmp_path / "w.safetensors")
        args += ["-c", cfg, "-w", tmp_path / "w.safetensors"]
    elif case == "bad_device":
        args += ["--device", "tpu"]
    elif case == "no_cuda":
        args += ["--device", "cuda"]
    elif case == "bad_chunk":
        args += ["--chunk", "0"]
    elif case == "bad_output_ext":
        args[3] = tmp_path / "out.xyz"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    if case != "bad_chunk":  # Typer's own usage box for option parsing
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.wav").exists() and not (tmp_path / "out.xyz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing touched


def test_debug_shows_a_traceback(tmp_path):
    result = invoke("run", tmp_path / "nope.wav", "--debug")
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_input_is_never_touched(tmp_path):
    src = tmp_path / "a.wav"
    tone(src)
    before = src.read_bytes()
    assert invoke("run", src, "-o", src, "--overwrite").exit_code == 2
    assert invoke("run", src).exit_code == 0
    assert src.read_bytes() == before


@pytest.mark.parametrize(
    "signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGQUIT, 131)]
)
def test_interrupt_leaves_no_partial_output(tmp_path, signum, code):
    """Ctrl-C (or SIGTERM) during the second file: first output complete, no partial or temp file."""
    tone(tmp_path / "a.wav", seconds=0.2)
    tone(tmp_path / "b.wav", seconds=600, rate=16000)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cli.main import app; app()",
            "run",
            "a.wav",
            "b.wav",
            "-o",
            "out",
            "--json",
            "--chunk",
            "16",
        ],  # 600 s in 16-frame blocks: far longer than the signal takes
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONPATH": PACKAGE_HOME},
    )
    first = json.loads(proc.stdout.readline())  # the first file is done; the second is running
    assert first["status"] == "ok"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav"]
    assert sf.info(str(tmp_path / "out" / "a.wav")).frames == 3 * 3200


# ------------------------------------------------------------------------- other commands


def test_info_table_and_json(decoder):
    result = invoke("info", decoder)
    assert result.exit_code == 0, result.output
    assert "rate:" in result.stdout and "×4" in result.stdout and "weights:" in result.stdout
    assert "look-ahead:" in result.stdout
    facts = json.loads(invoke("info", decoder, "--json").stdout)
    assert facts["rate_factor"] == 4 and facts["weights_status"] == "ok"
    assert facts["parameters"] == 2 * 8 * 5 + 8 + 8 * 4 * 8 + 4 + 4 * 7 + 1
    assert facts["receptive_field_input_frames"] > 1 and facts["lookahead_input_frames"] > 0
    default = json.loads(invoke("info", "--json").stdout)
    assert default["name"] == "sinc-x3" and default["lookahead_input_frames"] == 106
    assert default["receptive_field_input_frames"] == 213  # ⌈637 taps / 3⌉


def test_info_reports_weight_mismatch_and_circular_buffering(tmp_path):
    cfg = _bad_config(
        tmp_path, [{**CT, "padding_mode": "circular"}, {**CT, "padding_mode": "circular"}], name="circ.yaml"
    )
    torch.save({"0.weight": torch.zeros(1, 1, 3)}, tmp_path / "w.pt")
    result = invoke("info", cfg, "-w", tmp_path / "w.pt", "--json")
    assert result.exit_code == 2
    facts = json.loads(result.stdout)
    assert "has shape (1, 1, 3), expected (1, 1, 4)" in facts["weights_status"]
    assert facts["buffers_whole_input"] == ["layers[1]"]
    assert "has shape (1, 1, 3)" in result.stderr  # the reason on stderr too
    assert invoke("info", tmp_path / "missing.yaml").exit_code == 2


def test_init_is_reproducible_and_refuses_to_overwrite(tmp_path, decoder):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.pt"
    assert invoke("init", decoder, "-o", a, "--seed", 3).exit_code == 0
    assert invoke("init", decoder, "-o", b, "--seed", 3).exit_code == 0
    from convt_audio.model.weights import read_tensors

    ta, tb = read_tensors(a), read_tensors(b)
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
    result = invoke("init", decoder, "-o", a)
    assert result.exit_code == 2 and "already exists" in result.stderr
    result = invoke("init", decoder, "-o", tmp_path / "w.bin")
    assert result.exit_code == 2 and "weights are written as .safetensors" in result.stderr


def test_design_sinc_writes_a_runnable_pair(tmp_path):
    result = invoke("design", "sinc", "--factor", 5, "--attenuation", 100, "-o", tmp_path / "s5")
    assert result.exit_code == 0, result.output
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "-c", tmp_path / "s5.yaml", "--json")
    assert json.loads(result.stdout)["output_rate"] == 80000
    result = invoke("design", "sinc", "--factor", 1, "-o", tmp_path / "s1")
    assert result.exit_code == 2 and "--factor: must be an integer >= 2" in result.stderr
    assert not (tmp_path / "s1.yaml").exists()


def test_configs_and_version():
    result = invoke("configs")
    assert result.exit_code == 0
    assert "sinc-x3 (default):" in result.stdout and "sinc-x2:" in result.stdout
    assert "in: 80-band features at 86.1328 Hz (.npy, .pt)" in result.stdout  # hifigan-v1
    assert "in: integer codes (up to 32 rows) at 75 Hz" in result.stdout  # encodec-24khz
    assert "in: integer codes (up to 9 rows) or the 1024-channel latent at 86.1328 Hz" in result.stdout  # dac-44khz
    result = invoke("--version")
    assert result.exit_code == 0
    assert "convt-audio 0.1.0" in result.stdout and f"torch {torch.__version__}" in result.stdout
    assert "CUDA" in result.stdout


def test_console_script_help_is_fast_and_does_not_import_torch():
    code = "import sys; from cli.main import app; assert 'torch' not in sys.modules"
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )


def test_circular_first_layer_reads_the_file_tail(tmp_path):
    """A circular first convolution gets the input's last frames by seeking, then streams."""
    cfg = _bad_config(
        tmp_path,
        [
            {
                "type": "conv_transpose1d",
                "in_channels": 1,
                "out_channels": 2,
                "kernel_size": 9,
                "stride": 2,
                "padding": 1,
                "padding_mode": "circular",
            },
            {
                "type": "conv1d",
                "in_channels": 2,
                "out_channels": 1,
                "kernel_size": 5,
                "padding": 4,
                "padding_mode": "reflect",
            },
        ],
        name="circ.yaml",
    )
    assert invoke("init", cfg, "-o", tmp_path / "w.safetensors", "--seed", 1).exit_code == 0
    src = tmp_path / "a.wav"
    tone(src, seconds=0.3, subtype="FLOAT")
    result = invoke(
        "run",
        src,
        "-c",
        cfg,
        "-w",
        tmp_path / "w.safetensors",
        "-o",
        tmp_path / "o.wav",
        "--chunk",
        100,
        "--threads",
        1,
    )
    assert result.exit_code == 0, result.output
    y, rate = sf.read(str(tmp_path / "o.wav"), always_2d=True, dtype="float32")
    x, _ = sf.read(str(src), always_2d=True, dtype="float32")
    assert rate == 32000
    np.testing.assert_allclose(y.T, engine_output(str(cfg), tmp_path / "w.safetensors", x.T), atol=2e-6)


def test_progress_bars_on_a_terminal():
    import io

    from rich.console import Console
    from rich.progress import Progress

    from cli.rich_utils import FileProgress

    screen = io.StringIO()
    with Progress(console=Console(file=screen, force_terminal=True, width=80)) as progress:
        bars = FileProgress(progress, files=2)
        update = bars.add_file("a.wav")
        update(50, 100, 16000.0)
        assert progress.tasks[-1].completed == 50
        bars.file_done("a.wav")
        assert progress.tasks[0].completed == 1  # the overall bar advanced
    assert "all files" in screen.getvalue()


def test_full_disk_leaves_no_partial_output_and_keeps_the_old_one(tmp_path):
    """A file-size limit stands in for a full disk: writes fail with EFBIG part-way through."""
    import resource

    src = tmp_path / "a.wav"
    tone(src, seconds=3)
    out = tmp_path / "o.wav"
    out.write_bytes(b"previous output")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import app; app()", "run", str(src), "-o", str(out), "--overwrite"],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 1
    assert "o.wav: write failed" in done.stderr and "is the disk full?" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"previous output"
    assert no_leftovers(tmp_path) == []


def test_unused_tensors_are_a_warning_not_an_error(tmp_path):
    cfg = _bad_config(tmp_path, [{**CT, "bias": False}], name="w.yaml")
    torch.save({"0.weight": torch.ones(1, 1, 4) / 4, "discriminator.0.weight": torch.zeros(2)}, tmp_path / "w.pt")
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "-c", cfg, "-w", tmp_path / "w.pt", "-o", tmp_path / "o.wav")
    assert result.exit_code == 0
    assert (
        "warning: " in result.stderr and "1 tensor(s) not used by the config: discriminator.0.weight" in result.stderr
    )


# ------------------------------------------------------------------------- inputs are sacred


@pytest.mark.parametrize("case", ["into_folder", "default_name", "two_to_one", "hard_link", "symlink"])
def test_an_output_that_is_an_input_or_another_output_is_refused_up_front(tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    tone(tmp_path / "a.wav")
    tone(tmp_path / "sub" / "a.wav", seconds=0.3)
    if case == "into_folder":  # a.wav -> sub/a.wav, which is the second input
        args, message = ["a.wav", "sub/a.wav", "-o", "sub/"], "sub/a.wav: the output of a.wav is the input sub/a.wav"
    elif case == "default_name":
        tone(tmp_path / "a.48000hz.wav", seconds=0.2)
        args, message = ["a.wav", "a.48000hz.wav"], "a.48000hz.wav: the output of a.wav is the input a.48000hz.wav"
    elif case == "two_to_one":
        sf.write(str(tmp_path / "a.flac"), np.zeros(800), 16000)
        args, message = ["a.wav", "a.flac"], "a.wav and a.flac would both write a.48000hz.wav"
    elif case == "hard_link":
        os.link(tmp_path / "a.wav", tmp_path / "out.wav")
        args, message = ["a.wav", "-o", "out.wav"], "out.wav: the output of a.wav is the input a.wav"
    else:
        os.symlink(tmp_path / "sub" / "a.wav", tmp_path / "link.wav")
        args, message = ["sub/a.wav", "-o", "link.wav"], "link.wav: the output of sub/a.wav is the input sub/a.wav"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.wav") if p.is_file()}
    for extra in ([], ["--overwrite"]):
        result = invoke("run", *args, *extra)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.wav") if p.is_file()} == before
    assert not [p for p in tmp_path.rglob("*.part")]


def test_torch_threads_follow_the_cpus_this_process_may_use(tmp_path, decoder):
    """os.cpu_count() counts the machine's CPUs; under taskset or a cpuset fewer are ours."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        pytest.skip("needs CPU affinity and two CPUs")
    tone(tmp_path / "a.wav", channels=2)
    code = (
        "import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); import torch\n"
        "from cli.main import app\n"
        "try: app()\n"
        "except SystemExit as exit: assert exit.code == 0, exit.code\n"
        "print(torch.get_num_threads())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "run", "a.wav", "-c", str(decoder), "-o", "o.wav", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
