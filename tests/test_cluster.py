"""--ray: the same batch on a real local Ray cluster — same files, same exit codes, exactly once."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clitools import PACKAGE_HOME, invoke

ray = pytest.importorskip("ray", reason="the [ray] extra (.ci/run installs it)")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    from convt_audio.run.cluster import connect

    connect("local", 2)  # one real local cluster (2 CPUs) for the module; the CLI joins it
    yield
    ray.shutdown()


def corpus(folder: Path, files: int = 6, seconds: float = 0.5) -> None:
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(files):
        where = folder / ("sub" if i % 2 else ".") / f"f{i}.wav"
        sf.write(str(where), 0.3 * rng.standard_normal(int(16000 * seconds)), 16000, subtype="PCM_16")
    (folder / "bad.wav").write_bytes(b"not audio")
    np.save(folder / "mel.npy", np.zeros((1, 100), np.float32))  # no rate: fails alone


def errors(stderr: str) -> list[str]:
    return sorted(line for line in stderr.splitlines() if line.startswith("convt-audio: error:"))


def test_same_outputs_and_exit_code_as_a_local_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus(tmp_path / "in")
    local = invoke("run", "in", "-R", "-o", "local/", "-j", "2")
    remote = invoke("run", "in", "-R", "-o", "remote/", "--ray", "local", "-j", "2", "--json")
    assert local.exit_code == remote.exit_code == 1
    assert errors(local.stderr) == errors(remote.stderr) and len(errors(local.stderr)) == 2
    written = sorted(p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local").rglob("*.wav"))
    assert written == sorted(
        p.relative_to(tmp_path / "remote").as_posix() for p in (tmp_path / "remote").rglob("*") if p.is_file()
    )
    for name in written:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()
    reports = [json.loads(line) for line in remote.stdout.splitlines()]
    assert sorted(r["status"] for r in reports) == ["error", "error"] + ["ok"] * 6
    assert {r["input"] for r in reports if r["status"] == "ok"} == {f"in/{n}" for n in written}


def test_a_worker_killed_mid_file_is_retried_and_every_output_is_written_once(tmp_path):
    from convt_audio.run.batch import BatchEvents
    from convt_audio.run.cluster import run_batch_ray
    from convt_audio.run.planning import check_outputs, plan_jobs
    from convt_audio.run.runner import RunnerRecipe, RunOptions

    corpus(tmp_path / "in", files=4, seconds=8)
    recipe = RunnerRecipe("sinc-x3")
    runner, _ = recipe.build()
    jobs = check_outputs(plan_jobs([tmp_path / "in"], tmp_path / "out", True), runner)
    jobs = [job for job in jobs if job.source.suffix == ".wav" and job.source.name != "bad.wav"]
    killed = []
    done = threading.Event()

    def killer() -> None:  # kill the worker that writes the first temporary file it sees, however late
        while not done.is_set():
            parts = [p for p in (tmp_path / "out").rglob(".*.part")] if (tmp_path / "out").exists() else []
            if parts:
                pid = int(parts[0].name.split("-")[-1].split(".")[0])
                os.kill(pid, signal.SIGKILL)
                killed.append((parts[0], pid))
                return
            done.wait(0.002)

    watcher = threading.Thread(target=killer)
    watcher.start()
    finished = []

    class Events(BatchEvents):
        def finished(self, job, report):
            finished.append(report.output)

    try:
        result = run_batch_ray("local", recipe, jobs, RunOptions(chunk=16), 2, events=Events())
    finally:
        done.set()
        watcher.join()
    assert killed, "no worker was caught writing"
    assert result.failed == 0 and result.written == 4
    assert sorted(finished) == sorted(str(job.dest) for job in jobs)  # each reported once
    assert not list((tmp_path / "out").rglob("*.part"))
    for job in jobs:
        assert sf.info(str(job.dest)).frames == 3 * 8 * 16000


def test_resume_after_an_interruption(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus(tmp_path / "in", files=6)
    (tmp_path / "in" / "bad.wav").unlink()
    (tmp_path / "in" / "mel.npy").unlink()
    from convt_audio.run.batch import BatchEvents
    from convt_audio.run.cluster import run_batch_ray
    from convt_audio.run.planning import check_outputs, plan_jobs
    from convt_audio.run.runner import RunnerRecipe, RunOptions

    recipe = RunnerRecipe("sinc-x2")
    jobs = check_outputs(plan_jobs(["in"], "out/", True), recipe.build()[0])
    cancel = threading.Event()

    class StopAfterTwo(BatchEvents):
        done = 0

        def finished(self, job, report):
            StopAfterTwo.done += 1
            if StopAfterTwo.done == 2:
                cancel.set()

    first = run_batch_ray("local", recipe, jobs, RunOptions(), 1, cancel=cancel, events=StopAfterTwo())
    assert first.written >= 2 and first.written < 6
    before = {p: p.stat().st_mtime_ns for p in Path("out").rglob("*.wav")}
    assert not list(Path("out").rglob("*.part"))
    result = invoke("run", "in", "-R", "-o", "out/", "--ray", "local", "-n", "--json")
    assert result.exit_code == 0, result.output
    statuses = sorted(json.loads(line)["status"] for line in result.stdout.splitlines())
    assert statuses.count("skipped") == len(before) and statuses.count("ok") == 6 - len(before)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # nothing written twice


def test_ctrl_c_cancels_the_cluster_work(tmp_path):
    corpus(tmp_path / "in", files=6, seconds=8)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cli.main import app; app()",
            "run",
            "in",
            "-R",
            "-o",
            "out",
            "--ray",
            "local",
            "-j",
            "2",
            "--chunk",
            "16",
            "--json",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME, "PYTHONUNBUFFERED": "1"},
    )
    first = json.loads(proc.stdout.readline())  # a file finished: the rest are running or waiting
    assert first["status"] in ("ok", "error")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not list((tmp_path / "out").rglob("*.part"))
    for wav in (tmp_path / "out").rglob("*.wav"):
        assert sf.info(str(wav)).frames == 3 * 8 * 16000  # what exists is complete


def test_unreachable_cluster_is_a_usage_error(tmp_path, monkeypatch):
    sf.write(str(tmp_path / "a.wav"), np.zeros(1600), 16000)
    code = (
        "import sys; from cli.main import app; "
        "sys.argv = ['convt-audio', 'run', 'a.wav', '--ray', 'ray://127.0.0.1:1', '-o', 'o.wav']; app()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 2, done.stderr
    assert "--ray ray://127.0.0.1:1: cannot reach a Ray cluster" in done.stderr
    assert not (tmp_path / "o.wav").exists()


def test_ray_without_an_address_starts_a_local_cluster(tmp_path, monkeypatch):
    from cli.main import _ray_default

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()  # an existing input after --ray is an input, not an address
    assert _ray_default(["run", "--ray", "bogus", "in"]) == ["run", "--ray", "bogus", "in"]  # refused later
    assert _ray_default(["run", "in", "--ray"]) == ["run", "in", "--ray", "local"]
    assert _ray_default(["run", "--ray", "in", "-o", "x"]) == ["run", "--ray", "local", "in", "-o", "x"]
    assert _ray_default(["run", "in", "--ray", "-j", "2"]) == ["run", "in", "--ray", "local", "-j", "2"]
    for address in ("auto", "local", "10.0.0.1:6379", "ray://head:10001"):
        assert _ray_default(["run", "in", "--ray", address]) == ["run", "in", "--ray", address]


# ------------------------------------------------------------------ nothing lost, nothing silent


def test_ray_with_stdout_as_the_output_is_refused(tmp_path):
    """CA run a.wav -o - --ray local | wc -c gave 0 bytes and exit 0: the audio went to worker logs."""
    sf.write(str(tmp_path / "a.wav"), np.zeros(1600), 16000)
    for kind in ([], ["-t", "flac"]):
        result = invoke("run", tmp_path / "a.wav", "-o", "-", "--ray", "local", *kind)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr.strip() == (
            "convt-audio: error: --ray and -o -: the cluster's workers write files, "
            "not this standard output; name an output file or folder"
        )


@pytest.mark.parametrize(
    "address,message",
    [
        (
            "127.0.0.1:1",
            "--ray 127.0.0.1:1: cannot reach a Ray cluster (connecting to 127.0.0.1:1: Connection refused)",
        ),
        ("bogus", "--ray bogus: not a cluster address (auto, local, HOST:PORT or ray://HOST:PORT)"),
        ("host:port", "--ray host:port: not a cluster address"),
    ],
)
def test_an_unreachable_or_malformed_address_fails_at_once(tmp_path, address, message):
    """--ray 127.0.0.1:1 hung past 200 s with 39 lines of C++ warnings; --ray bogus made 'bogus' an input."""
    sf.write(str(tmp_path / "a.wav"), np.zeros(1600), 16000)
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import app; app()", "run", "a.wav", "--ray", address, "-o", "o.wav"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"convt-audio: error: {message}"] or (
        len(done.stderr.splitlines()) == 1 and message in done.stderr
    )
    assert not (tmp_path / "o.wav").exists()


def test_a_file_whose_worker_keeps_dying_fails_by_name_with_pure_json_and_no_part(tmp_path):
    """Worker SIGKILLed 4 times while writing long1.wav: a .part stayed, the error named '?' and null,
    and Ray's '(raylet) A worker died' lines went to stdout among the JSON records."""
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "in" / "long1.wav"), 0.3 * rng.standard_normal(16000 * 8), 16000, subtype="PCM_16")
    sf.write(str(tmp_path / "in" / "short.wav"), 0.3 * rng.standard_normal(1600), 16000, subtype="PCM_16")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cli.main import app; app()",
            "run",
            "in",
            "-o",
            "out",
            "--ray",
            "local",
            "-j",
            "1",
            "--chunk",
            "16",
            "--json",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    killed: set = set()

    def killer() -> None:
        while proc.poll() is None and len(killed) < 4:
            for part in (tmp_path / "out").glob(".long1.wav.*.part") if (tmp_path / "out").exists() else []:
                pid = int(part.name.split("-")[-1].split(".")[0])
                if pid not in killed:
                    with __import__("contextlib").suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            threading.Event().wait(0.01)

    watcher = threading.Thread(target=killer)
    watcher.start()
    stdout, stderr = proc.communicate(timeout=300)
    watcher.join()
    assert len(killed) == 4, (killed, stderr)
    assert proc.returncode == 1, stderr
    records = [json.loads(line) for line in stdout.splitlines()]  # every stdout line is a record
    assert sorted((r["input"], r["status"]) for r in records) == [("in/long1.wav", "error"), ("in/short.wav", "ok")]
    failed = next(r for r in records if r["status"] == "error")
    assert failed["output"] == "out/long1.wav" and "a cluster worker died 4 times on this file" in failed["error"]
    assert [line for line in stderr.splitlines() if line.startswith("convt-audio: error:")] == [
        f"convt-audio: error: {failed['error']}"
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["short.wav"]  # no .part, no long1


def test_a_retry_after_the_rename_reports_the_file_without_writing_it_again(tmp_path):
    """Worker SIGKILLed after renaming out/long1.wav, before reporting: 'already exists' (exit 1), or
    with -y the file renamed into place twice."""
    from convt_audio.run.cluster import Worker
    from convt_audio.run.runner import RunOptions

    sf.write(str(tmp_path / "a.wav"), 0.1 * np.ones(1600), 16000, subtype="PCM_16")
    for options in (RunOptions(), RunOptions(overwrite=True)):
        out = tmp_path / f"o{int(options.overwrite)}.wav"
        worker = Worker({"config": "sinc-x3"}, {k: getattr(options, k) for k in ("overwrite",)})
        first = worker.process(0, str(tmp_path / "a.wav"), str(out), None, None, "batch-0")
        inode, written = out.stat().st_ino, out.read_bytes()
        # the retry of that same job (a new worker after the first died before reporting)
        again = Worker({"config": "sinc-x3"}, {"overwrite": options.overwrite}).process(
            0, str(tmp_path / "a.wav"), str(out), None, None, "batch-0"
        )
        assert first[1] == again[1] == "ok", again
        assert again[2].resumed and again[2].frames_out == first[2].frames_out == 4800
        facts = ("output_rate", "channels_out", "subtype", "engine")
        assert {k: getattr(again[2], k) for k in facts} == {k: getattr(first[2], k) for k in facts}
        assert out.stat().st_ino == inode and out.read_bytes() == written  # not written twice
        # another batch's job for the same output is an ordinary existing file
        other = worker.process(0, str(tmp_path / "a.wav"), str(out), None, None, "batch-1")
        assert other[1] == ("ok" if options.overwrite else "error")
