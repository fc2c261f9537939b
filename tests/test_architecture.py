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
    for low in ("convt_audio.streaming", "convt_audio.shapes", "convt_audio.padding", "convt_audio.errors"):
        assert not {m for m in graph[low] if m.startswith("convt_audio.kinds")}, low


def test_the_engine_imports_without_the_command_line_or_torch(tmp_path):
    code = (
        "import sys, convt_audio, convt_audio.config as c, convt_audio.kinds, convt_audio.report as r;"
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
    """``isinstance`` on a spec class, or a comparison with a layer type name, outside the kinds."""
    names = {"Conv1dSpec", "ConvTranspose1dSpec", "ActivationSpec", "SnakeSpec", "ResidualSpec", "ParallelSpec"}
    allowed = {
        "kinds",
        "resampler.py",
        "polyphase.py",
        "fftconv.py",
        "design.py",
        "architectures.py",
    }  # the resampler's own stages
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                kinds = {getattr(a, "id", getattr(a, "attr", "")) for a in ast.walk(node.args[1])}
                if kinds & names:
                    offenders.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in ("conv1d", "conv_transpose1d", "residual", "parallel")
                for c in node.comparators
            ):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders
