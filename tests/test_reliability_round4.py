"""Round 4 of the adversarial cases: the mel command and features: recipes, layouts:, checkpoint
layouts, .pt inputs, FIFOs, signals during a stalled read, the environment and the Python API.
Each case failed on the main of 2026-12-06 (a wrong result with exit 0, a hang, a crash or a raw
exception) and must now give one line, the contract's exit code and nothing left behind."""

import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import COMMAND, PACKAGE_HOME, cli, invoke, one_error_line, tone
from safetensors.numpy import save_file

import convt_audio
from convt_audio.core.errors import ConfigError, ConvtAudioError, UsageError

MEL = ["-c", "hifigan-v1"]


class Code:
    """An object whose unpickling would import and run this module's code."""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.part"))


# ------------------------------------------------------------------ silent wrong output


def test_mel_refuses_non_finite_input_or_zeroes_it_when_asked(tmp_path):
    x = 0.1 * np.sin(np.arange(22050) / 10)
    x[5000] = np.nan
    sf.write(str(tmp_path / "n.wav"), x, 22050, subtype="FLOAT")
    result = invoke("mel", tmp_path / "n.wav", *MEL, "-o", tmp_path / "n.npy")
    assert result.exit_code == 1
    one_error_line(result.stderr, "non-finite sample (nan) at frame 5000")
    assert not (tmp_path / "n.npy").exists() and _leftovers(tmp_path) == []
    result = invoke("mel", tmp_path / "n.wav", *MEL, "-o", tmp_path / "z.npy", "--non-finite", "zero")
    assert result.exit_code == 0 and np.isfinite(np.load(tmp_path / "z.npy")).all()
    assert "frames (1 NaN/Inf samples replaced with 0); 80-band log-mel" in result.stderr  # said, as run says it


@pytest.mark.parametrize(
    "mean, scale, message",
    [
        (np.nan, 1.0, "mean and scale must be finite numbers"),
        (0.0, 1e-45, "scale >= 1e-10"),
        (0.0, np.inf, "mean and scale must be finite numbers"),
    ],
)
def test_mel_stats_that_would_make_nan_or_inf_features_are_refused(tmp_path, mean, scale, message):
    tone(tmp_path / "a.wav", rate=24000)
    np.savez(tmp_path / "s.npz", mean=np.full(80, mean), scale=np.full(80, scale))
    result = invoke(
        "mel", tmp_path / "a.wav", "-c", "pwg-multiband-melgan", "--stats", tmp_path / "s.npz", "-o", tmp_path / "m.npy"
    )
    assert result.exit_code == 2
    one_error_line(result.stderr, message)
    assert not (tmp_path / "m.npy").exists()


def _features_config(tmp_path, **changes):
    recipe = {"sample_rate": 16000, "n_fft": 1024, "hop_length": 256, "win_length": 1024, "n_mels": 4, **changes}
    lines = "\n".join(f"  {k}: {v}" for k, v in recipe.items())
    (tmp_path / "f.yaml").write_text(
        f"output_sample_rate: 16000\nfeatures:\n{lines}\nlayers:\n"
        "  - {type: conv_transpose1d, in_channels: 4, out_channels: 1, kernel_size: 256, stride: 256, bias: false}\n"
    )
    return tmp_path / "f.yaml"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"clamp": ".inf"}, "features.clamp: must be a number > 0"),
        ({"stats": 5}, "features.stats: a path to an .npz of mean and scale, got 5"),
        ({"hop_length": 2048}, "features.hop_length: 2048 is longer than n_fft 1024"),
        ({"n_fft": 1 << 17, "win_length": 1024}, "features.n_fft: at most 65536"),
        ({"n_mels": 65536}, "features.n_mels: at most 512"),
    ],
)
def test_features_recipes_that_give_inf_raw_errors_or_huge_allocations_are_config_errors(tmp_path, changes, message):
    tone(tmp_path / "a.wav")
    result = invoke("mel", tmp_path / "a.wav", "-c", _features_config(tmp_path, **changes), "-o", tmp_path / "m.npy")
    assert result.exit_code == 2
    one_error_line(result.stderr, message)


