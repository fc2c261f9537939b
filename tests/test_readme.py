"""Every code block of README.md runs as written: the fresh-machine commands, the shell tour (in
a folder holding the files it names) and the Python examples."""

import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import ROOT, tone

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)
BIN = Path(sys.executable).parent

DECODER = """name: decoder
layers:
  - {type: conv1d, in_channels: 1, out_channels: 8, kernel_size: 5, padding: 2}
  - {type: conv_transpose1d, in_channels: 8, out_channels: 4, kernel_size: 4, stride: 2, padding: 1}
  - {type: leaky_relu, negative_slope: 0.1}
  - {type: conv1d, in_channels: 4, out_channels: 1, kernel_size: 3, padding: 1}
"""


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{command}"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_readme_has_the_blocks_this_test_knows():
    kinds = [kind for kind, _ in BLOCKS]
    assert kinds == ["sh", "sh", "sh", "python"], kinds


def test_the_fresh_machine_commands(tmp_path):
    """The setup chain ends with the main job; the second block is the test command CI runs."""
    setup, tests = BLOCKS[0][1].strip(), BLOCKS[1][1].strip()
    steps = [step.strip() for step in setup.split("&&")]
    assert steps[:3] == [
        "python3 -m venv .venv",
        ".venv/bin/pip install torch==2.13.0",
        ".venv/bin/pip install '.[test,plot,ray]'",  # as users install it: a wheel, not the checkout
    ]
    # pytest's console script, not python -m pytest: no checkout on sys.path, so the tests import
    # the installed package; CI runs exactly this in each of its venvs (not re-run from here)
    assert tests == ".venv/bin/pytest -q"
    assert '"$venv/bin/pytest" -q' in (ROOT / ".ci" / "run").read_text()
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    done = _shell(steps[3].replace(".venv/bin/", ""), tmp_path)  # the installed command, this venv's
    assert done.returncode == 0, done.stderr
    info = sf.info(str(tmp_path / "speech-48k.wav"))
    assert info.samplerate == 48000 and info.frames == 3 * sf.info(str(tmp_path / "samples/speech-16k.wav")).frames


def _tour_files(folder: Path) -> None:
    """The files the shell tour names, made here: audio, an array, mels, two checkpoints."""
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_vocoders import HifiGanGenerator, MelGanGenerator, randomise

    tone(folder / "in.wav", rate=16000, seconds=0.5)
    tone(folder / "in44k.wav", rate=44100, seconds=0.5)
    for name in ("a.wav", "sub/b.wav"):
        (folder / "music" / name).parent.mkdir(parents=True, exist_ok=True)
        tone(folder / "music" / name, rate=22050, seconds=0.3)
    np.save(folder / "x.npy", np.random.default_rng(0).normal(0, 0.1, (2, 2400)).astype(np.float32))
    (folder / "decoder.yaml").write_text(DECODER)
    mel = np.random.default_rng(1).normal(-5, 1, (80, 12)).astype(np.float32)
    np.save(folder / "mel.npy", mel)
    (folder / "mels" / "sub").mkdir(parents=True)
    np.save(folder / "mels" / "a.npy", mel)
    np.save(folder / "mels" / "sub" / "b.npy", mel[:, :9])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm, as the checkpoints were trained with
        torch.save({"generator": randomise(HifiGanGenerator("v1"), 1).state_dict()}, folder / "g_02500000")
        torch.save(randomise(MelGanGenerator(), 1).state_dict(), folder / "best_netG.pt")


@pytest.mark.skipif(shutil.which("sox") is None, reason="the tour pipes through sox (apt-get install sox)")
def test_the_shell_tour_runs_line_by_line(tmp_path):
    _tour_files(tmp_path)
    lines = [line for line in BLOCKS[2][1].splitlines() if line.strip()]
    for line in lines:
        command = line.split("  #")[0].strip()
        if "--device cuda" in command and not torch.cuda.is_available():
            command = command.replace("--device cuda", "--device cpu")  # the one substitution: no GPU here
        done = _shell(command, tmp_path)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    rates = {
        "in.48000hz.wav": 48000,
        "out.wav": 48000,
        "out.flac": 32000,
        "up/a.wav": 48000,
        "up/sub/b.wav": 48000,
        "x.wav": 48000,  # a 24 kHz array, to 48 kHz by default
        "decoded.wav": 32000,
        "speech.wav": 22050,
        "wavs/a.wav": 22050,
        "wavs/sub/b.wav": 22050,
        "piped.flac": 48000,
    }
    for name, rate in rates.items():
        assert sf.info(str(tmp_path / name)).samplerate == rate, name
    assert sf.info(str(tmp_path / "speech.wav")).frames == 12 * 256
    assert np.load(tmp_path / "in.mel.npy").shape[0] == 80
    for name in ("random.safetensors", "my-x4.yaml", "my-x4.safetensors", "up44-48.yaml", "response.png", "spec.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_the_python_examples_run(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    monkeypatch.chdir(tmp_path)
    for kind, block in BLOCKS:
        if kind == "python":
            exec(compile(block, "README.md", "exec"), {})
    assert sf.info("speech-48k.flac").samplerate == 48000
