"""The package's shape: imports go one way (no circle, lazy imports counted), the engine imports
without Typer, rich or torch, and nothing outside the kinds switches on a layer kind."""

import ast
import os
import subprocess
import sys

from clitools import PACKAGE_HOME, ROOT

PACKAGE = ROOT / "convt_audio"


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports():
    """module -> the package modules it imports anywhere in its source (functions included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            found.update(c for c in candidates if c in modules and c != name)
        graph[name] = found
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()
    assert "convt_audio.kinds.conv" in graph["convt_audio.kinds"]  # the walk sees package imports
    assert "convt_audio.kinds.conv_torch" in graph["convt_audio.kinds.conv"]  # and lazy ones
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_protocol_and_the_shape_algebra_know_no_kind():
    graph = _imports()
    for low in (
        "convt_audio.core.streaming",
        "convt_audio.core.shapes",
        "convt_audio.kinds.padding",
        "convt_audio.core.errors",
    ):
        assert not {m for m in graph[low] if m.startswith("convt_audio.kinds")}, low


def test_the_engine_imports_without_the_command_line_or_torch(tmp_path):
    code = (
        "import sys, convt_audio, convt_audio.model.config as c, convt_audio.kinds, convt_audio.run.report as r;"
        "cfg = c.load_config('hifigan-v1'); r.summary(cfg, 22050, None, 'none');"
        "bad = [m for m in ('torch', 'typer', 'rich') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_only_the_kinds_and_the_resampling_engine_name_kinds():
    """``isinstance`` on a kind class, or a comparison with a layer type name, outside the kinds
    and the resampler's own stages — in the package and in the command line. The names come from
    the registry, so a kind added later is guarded too."""
    from convt_audio.kinds import KINDS

    names = {cls.__name__ for cls in KINDS.values()}
    types = set(KINDS)
    assert {"SnakeBetaSpec", "AliasFreeSpec", "PqmfSynthesisSpec"} <= names, sorted(names)
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "cli").rglob("*.py")]:
        rel = path.relative_to(ROOT)
        if rel.parts[:2] in (("convt_audio", "kinds"), ("convt_audio", "resampling")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                kinds = {getattr(a, "id", getattr(a, "attr", "")) for a in ast.walk(node.args[1])}
                if kinds & names:
                    offenders.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in types for c in node.comparators
            ):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders


# the subpackages, bottom first: a module may import its own subpackage and those below it
LAYERS = ("core", "io", "kinds", "resampling", "model", "run")


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return len(LAYERS)  # convt_audio itself, api, plots: the top


def test_every_import_points_down_the_subpackages():
    graph = _imports()
    assert {name.split(".")[1] for name in graph if name.count(".") >= 2} == set(LAYERS)
    upward = [
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(source)
    ]
    assert not upward, upward


def test_every_subpackage_says_what_it_owns_and_may_import():
    for layer in LAYERS:
        text = (PACKAGE / layer / "__init__.py").read_text()
        assert text.startswith('"""') and len(text) > 200, layer


def test_a_kind_that_leaves_out_a_member_of_the_contract_fails_when_its_module_is_imported(tmp_path):
    """A new pointwise kind needs its forward alone; a non-pointwise one every shape fact too."""
    code = (
        "from dataclasses import dataclass\n"
        "from convt_audio.kinds.base import Kind, Pointwise, register\n"
        "@register\n@dataclass(frozen=True)\nclass Square(Pointwise):\n"
        "    names = ('square_test',)\n    def forward(self, x, params=None):\n        return x * x\n"
        "try:\n    @register\n    @dataclass(frozen=True)\n    class Half(Kind):\n"
        "        names = ('half_test',)\n        def forward(self, x, params):\n            return x[..., ::2]\n"
        "except TypeError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_HOME},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "layer kind Half does not implement first_starved, flops_per_frame, input_span, min_input_frames, "
        "output_frames, streamer: every kind must"
    )


def test_every_engine_is_an_engine_and_one_without_its_members_cannot_be_made():
    import numpy as np

    from convt_audio.core.engine import Engine, NumpyEngine
    from convt_audio.model.config import load_config
    from convt_audio.model.engines import build_engine
    from convt_audio.model.weights import load_params

    cfg = load_config("sinc-x3")
    params, _ = load_params(cfg)
    for kernel in ("numpy", "transposed"):
        engine = build_engine(cfg, params, "cpu", "float32", kernel=kernel)
        assert isinstance(engine, Engine) and engine.name and engine.device == "cpu"
        stream = engine.open_stream(1)
        x = np.random.default_rng(0).normal(size=(1, 1, 100)).astype(np.float32)
        first = np.concatenate([stream.push(x), stream.flush()], -1)
        stream.reset()  # reset resets: the same stream gives the same output again
        assert np.array_equal(np.concatenate([stream.push(x), stream.flush()], -1), first)

    class Incomplete(NumpyEngine):
        name = "incomplete"

    try:
        Incomplete((), "float32")
    except TypeError as exc:
        assert "preferred_chunk" in str(exc) and "open_stream" in str(exc)
    else:
        raise AssertionError("an engine without preferred_chunk and open_stream was made")


def test_the_command_line_is_thin():
    """cli/main.py parses and calls: under 500 lines, and run's preparation is the library's."""
    text = (ROOT / "cli" / "main.py").read_text()
    assert len(text.splitlines()) < 500
    assert "prepare_run(" in text and "RunnerRecipe(" not in text and "check_outputs(" not in text


def test_convert_refuses_what_run_refuses_in_the_same_words(tmp_path):
    from clitools import cli, one_error_line, tone

    import convt_audio
    from convt_audio.core.errors import UsageError

    tone(tmp_path / "a.wav")
    for kwargs, args, message in (
        ({"container": "xyz"}, ["-t", "xyz"], "'xyz' is not one of"),
        ({"bits": 12}, ["-b", "12"], "12 is not one of [16, 24, 32]"),
        ({"threads": 10_000}, ["--threads", "10000"], "at most"),
    ):
        done = cli("run", "a.wav", "-o", "b.wav", "-r", "48k", *args, cwd=tmp_path)
        assert done.returncode == 2
        one_error_line(done.stderr, message)
        try:
            convt_audio.convert(tmp_path / "a.wav", tmp_path / "b.wav", rate="48k", **kwargs)
        except UsageError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"convert accepted {kwargs}")
    assert not (tmp_path / "b.wav").exists()