def _conv_config(tmp_path, layouts: str = "", kernel: int = 3) -> Path:
    (tmp_path / "c.yaml").write_text(
        "layers:\n"
        f"  - {{type: conv1d, in_channels: 1, out_channels: 1, kernel_size: {kernel}, padding: 1, bias: false}}\n"
        f"  - {{type: conv1d, in_channels: 1, out_channels: 1, kernel_size: {kernel}, padding: 1, bias: false}}\n"
        + layouts
    )
    return tmp_path / "c.yaml"


def test_a_layout_that_gives_two_layers_one_tensor_is_refused(tmp_path):
    config = _conv_config(tmp_path, "layouts:\n  - {name: flat, map: [['^\\d+\\.', 'only.']]}\n")
    save_file({"only.weight": np.ones((1, 1, 3), np.float32)}, str(tmp_path / "w.safetensors"))
    for command in (
        ["info", config, "-w", tmp_path / "w.safetensors"],
        ["init", config, "-o", tmp_path / "x.safetensors"],
    ):
        result = invoke(*command)
        assert result.exit_code == 2
        one_error_line(result.stderr, "layers[0] and layers[1] would both read tensor 'only.weight'")


@pytest.mark.parametrize(
    "g_shape, message",
    [
        ((1, 1, 3), "tensor '0.weight_g' for layers[0] has shape (1, 1, 3)"),
        ((5,), "tensor '0.weight_g' for layers[0] has shape (5,)"),
        ((3,), "tensor '0.weight_g' for layers[0] has shape (3,)"),
        ((2, 1, 1), "tensor '0.weight_g' for layers[0] has shape (2, 1, 1)"),
    ],
)
def test_a_weight_norm_magnitude_of_the_wrong_shape_is_refused_by_name(tmp_path, g_shape, message):
    config = _conv_config(tmp_path)
    tensors = {"0.weight_g": np.ones(g_shape, np.float32), "0.weight_v": np.ones((1, 1, 3), np.float32)}
    tensors["1.weight"] = np.ones((1, 1, 3), np.float32)
    save_file(tensors, str(tmp_path / "w.safetensors"))
    tone(tmp_path / "a.wav")
    result = invoke("run", tmp_path / "a.wav", "-c", config, "-w", tmp_path / "w.safetensors", "-o", tmp_path / "o.wav")
    assert result.exit_code == 2
    one_error_line(result.stderr, message)
    assert not (tmp_path / "o.wav").exists()
    # the shapes weight_norm gives (dim=0, and dim=None's scalar) still load
    for good in ((1, 1, 1), ()):
        save_file({**tensors, "0.weight_g": np.full(good, 2.0, np.float32)}, str(tmp_path / "ok.safetensors"))
        assert invoke("info", config, "-w", tmp_path / "ok.safetensors").exit_code == 0


def test_a_kernel_stored_with_its_axes_swapped_is_refused_not_reshaped(tmp_path):
    config = _conv_config(tmp_path)
    save_file(
        {"0.weight": np.arange(3, dtype=np.float32).reshape(3, 1, 1), "1.weight": np.ones((1, 1, 3), np.float32)},
        str(tmp_path / "w.safetensors"),
    )
    result = invoke("info", config, "-w", tmp_path / "w.safetensors")
    assert result.exit_code == 2
    one_error_line(result.stderr, "tensor '0.weight' for layers[0] (conv1d) has shape (3, 1, 1), expected (1, 1, 3)")


def test_a_pqmf_window_that_underflows_to_zero_is_refused(tmp_path):
    (tmp_path / "p.yaml").write_text("layers:\n  - {type: pqmf_synthesis, subbands: 4, taps: 62, beta: 1000}\n")
    result = invoke("info", tmp_path / "p.yaml")
    assert result.exit_code == 2
    one_error_line(result.stderr, "beta: the Kaiser window's beta must be in [0, 100.0], got 1000")


# ------------------------------------------------------------------ hangs


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("(a+)+$", "nests a repeat inside a repeat"),
        ("(x|xy)*z", "repeats an alternation"),
        ("(a)\\1", "has a backreference"),
    ],
)
def test_layout_patterns_that_can_backtrack_without_bound_are_refused_at_once(tmp_path, pattern, message):
    config = _conv_config(tmp_path, f"layouts:\n  - {{name: x, map: [['{pattern}', 'y']]}}\n")
    started = time.perf_counter()
    result = invoke("info", config)
    assert result.exit_code == 2 and time.perf_counter() - started < 5
    one_error_line(result.stderr, message)


