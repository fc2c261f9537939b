"""The product as users install it: the wheel holds every module, config and marker of the tree,
the package under test is the installed one when CI says so, and the Python floor is stated once."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import soundfile as sf
from clitools import ROOT

import convt_audio


def _tree_files() -> set[str]:
    """What a wheel must hold, as paths inside it: every module and marker of convt_audio/ and
    cli/, and the built-in configs (configs/ in the tree, convt_audio/configs/ installed)."""
    wanted = set()
    for package in ("convt_audio", "cli"):
        for path in (ROOT / package).rglob("*"):
            if path.suffix in (".py", ".typed") and "__pycache__" not in path.parts:
                wanted.add(path.relative_to(ROOT).as_posix())
    for path in (ROOT / "configs").iterdir():
        if path.suffix in (".py", ".yaml", ".safetensors"):
            wanted.add(f"convt_audio/configs/{path.name}")
    return wanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from the tree, as ``pip install .`` builds it."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"  # the tree's files alone: no build/ or egg-info of an earlier build
    for name in ("pyproject.toml", "setup.py", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for name in ("convt_audio", "cli", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(folder),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    assert built.returncode == 0, built.stderr
    (path,) = folder.glob("convt_audio-*.whl")
    return path


def test_a_wheel_built_from_the_tree_holds_every_module_and_config(wheel):
    names = {name for name in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in name}
    assert _tree_files() <= names, sorted(_tree_files() - names)
    assert "convt_audio/kinds/base.py" in names and "convt_audio/py.typed" in names
    # nothing of the checkout beyond the packages: no tests, samples or top-level configs package
    assert {name.split("/")[0] for name in names} == {"convt_audio", "cli"}, sorted(names)
    entry = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("entry_points.txt"))
    assert "convt-audio = cli.main:app" in zipfile.ZipFile(wheel).read(entry).decode()


def test_every_module_imports_from_the_installed_wheel_and_the_main_job_runs(wheel, tmp_path):
    """Installed away from the checkout, every module imports (the kinds too) and the console
    entry point runs the default job on the shipped sample."""
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    modules = sorted(
        ".".join(Path(name).with_suffix("").parts).removesuffix(".__init__")
        for name in zipfile.ZipFile(wheel).namelist()
        if name.endswith(".py") and ".dist-info/" not in name
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(target)!r}), module.__file__\n"
        "from cli.main import app\n"
        "app()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = tmp_path / "speech-48k.wav"
    ran = subprocess.run(
        [sys.executable, "-c", code, "run", str(ROOT / "samples" / "speech-16k.wav"), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(target)},
    )
    assert ran.returncode == 0, ran.stderr
    assert sf.info(str(out)).samplerate == 48000
    assert sf.info(str(out)).frames == 3 * sf.info(str(ROOT / "samples" / "speech-16k.wav")).frames


def test_an_installed_package_holds_every_module_of_the_tree():
    """Where the suite runs against an installed distribution (CI's), its record lists every
    file of the tree's packages."""
    files = {f.as_posix() for f in metadata.distribution("convt-audio").files or ()}
    if Path(convt_audio.__file__).resolve().parent == (ROOT / "convt_audio").resolve():
        # an editable install records only its path hook: the tree itself is what is imported
        assert any(name.endswith(".pth") or "__editable__" in name for name in files), sorted(files)[:20]
    else:
        assert _tree_files() <= files, sorted(_tree_files() - files)


def test_the_suite_runs_against_the_installed_package_when_asked():
    """CI sets CONVT_AUDIO_TEST_INSTALLED=1: then the package imported here is not the checkout's."""
    location = Path(convt_audio.__file__).resolve()
    if os.environ.get("CONVT_AUDIO_TEST_INSTALLED") == "1":
        assert ROOT.resolve() not in location.parents, location
        assert "site-packages" in location.parts, location
    else:
        assert location.name == "__init__.py" and location.parent.name == "convt_audio"


def test_the_python_floor_is_stated_once_and_matches_the_tools():
    text = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'requires-python = ">=3\.(\d+)"', text).group(1)
    assert re.search(rf'target-version = "py3{floor}"', text), "ruff's target must be the floor"
    assert f"Python ≥ 3.{floor}" in (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"FLOOR=3.{floor}" in ci, "CI must test the floor it claims"
    assert sys.version_info >= (3, int(floor))


def test_the_source_tree_imported_as_it_is_finds_its_configs(tmp_path):
    """With the checkout itself on the path (python -c in it, Ray's workers started there), the
    built-in configs come from configs/, which installs as convt_audio.configs."""
    code = (
        "import convt_audio.model.config as c, sys; names = c.builtin_configs(); "
        "assert c.__file__.startswith(sys.argv[1]), c.__file__; print(len(names), 'sinc-x3' in names)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(list((ROOT / "configs").glob("*.yaml")))), "True"]
