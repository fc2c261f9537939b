"""Running the command line from tests: in process (Typer's runner) or as a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

import convt_audio
from cli.main import app

ROOT = Path(__file__).resolve().parents[1]
# where the package under test is imported from: the checkout, or a venv's site-packages when CI
# tests the installed wheel; subprocesses get it as PYTHONPATH so that they run the same code
PACKAGE_HOME = str(Path(convt_audio.__file__).resolve().parents[1])
_SCRIPT = Path(sys.executable).parent / "convt-audio"  # the console script pip installed
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from cli.main import app; app()"]
ENTRY = " ".join(f"'{word}'" for word in COMMAND)  # the console script, for shell lines
_runner = CliRunner()


def invoke(*args):
    """``convt-audio ARGS`` in this process; ``.exit_code``, ``.stdout``, ``.stderr``."""
    return _runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def cli(*args, stdin=None, cwd=None, env=None, timeout=300):
    """The real console entry point in a subprocess, bytes in and out."""
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME, **(env or {})},
    )


def shell(line: str, cwd, env=None, timeout=300):
    """A bash line (``$CA`` is the console script), text out; pipefail set."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", line.replace("$CA", ENTRY)],
        cwd=cwd,
        timeout=timeout,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME, **(env or {})},
    )


def error_lines(stderr) -> list[str]:
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    return [line for line in text.splitlines() if line.strip()]


def one_error_line(stderr, text: str) -> None:
    """stderr is exactly one ``convt-audio: error:`` line containing ``text``."""
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("convt-audio: error: ") and text in lines[0], lines


def tone(path, seconds=0.5, rate=16000, subtype="PCM_16", channels=1, frequency=220.0, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    data = np.stack([amplitude * np.sin(2 * np.pi * (frequency + 110 * c) * t) for c in range(channels)], 1)
    sf.write(str(path), data[:, 0] if channels == 1 else data, rate, subtype=subtype)
    return data