def test_a_bad_group_reference_is_found_when_the_config_is_read(tmp_path):
    config = _conv_config(tmp_path, "layouts:\n  - {name: x, map: [['^(\\d+)\\.', '\\9.']]}\n")
    result = invoke("info", config)
    assert result.exit_code == 2
    one_error_line(result.stderr, "does not fit")
    with pytest.raises(ConfigError, match="invalid group reference 9"):
        convt_audio.load(str(config))
    (tmp_path / "m.yaml").write_text(_conv_config(tmp_path).read_text() + "layouts:\n  - {name: x, map: 5}\n")
    result = invoke("info", tmp_path / "m.yaml")
    assert result.exit_code == 2
    one_error_line(result.stderr, "layouts[0].map: must be a list of [pattern, replacement], got 5")


def _writer(fifo: Path, data: bytes, pause: threading.Event | None = None):
    def write():
        with open(fifo, "wb") as out:
            out.write(data[:1000])
            out.flush()
            if pause is not None:
                pause.wait(30)
            out.write(data[1000:])

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("args", [[], ["-r", "48k"]])
def test_a_named_fifo_is_read_as_a_stream(tmp_path, args):
    tone(tmp_path / "a.wav", seconds=1.0)
    data = subprocess.run(["sox", str(tmp_path / "a.wav"), "-t", "wav", "-"], capture_output=True).stdout
    os.mkfifo(tmp_path / "f.wav")
    writer = _writer(tmp_path / "f.wav", data)
    done = cli("run", "f.wav", "-o", "o.wav", *args, cwd=tmp_path, timeout=60)
    writer.join(5)
    assert done.returncode == 0, done.stderr
    assert sf.info(str(tmp_path / "o.wav")).frames == 48000
    # a pipe writer's unknown-length header, as sox writes it when it does not know the length
    unknown = data[:4] + b"\xff\xff\xff\xff" + data[8:40] + b"\xff\xff\xff\xff" + data[44:]
    writer = _writer(tmp_path / "f.wav", unknown)
    done = cli("run", "f.wav", "-o", "u.wav", "-y", *args, cwd=tmp_path, timeout=60)
    writer.join(5)
    assert done.returncode == 0, done.stderr
    assert sf.info(str(tmp_path / "u.wav")).frames == 48000


