"""Weights files → per-layer tensors, with weight-norm folding and shape checks (SPEC §3).

Formats: ``.safetensors``; ``.pt``/``.pth``/``.ckpt`` loaded with ``weights_only=True`` (never
unpickling code), nested dicts flattened with "."; ``.npz`` (no pickles).
"""

from __future__ import annotations

import difflib
import math
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .config import Config
from .errors import ConfigError, UsageError, WeightsError
from .layers import Stack

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".npz")


def _flatten(tree: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(tree, torch.Tensor):
        out[prefix.rstrip(".")] = tree
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            _flatten(value, f"{prefix}{key}.", out)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            _flatten(value, f"{prefix}{i}.", out)
    # other leaves (epoch numbers, strings, hyper-parameters) carry no tensors


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor in a weights file, by its flattened name."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        if suffix in (".pt", ".pth", ".ckpt"):
            try:
                tree = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError …
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                    text = "it holds Python objects that weights_only=True refuses to unpickle"
                raise WeightsError(f"{path}: cannot load checkpoint: {text}") from None
            flat: dict[str, torch.Tensor] = {}
            _flatten(tree, "", flat)
            return flat
        if suffix == ".npz":
            with np.load(str(path), allow_pickle=False) as archive:
                return {name: torch.from_numpy(np.array(archive[name])) for name in archive.files}
    except WeightsError:
        raise
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"{path}: cannot read weights: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise WeightsError(f"{path}: cannot read weights: {exc}") from None
    raise WeightsError(f"{path}: unknown weights format {suffix!r} (allowed: {list(WEIGHT_SUFFIXES)})")


def _norm_except(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """‖v‖ over every dim but the one ``g`` keeps (``weight_norm``'s ``dim``), shaped like ``g``.

    ``g`` has v's size along that dim and 1 elsewhere; a scalar ``g`` (``dim=None``) means the
    norm of the whole tensor.
    """
    if g.dim() == v.dim():
        for dim in range(v.dim()):
            if g.shape[dim] == v.shape[dim] and all(g.shape[j] == 1 for j in range(g.dim()) if j != dim):
                others = [i for i in range(v.dim()) if i != dim]
                return v.pow(2).sum(dim=others, keepdim=True).sqrt() if others else v.abs()
    return v.norm()


def fold_weight_norm(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Fold ``weight_g``/``weight_v`` and ``parametrizations.weight.original0/1`` into ``weight``.

    Returns the tensors with folded names added, and for each folded name the source names.
    """
    out = dict(tensors)
    sources: dict[str, list[str]] = {}
    for name in tensors:
        for g_suffix, v_suffix in (
            ("weight_g", "weight_v"),
            ("parametrizations.weight.original0", "parametrizations.weight.original1"),
        ):
            if not name.endswith(g_suffix):
                continue
            stem = name[: -len(g_suffix)]
            v_name = stem + v_suffix
            if v_name not in tensors:
                continue
            g, v = tensors[name].double(), tensors[v_name].double()
            weight = v * (g / _norm_except(v, g))
            target = stem + "weight"
            out[target] = weight.to(tensors[v_name].dtype)
            sources[target] = [name, v_name]
    return out, sources


def bind(config: Config, tensors: Mapping[str, torch.Tensor], source: str = "<weights>") -> tuple[Stack, list[str]]:
    """Match tensors to the config's layers; return the stack and the names left unused."""
    folded, sources = fold_weight_norm(tensors)
    used: set[str] = set()
    params = []
    for spec, names in zip(config.layers, config.tensor_names):
        layer: dict[str, torch.Tensor] = {}
        for local, expected in spec.tensor_shapes().items():
            full = names[local]
            if full not in folded:
                close = difflib.get_close_matches(full, list(tensors), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise WeightsError(
                    f"{source}: missing tensor {full!r} for layers[{spec.index}] ({spec.type}), "
                    f"expected shape {tuple(expected)}{hint}"
                )
            tensor = folded[full]
            if tuple(tensor.shape) != tuple(expected):
                raise WeightsError(
                    f"{source}: tensor {full!r} for layers[{spec.index}] ({spec.type}) has shape "
                    f"{tuple(tensor.shape)}, expected {tuple(expected)}"
                )
            if not tensor.is_floating_point():
                raise WeightsError(f"{source}: tensor {full!r} has dtype {tensor.dtype}, expected floating point")
            layer[local] = tensor
            used.update(sources.get(full, [full]))
        params.append(layer)
    unused = sorted(name for name in tensors if name not in used)
    return Stack(config.layers, params), unused


def needs_weights(config: Config) -> bool:
    return any(spec.tensor_shapes() for spec in config.layers)


def load_stack(
    config: Config, weights: str | Path | None = None, dtype: torch.dtype | None = torch.float32
) -> tuple[Stack, list[str]]:
    """The config's stack with tensors from ``weights`` (or the config's default weights).

    Tensors are converted to ``dtype`` (``None`` keeps them as stored, e.g. float64 filter taps
    that a later ``stack.to(dtype=torch.float64)`` should not lose). Returns
    ``(stack, unused tensor names)``.
    """
    stack, unused = _load_stack(config, weights)
    return (stack.to(dtype=dtype) if dtype is not None else stack), unused


def _load_stack(config: Config, weights: str | Path | None) -> tuple[Stack, list[str]]:
    path = Path(weights) if weights is not None else config.weights
    if path is None:
        if needs_weights(config):
            raise ConfigError(
                f"{config.source}: no weights: pass -w WEIGHTS or set 'weights:' in the config"
            )
        return Stack(config.layers, [{} for _ in config.layers]), []
    return bind(config, read_tensors(path), str(path))


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Write tensors atomically as ``.safetensors``, ``.pt``/``.pth`` or ``.npz`` (by extension)."""
    from .audio_io import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    if suffix not in (".safetensors", ".pt", ".pth", ".npz"):
        raise UsageError(f"{path}: weights are written as .safetensors, .pt, .pth or .npz, not {suffix or 'no extension'!r}")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: folder does not exist")
    with atomic_path(path) as tmp:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(tmp))
        elif suffix == ".npz":
            with open(tmp, "wb") as handle:
                np.savez(handle, **{k: v.numpy() for k, v in tensors.items()})
        else:
            torch.save(tensors, str(tmp))
