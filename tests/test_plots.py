"""plot: a resampler's measured response and two spectrograms, as image files."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clitools import PACKAGE_HOME, invoke
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
pytest.importorskip("matplotlib", reason="the [plot] extra (.ci/run installs it)")


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_response_of_a_built_in_and_of_a_rational_design(tmp_path):
    result = invoke("plot", "sinc-x3", "-o", tmp_path / "r.png")
    assert result.exit_code == 0, result.output
    assert is_png(tmp_path / "r.png")
    ripple = float(result.stderr.split("passband ripple ")[1].split(" dB")[0])
    attenuation = float(result.stderr.split("stopband ")[1].split(" dB")[0])
    assert ripple < 1e-4 and attenuation > 130  # measured on the taps, not the design targets
    assert invoke("design", "sinc", "--factor", "160/147", "-o", tmp_path / "up").exit_code == 0
    result = invoke("plot", tmp_path / "up.yaml", "--input-rate", 44100, "-o", tmp_path / "up.svg")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "up.svg").read_text().lstrip().startswith("<?xml")


def test_spectrograms_side_by_side(tmp_path):
    t = np.arange(16000) / 16000
    sf.write(str(tmp_path / "a.wav"), 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    assert invoke("run", tmp_path / "a.wav", "-o", tmp_path / "b.wav").exit_code == 0
    result = invoke("plot", tmp_path / "a.wav", tmp_path / "b.wav", "-o", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert is_png(tmp_path / "s.png")


@pytest.mark.parametrize(
    "args,message",
    [
        (["hifigan-v2", "-w", "x"], "x: weights file not found"),
        (["sinc-x3", "sinc-x2", "sinc-x4"], "plot takes a config, or two audio files; got 3 arguments"),
        (["sinc-x3", "-o", "r.txt"], "a plot is written as .png, .pdf, .svg or .jpg"),
    ],
)
def test_plot_errors(tmp_path, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative outputs land in the test's folder, never the working directory
    if "-o" not in args:
        args = [*args, "-o", "r.png"]
    result = runner.invoke(app, ["plot", *[str(a) for a in args]])
    assert result.exit_code == 2 and message in result.stderr


def test_a_stack_that_is_no_resampler_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("layers:\n- {type: conv1d, in_channels: 1, out_channels: 2, kernel_size: 3}\n")
    assert invoke("init", tmp_path / "c.yaml", "-o", tmp_path / "w.safetensors").exit_code == 0
    result = invoke("plot", tmp_path / "c.yaml", "-w", tmp_path / "w.safetensors", "-o", tmp_path / "r.png")
    assert result.exit_code == 2 and "plot draws the response of a one-channel resampler stack" in result.stderr


def test_without_matplotlib_the_message_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from cli.main import app; "
        "sys.argv = ['convt-audio', 'plot', 'sinc-x3', '-o', 'r.png']; app()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "convt-audio: error: plot needs matplotlib: pip install 'convt-audio[plot]'"