def _wait_until(proc, condition, seconds: float = 60) -> None:
    """Wait (on the process, never a fixed sleep) until ``condition()`` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline and proc.poll() is None, "the condition never held"
        try:
            proc.wait(0.05)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.parametrize("command", ["run", "mel"])
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_stalled_read_stops_at_once_and_leaves_nothing(tmp_path, command, signum, code):
    """The writer sends a header and a little audio, then stalls: the first signal stops the run."""
    tone(tmp_path / "a.wav", seconds=2.0, rate=22050)
    data = subprocess.run(["sox", str(tmp_path / "a.wav"), "-t", "wav", "-"], capture_output=True).stdout
    args = ["-c", "hifigan-v1", "-o", "out.npy"] if command == "mel" else ["-r", "48k", "-o", "out.wav"]
    proc = subprocess.Popen(
        [*COMMAND, command, "-", *args],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    proc.stdin.write(data[:20000])
    proc.stdin.flush()
    _wait_until(proc, lambda: any(tmp_path.glob(".out.*.part")))  # the output is open: blocked mid-file
    proc.send_signal(signum)
    try:
        stderr = proc.communicate(timeout=10)[1]
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert b"interrupted" in stderr
    assert _leftovers(tmp_path) == [] and not (tmp_path / args[-1]).exists()


def test_an_output_named_pipe_is_written_into_and_stays_a_pipe(tmp_path):
    """`-o fifo.wav` with sox reading the other end, as `sox in.wav -t wav fifo` writes one: the
    audio goes through the pipe, which stays a pipe (a finished file used to be renamed over it,
    and with --overwrite sox waited for ever on the pipe it had opened)."""
    tone(tmp_path / "a.wav", seconds=1.0)
    os.mkfifo(tmp_path / "out.wav")
    reader = subprocess.Popen(["sox", "-t", "wav", "out.wav", "got.flac"], cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        done = cli("run", "a.wav", "-r", "48k", "-D", "-o", "out.wav", cwd=tmp_path, timeout=60)
        assert reader.communicate(timeout=30)[1] == b""
    finally:
        reader.kill()
    assert done.returncode == 0 and reader.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.stat(tmp_path / "out.wav").st_mode)
    assert cli("run", "a.wav", "-r", "48k", "-D", "-o", "file.wav", cwd=tmp_path).returncode == 0
    got, want = sf.read(str(tmp_path / "got.flac"))[0], sf.read(str(tmp_path / "file.wav"))[0]
    assert got.shape == (48000,)
    np.testing.assert_array_equal(got, want)
    # mel's .npy has a header to fix at the end: a pipe there is refused, and stays a pipe
    os.mkfifo(tmp_path / "m.npy")
    done = cli("mel", "a.wav", *MEL, "-o", "m.npy", "-y", cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    one_error_line(done.stderr, "m.npy: is a named pipe, not a file; it is not replaced")
    assert stat.S_ISFIFO(os.stat(tmp_path / "m.npy").st_mode)


def test_a_device_output_is_written_into_never_replaced(tmp_path):
    """`-o /dev/null` (here a null device of the test's own): written into, as sox -t wav
    /dev/null does; a finished file renamed over it would replace the device for every user."""
    try:
        os.mknod(tmp_path / "null.wav", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")
    tone(tmp_path / "a.wav", seconds=1.0)
    for args in (["-o", "null.wav"], ["-o", "null", "-t", "flac"], ["-o", "null", "-y"]):
        done = cli("run", "a.wav", "-r", "48k", *args, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
    for name in ("null.wav", "null"):
        assert stat.S_ISCHR(os.stat(tmp_path / name).st_mode)
    assert _leftovers(tmp_path) == []


def test_type_names_the_container_of_an_output_without_an_extension(tmp_path):
    tone(tmp_path / "a.wav", seconds=1.0)
    done = cli("run", "a.wav", "-r", "48k", "-o", "plain", "-t", "flac", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sf.info(str(tmp_path / "plain")).format == "FLAC" and sf.info(str(tmp_path / "plain")).frames == 48000
    done = cli("run", "a.wav", "-r", "48k", "-o", "x.wav", "-t", "flac", cwd=tmp_path)
    assert done.returncode == 2
    one_error_line(done.stderr, "-o x.wav: --type flac contradicts the file's extension")


def test_a_fifo_without_a_writer_is_interrupted_at_once(tmp_path):
    os.mkfifo(tmp_path / "f.wav")
    proc = subprocess.Popen(
        [*COMMAND, "run", "f.wav", "-o", "o.wav"],
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    _wait_until(proc, lambda: Path(f"/proc/{proc.pid}/wchan").read_text() == "wait_for_partner")  # no writer yet
    proc.send_signal(signal.SIGINT)
    try:
        stderr = proc.communicate(timeout=10)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr


# ------------------------------------------------------------------ crash, leftovers, memory


def test_mel_to_a_full_disk_fails_in_one_line_and_leaves_no_part(tmp_path):
    tone(tmp_path / "a.wav", seconds=20.0, rate=22050)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    done = subprocess.run(
        [*COMMAND, "mel", "a.wav", *MEL, "-o", "m.npy"],
        preexec_fn=limit,
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 1, done.stderr
    one_error_line(done.stderr, "m.npy: write failed")
    assert "is the disk full?" in done.stderr.decode()
    assert _leftovers(tmp_path) == [] and not (tmp_path / "m.npy").exists()


def test_mel_takes_several_inputs_a_folder_and_stdin_with_the_memory_budget(tmp_path):
    tone(tmp_path / "a.wav", rate=22050)
    tone(tmp_path / "b.wav", rate=16000)
    done = cli("mel", "a.wav", "b.wav", *MEL, "-o", "mels/", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "mels").iterdir()) == ["a.mel.npy", "b.mel.npy"]
    done = cli("mel", "-", *MEL, "-o", "s.npy", stdin=(tmp_path / "a.wav").read_bytes(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.load(tmp_path / "mels" / "a.mel.npy"))
    for budget, code, message in (
        ("garbage", 2, "is not a size in bytes"),
        ("0.5", 2, "below the least a run needs"),
        ("2M", 2, "over the memory budget"),
    ):
        done = cli("mel", "a.wav", *MEL, "-o", "x.npy", cwd=tmp_path, env={"CONVT_AUDIO_MAX_MEMORY": budget})
        assert done.returncode == code, done.stderr
        one_error_line(done.stderr, message)


def test_the_memory_environment_is_one_usage_error_for_run(tmp_path):
    for name in ("a.wav", "b.wav"):
        tone(tmp_path / name)
    for value, message in (("garbage", "'garbage' is not a size in bytes"), ("0.5", "below the least a run needs")):
        done = cli("run", "a.wav", "b.wav", "-o", "out/", cwd=tmp_path, env={"CONVT_AUDIO_MAX_MEMORY": value})
        assert done.returncode == 2
        one_error_line(done.stderr, message)
    done = cli("run", "a.wav", "-o", "o.wav", cwd=tmp_path, env={"OMP_NUM_THREADS": "abc"})
    assert done.returncode == 2
    one_error_line(done.stderr, "OMP_NUM_THREADS: 'abc' is not a positive whole number")


def test_a_stats_bomb_is_refused_from_its_header(tmp_path):
    buffer = np.zeros((80, 100_000), np.float32)  # 32 MB of zeros, ~30 kB compressed
    np.savez_compressed(tmp_path / "bomb.npz", mean=buffer, scale=buffer)
    assert (tmp_path / "bomb.npz").stat().st_size < 1 << 20
    from convt_audio.io.features import read_stats
    from convt_audio.model.config import load_config

    recipe = load_config("pwg-multiband-melgan").features
    with pytest.raises(ConfigError, match=r"mean has shape \(80, 100000\); expected 80 numbers"):
        read_stats(type(recipe)(**{**recipe.__dict__, "stats": str(tmp_path / "bomb.npz")}))
    np.save(tmp_path / "s.npy", np.zeros(80))
    tone(tmp_path / "a.wav", rate=24000)
    result = invoke(
        "mel", tmp_path / "a.wav", "-c", "pwg-multiband-melgan", "--stats", tmp_path / "s.npy", "-o", tmp_path / "m.npy"
    )
    assert result.exit_code == 2
    one_error_line(result.stderr, "not an .npz archive")


def test_a_stored_filter_is_shape_checked_before_it_is_read(tmp_path, monkeypatch):
    from convt_audio.model.weights import TensorFile

    (tmp_path / "a.yaml").write_text("layers:\n  - {type: alias_free, activation: {type: snake, channels: 2}}\n")
    cfg = convt_audio.load_config(str(tmp_path / "a.yaml"))
    names = cfg.tensor_names[0]
    tensors = {full: np.ones((1, 2, 1), np.float32) for full in names.values()}
    stored = next(n for n in (f"0.{k}" for k in cfg.leaves[0].computed_tensors()))
    tensors[stored] = np.zeros((1, 1, 4_000_000), np.float32)
    save_file(tensors, str(tmp_path / "w.safetensors"))
    read = []
    original = TensorFile.__getitem__
    monkeypatch.setattr(TensorFile, "__getitem__", lambda self, name: read.append(name) or original(self, name))
    with pytest.raises(ConvtAudioError, match="differs from the one its parameters give"):
        convt_audio.load(str(tmp_path / "a.yaml"), str(tmp_path / "w.safetensors"))
    assert stored not in read


def test_a_legacy_checkpoint_over_the_memory_budget_is_refused_before_it_is_read(tmp_path, monkeypatch):
    config = _conv_config(tmp_path)
    state = {"0.weight": torch.ones(1, 1, 3), "1.weight": torch.ones(1, 1, 3), "unused": torch.zeros(1 << 20)}
    torch.save(state, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    monkeypatch.setenv("CONVT_AUDIO_MAX_MEMORY", "2M")
    result = invoke("info", config, "-w", tmp_path / "old.pth")
    assert result.exit_code == 2
    one_error_line(result.stderr, "a legacy (non-zip) checkpoint is read whole")


def test_a_pt_input_is_mapped_not_read_whole(tmp_path):
    torch.save(torch.zeros(80, 400_000), tmp_path / "big.pt")  # 128 MB
    code = (
        "import resource, torch, convt_audio.io.audio as io\n"
        "def rss():\n    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()\n"
        "before = rss(); source = io.open_source(__import__('sys').argv[1], 86, 80); after = rss()\n"
        "print((after - before) >> 20)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "big.pt")], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 64, done.stdout  # MB resident after opening: not the 128 MB tensor


# ------------------------------------------------------------------ raw errors, exit codes


def test_hostile_checkpoints_and_pt_inputs_are_one_line(tmp_path):
    config = _conv_config(tmp_path)
    loop: list = []
    loop.append(loop)
    torch.save({"state": loop}, tmp_path / "loop.pth")
    result = invoke("info", config, "-w", tmp_path / "loop.pth")
    assert result.exit_code == 2
    one_error_line(result.stderr, "a container that holds itself")

    torch.save({"0.weight": Code()}, tmp_path / "code.pth")
    result = invoke("info", config, "-w", tmp_path / "code.pth")
    assert result.exit_code == 2
    one_error_line(result.stderr, "weights_only=True refuses to unpickle (no code is run)")
    assert "weights_only=False" not in result.stderr
    # malformed pickles and tensors without values as .pt inputs: that file fails, exit 1
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02K\x05.")  # a pickle of the int 5, not a zip
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02}q\x00(K\x05h\x05u.")
    torch.save(torch.zeros(80, 10).to_sparse(), tmp_path / "sparse.pt")
    torch.save(torch.zeros(80, 10, device="meta"), tmp_path / "meta.pt")
    (tmp_path / "d.yaml").write_text("layers:\n  - {type: conv1d, in_channels: 80, out_channels: 1, kernel_size: 1}\n")
    assert invoke("init", tmp_path / "d.yaml", "-o", tmp_path / "d.safetensors").exit_code == 0
    model = ["-c", tmp_path / "d.yaml", "-w", tmp_path / "d.safetensors", "--input-rate", 100]
    for name, message in (
        ("junk.pt", "junk.pt: not a readable torch tensor file"),
        ("bad.pt", "bad.pt: not a readable torch tensor file"),
        ("sparse.pt", "sparse.pt: holds a sparse_coo tensor"),
        ("meta.pt", "meta.pt: holds a meta tensor"),
    ):
        result = invoke("run", tmp_path / name, *model, "-o", tmp_path / "o.wav")
        assert result.exit_code == 1, result.stderr
        one_error_line(result.stderr, message)
        with pytest.raises(ConvtAudioError, match=message.split(": ", 1)[1]):
            convt_audio.convert(
                tmp_path / name,
                tmp_path / "o.wav",
                config=tmp_path / "d.yaml",
                weights=tmp_path / "d.safetensors",
                input_rate=100,
            )
        assert not (tmp_path / "o.wav").exists()


def test_the_output_folder_removed_mid_write_is_one_line(tmp_path):
    from convt_audio.core.errors import AudioError
    from convt_audio.io.atomic import atomic_path

    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(AudioError, match=r"its folder .*out was removed while the output was written"):
        with atomic_path(folder / "o.wav") as tmp:
            tmp.write_bytes(b"x")
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()


def test_no_home_directory_only_turns_the_cache_off(tmp_path, monkeypatch):
    import convt_audio.model.resamplers as resamplers

    monkeypatch.delenv("CONVT_AUDIO_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    assert resamplers.cache_dir() is None
    config, params = resamplers.resampler_for(44100, 48000)
    assert config.rate_factor() == Fraction(48000, 44100) and params


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: convt_audio.load("sinc-x3", device=None), "device: None is not one of"),
        (lambda: convt_audio.convert("a.wav", "b.wav", chunk="abc"), "chunk: a positive whole number"),
        (lambda: convt_audio.convert("a.wav", "b.wav", chunk=1.5), "chunk: a positive whole number"),
        (lambda: convt_audio.convert("a.wav", "b.wav", chunk=-5), "chunk: a positive whole number"),
        (lambda: convt_audio.resample(np.zeros(100), 16000, 48000, axis=3), "axis: 3 is not an axis"),
    ],
)
def test_the_api_raises_only_our_errors(call, message):
    with pytest.raises(ConvtAudioError, match=message):
        call()
    assert issubclass(UsageError, ConvtAudioError)
