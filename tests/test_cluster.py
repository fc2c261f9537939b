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
from typer.testing import CliRunner

from cli.main import app

ray = pytest.importorskip("ray", reason="the [ray] extra (.ci/run installs it)")
ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def cluster():
    from convt_audio.cluster import connect

    connect("local", 2)  # one real local cluster (2 CPUs) for the module; the CLI joins it
    yield
    ray.shutdown()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


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
    assert written == sorted(p.relative_to(tmp_path / "remote").as_posix() for p in (tmp_path / "remote").rglob("*")
                             if p.is_file())
    for name in written:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()
    reports = [json.loads(line) for line in remote.stdout.splitlines()]
    assert sorted(r["status"] for r in reports) == ["error", "error"] + ["ok"] * 6
    assert {r["input"] for r in reports if r["status"] == "ok"} == {f"in/{n}" for n in written}


def test_a_worker_killed_mid_file_is_retried_and_every_output_is_written_once(tmp_path):
    from convt_audio.cluster import run_batch_ray
    from convt_audio.pipeline import BatchEvents, RunnerRecipe, RunOptions, check_outputs, plan_jobs

    corpus(tmp_path / "in", files=4, seconds=8)
    recipe = RunnerRecipe("sinc-x3")
    runner, _ = recipe.build()
    jobs = check_outputs(plan_jobs([tmp_path / "in"], tmp_path / "out", True), runner)
    jobs = [job for job in jobs if job.source.suffix == ".wav" and job.source.name != "bad.wav"]
    killed = []

    def killer() -> None:  # kill the worker that writes the first temporary file it sees
        for _ in range(4000):
            parts = [p for p in (tmp_path / "out").rglob(".*.part")] if (tmp_path / "out").exists() else []
            if parts:
                pid = int(parts[0].name.split("-")[-1].split(".")[0])
                os.kill(pid, signal.SIGKILL)
                killed.append((parts[0], pid))
                return
            threading.Event().wait(0.005)

    watcher = threading.Thread(target=killer)
    watcher.start()
    finished = []

    class Events(BatchEvents):
        def finished(self, job, report):
            finished.append(report["output"])

    result = run_batch_ray("local", recipe, jobs, RunOptions(chunk=16), 2, events=Events())
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
    from convt_audio.cluster import run_batch_ray
    from convt_audio.pipeline import BatchEvents, RunnerRecipe, RunOptions, check_outputs, plan_jobs

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
    proc = subprocess.Popen([sys.executable, "-c", "from cli.main import app; app()", "run", "in", "-R", "-o", "out",
                             "--ray", "local", "-j", "2", "--chunk", "16", "--json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
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
    code = ("import sys; from cli.main import app; "
            "sys.argv = ['convt-audio', 'run', 'a.wav', '--ray', 'ray://127.0.0.1:1', '-o', 'o.wav']; app()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert "--ray ray://127.0.0.1:1: cannot reach a Ray cluster" in done.stderr
    assert not (tmp_path / "o.wav").exists()


def test_ray_without_an_address_starts_a_local_cluster():
    from cli.main import _ray_default

    assert _ray_default(["run", "in", "--ray"]) == ["run", "in", "--ray", "local"]
    assert _ray_default(["run", "--ray", "in", "-o", "x"]) == ["run", "--ray", "local", "in", "-o", "x"]
    assert _ray_default(["run", "in", "--ray", "-j", "2"]) == ["run", "in", "--ray", "local", "-j", "2"]
    for address in ("auto", "local", "10.0.0.1:6379", "ray://head:10001"):
        assert _ray_default(["run", "in", "--ray", address]) == ["run", "in", "--ray", address]
