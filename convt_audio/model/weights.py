"""Weights files → per-layer arrays, with weight-norm folding and shape checks (README.md, "Configs").

Formats: ``.safetensors`` and ``.npz`` (read with NumPy, no torch import); ``.pt``/``.pth``/
``.ckpt`` loaded by torch with ``weights_only=True`` (never unpickling code), nested dicts
flattened with ".". Tensors are matched to layers as NumPy arrays; :func:`load_stack` makes the
torch :class:`~convt_audio.model.stack.Stack`.
"""

from __future__ import annotations

import difflib
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.errors import ConfigError, UsageError, WeightsError, option, unpickling_failure
from ..io.features import npz_shapes
from .config import Config

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".npz")
SHARED_MIN_BYTES = 1 << 20  # tensors at least this large stay views of a mapped checkpoint (not copied)


MAX_NESTING = 64  # levels of dicts and lists in a checkpoint (real ones have a handful)


def _flatten(tree: Any, prefix: str, out: dict, path: tuple = ()) -> None:
    """Tensors of nested dicts and lists by dotted name; a container that holds itself (a
    hostile pickle) or nesting past :data:`MAX_NESTING` is a :class:`WeightsError`."""
    import torch

    if isinstance(tree, torch.Tensor):
        out[prefix.rstrip(".")] = tree  # converted to NumPy only when used
        return
    if not isinstance(tree, (Mapping, list, tuple)):
        return  # other leaves (epoch numbers, strings, hyper-parameters) carry no tensors
    if id(tree) in path or len(path) >= MAX_NESTING:
        what = "a container that holds itself" if id(tree) in path else f"more than {MAX_NESTING} levels of nesting"
        raise WeightsError(f"{prefix.rstrip('.') or '<top>'}: {what}; not a checkpoint this tool reads")
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree)
    for key, value in items:
        _flatten(value, f"{prefix}{key}.", out, (*path, id(tree)))


def _torch_to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.is_meta or tensor.layout != torch.strided:
        raise WeightsError(f"a {'meta' if tensor.is_meta else str(tensor.layout)} tensor holds no dense values")
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()


def _release_pages(tensor) -> None:
    """Let go of the resident pages of a mapped checkpoint tensor's storage once it has been
    read (folded into another array): the whole pages inside it, never a neighbour's. The
    mapping is private and never written, so a later read would fault them in from the file
    again. BigVGAN v2 (450 MB, weight-normed): its mapped v and g stayed resident while their
    folded float32 copies were built beside them, which was the process's peak (1086 MB after
    import torch's 218). Linux only (elsewhere a no-op)."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import mmap

    storage = tensor.untyped_storage()
    start, end = storage.data_ptr(), storage.data_ptr() + storage.nbytes()
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = end // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # MADV_DONTNEED


def _read_checkpoint(path: Path) -> "TensorFile":
    import torch

    mapped = False
    try:
        if zipfile.is_zipfile(path):  # maps its storages: tensors the config does not use are never read
            tree = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            mapped = True
        else:  # torch < 1.6's format is read whole: bounded by the memory budget first
            from ..core.process import memory_budget, size_text

            size, budget = path.stat().st_size, memory_budget()
            if size > budget:
                raise WeightsError(
                    f"{path}: a legacy (non-zip) checkpoint is read whole, and its {size_text(size)} exceed the "
                    f"memory budget of {size_text(budget)}; re-save it with a current torch.save (zip format), "
                    f"whose unused tensors are never read"
                )
            tree = torch.load(str(path), map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError …
        raise WeightsError(f"{path}: cannot load checkpoint: {unpickling_failure(exc)}") from None
    flat: dict = {}
    try:
        _flatten(tree, "", flat)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc.args[0]}") from None
    return TensorFile(
        path,
        {name: tuple(t.shape) for name, t in flat.items()},
        lambda name: _torch_to_numpy(flat[name]),
        (lambda name: _release_pages(flat[name])) if mapped else None,
    )


class TensorFile(Mapping):
    """The tensors of a weights file, read lazily: names and shapes up front, data on access.

    A file may hold tensors the config does not use (optimizer state, a discriminator, a 2 GB
    table): those are never read, and a tensor whose declared shape is wrong is refused before
    its data is read.
    """

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], load, release=None):
        self.path, self.shapes, self._load, self._release = path, shapes, load, release

    def release(self, name: str) -> None:
        """Done with ``name``'s data (read, copied or folded, no view kept): a mapped file may
        let its pages go (:func:`_release_pages`)."""
        if self._release is not None and name in self.shapes:
            self._release(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.shapes:
            raise KeyError(name)
        try:
            return np.asarray(self._load(name))
        except WeightsError:
            raise
        except Exception as exc:  # a truncated or corrupt member shows only when read
            raise WeightsError(f"{self.path}: cannot read tensor {name!r}: {str(exc).splitlines()[0]}") from None

    def __contains__(self, name) -> bool:  # Mapping's own would read the tensor to find it
        return name in self.shapes

    def __iter__(self):
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


def open_tensors(path: str | Path) -> TensorFile:
    """A weights file's tensors by flattened name, read lazily (:class:`TensorFile`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        suffix = _sniff(path)
    if suffix in (".pt", ".pth", ".ckpt"):
        return _read_checkpoint(path)
    try:
        if suffix == ".safetensors":
            from safetensors import safe_open

            handle = safe_open(str(path), framework="numpy")
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
            return TensorFile(path, shapes, handle.get_tensor)
        shapes = npz_shapes(path)
        archive = np.load(str(path), allow_pickle=False)
        return TensorFile(path, shapes, lambda name: np.array(archive[name]))
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"{path}: cannot read weights: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise WeightsError(f"{path}: cannot read weights: {exc}") from None


def _sniff(path: Path) -> str:
    """The format of a weights file whose name does not say it (``g_02500000``), from its bytes.

    A torch checkpoint is a zip holding ``*/data.pkl`` (or, from torch < 1.6, a pickle: its
    first byte is 0x80); an ``.npz`` is a zip of ``.npy`` files; safetensors starts with an
    8-byte header length and a JSON ``{``.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
        if head[:2] == b"PK":
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(n.endswith("data.pkl") for n in names):
                return ".pt"
            if names and all(n.endswith(".npy") for n in names):
                return ".npz"
        elif head[:1] == b"\x80":
            return ".pt"
        elif len(head) == 9 and head[8:9] == b"{":
            return ".safetensors"
    except (OSError, zipfile.BadZipFile):
        pass
    what = f"unknown weights format {path.suffix.lower()!r}" if path.suffix else "no extension"
    raise WeightsError(
        f"{path}: {what}, and its contents are not a weights file this tool reads "
        f"(allowed: {list(WEIGHT_SUFFIXES)}, or a torch checkpoint with any name)"
    )


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor in a weights file, by its flattened name, as NumPy arrays (all read)."""
    tensors = open_tensors(path)
    return {name: tensors[name] for name in tensors}


def _norm_except(v: np.ndarray, g: np.ndarray) -> np.ndarray:
    """‖v‖ over every dim but the one ``g`` keeps (``weight_norm``'s ``dim``), shaped like ``g``.

    ``g`` has v's size along that dim and 1 elsewhere; a scalar ``g`` (``dim=None``) means the
    norm of the whole tensor.
    """
    if g.ndim == v.ndim:
        for dim in range(v.ndim):
            if g.shape[dim] == v.shape[dim] and all(g.shape[j] == 1 for j in range(g.ndim) if j != dim):
                others = tuple(i for i in range(v.ndim) if i != dim)
                return np.sqrt((v**2).sum(axis=others, keepdims=True)) if others else np.abs(v)
    return np.sqrt((v**2).sum())


WEIGHT_NORM_PAIRS = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)


def _fold(g: np.ndarray, v: np.ndarray, dtype=np.float64, frames_last: bool = False) -> np.ndarray:
    """``weight = g · v / ‖v‖`` in ``dtype``: float64 for a float64 run (every bit of it), else
    float32 as ``torch.nn.utils.weight_norm`` computes it (no float64 copy of a large ``v``).

    ``frames_last``: a ``[O, I, K]`` convolution weight is written in the memory order
    ``[O, K, I]`` that the engine keeps it in (:func:`~convt_audio.model.stack.as_tensor`), so
    that it is not copied again there: BigVGAN v2's 440 MB of folded weights were held twice at
    the end of the engine's build."""
    g, v = np.asarray(g, dtype=dtype), np.asarray(v, dtype=dtype)
    norm = _norm_except(v, g)
    if not (norm > 0).all():
        raise ZeroDivisionError
    if not (frames_last and v.ndim == 3):
        return v * (g / norm)
    out = np.empty((v.shape[0], v.shape[2], v.shape[1]), dtype).transpose(0, 2, 1)
    return np.multiply(v, g / norm, out=out)


def _weight_norm_sources(tensors: Mapping, name: str) -> list[str] | None:
    """``[g, v]`` names that fold into ``name`` (``<stem>weight``), if the file has them."""
    if not name.endswith("weight"):
        return None
    stem = name[: -len("weight")]
    for g_suffix, v_suffix in WEIGHT_NORM_PAIRS:
        if stem + g_suffix in tensors and stem + v_suffix in tensors:
            return [stem + g_suffix, stem + v_suffix]
    return None


def fold_weight_norm(tensors: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Fold ``weight_g``/``weight_v`` and ``parametrizations.weight.original0/1`` into ``weight``.

    Returns the tensors with folded names added, and for each folded name the source names.
    """
    out = dict(tensors)
    sources: dict[str, list[str]] = {}
    for name in tensors:
        for g_suffix, _ in WEIGHT_NORM_PAIRS:
            if name.endswith(g_suffix):
                folded = name[: -len(g_suffix)] + "weight"
                pair = _weight_norm_sources(tensors, folded)
                if pair:
                    out[folded] = _fold(tensors[pair[0]], tensors[pair[1]])
                    sources[folded] = pair
    return out, sources


def _without_units(shape) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def _shape_of(tensors: Mapping, name: str) -> tuple[int, ...]:
    return tuple(tensors.shape(name)) if hasattr(tensors, "shape") else tuple(np.shape(tensors[name]))


def _holds(tensors: Mapping) -> str:
    """What a file that has none of the names sought holds instead, by its names' first parts
    (a HiFi-GAN ``do_`` file: its discriminators, ``mpd`` and ``msd``)."""
    names = list(tensors)
    if not names:
        return "; the file holds no tensors"
    if names == [""]:
        return "; the file holds one unnamed tensor, not a state dict of named ones"
    tops = sorted({name.split(".")[0] for name in names})
    shown = ", ".join(repr(top) for top in tops[:6]) + (f" and {len(tops) - 6} more" if len(tops) > 6 else "")
    return f"; the file holds {len(names)} tensor{'s' if len(names) > 1 else ''} under {shown}"


def recognise_layout(config: Config, tensors: Mapping):
    """The first of the config's layouts (its own names first, then ``layouts:``) whose every
    tensor the file holds (a weight or its weight-norm pair), or None when none fits."""
    for layout in (None, *config.layouts):
        names = config.names_in(layout)
        if all(
            full in tensors or _weight_norm_sources(tensors, full)
            for leaf_names in names
            for full in leaf_names.values()
        ):
            return layout
    return None


def match_tensors(
    config: Config, tensors: Mapping[str, np.ndarray], source: str = "<weights>", fold_dtype=np.float64, layout=None
) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """Match tensors to the config's leaf layers by name and shape.

    Weight-normalised pairs are folded in float64 and kept as ``fold_dtype``: float64 for a
    float64 run (every bit of the fold), float32 otherwise (rounded once, as the engine would,
    at half the memory).

    ``tensors`` may be lazy (:class:`TensorFile`): each shape is checked before its data is
    read, and tensors the config does not use are never read. Returns one ``{"weight", "bias",
    "alpha"}`` dict of arrays per leaf layer (depth first through blocks), and the names of the
    tensors under the prefix it reads (the layout's) that it does not use, except those under the
    config's ``weights_ignore`` prefixes. ``layout`` is the
    :class:`~convt_audio.model.config.Layout` to read by (None: the config's own names).
    """
    used: set[str] = set()
    params = []
    release = getattr(tensors, "release", lambda name: None)
    for spec, names, base in zip(config.leaves, config.names_in(layout), config.bases_in(layout)):
        for local, expected in spec.computed_tensors().items():  # stored, but computed by the kind
            if base + local in tensors:
                stored_shape = _shape_of(tensors, base + local)  # before its data: a stored filter may be huge
                stored = np.asarray(tensors[base + local]) if stored_shape == expected.shape else None
                if stored is None or not np.allclose(stored, expected, rtol=1e-5, atol=1e-7):
                    stored_shape = tuple(stored_shape)
                    raise WeightsError(
                        f"{source}: tensor {base + local!r} for {spec.where} ({spec.type}) differs from the "
                        f"one its parameters give (shape {stored_shape}, expected {expected.shape}): the "
                        f"checkpoint was trained with other settings"
                    )
                used.add(base + local)
        layer: dict[str, np.ndarray] = {}
        for local, expected in spec.tensor_shapes().items():
            full = names[local]
            pair = None if full in tensors else _weight_norm_sources(tensors, full)
            if full not in tensors and pair is None:
                close = difflib.get_close_matches(full, list(tensors), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else _holds(tensors)
                tried = f" (layouts tried: {', '.join(['default', *(x.name for x in config.layouts)])})"
                raise WeightsError(
                    f"{source}: missing tensor {full!r} for {spec.where} ({spec.type}), "
                    f"expected shape {tuple(expected)}{hint}{tried if config.layouts else ''}"
                )
            shape = _shape_of(tensors, pair[1] if pair else full)
            # a per-channel vector stored flat (BigVGAN's snake alpha is (C,), ours (1, C, 1)): the
            # same numbers; any other difference, unit axes included ((3, 1, 1) for (1, 1, 3)), is refused
            reshaped = (
                shape != tuple(expected)
                and len(shape) == 1
                and len(_without_units(expected)) == 1
                and _without_units(shape) == _without_units(expected)
            )
            if shape != tuple(expected) and not reshaped:
                raise WeightsError(
                    f"{source}: tensor {(pair[1] if pair else full)!r} for {spec.where} ({spec.type}) "
                    f"has shape {shape}, expected {tuple(expected)}"
                )
            if pair:
                _check_norm_shape(source, pair, _shape_of(tensors, pair[0]), shape, spec.where)
            for name in pair or [full]:  # each tensor as the file holds it
                _check_values(source, name, np.asarray(tensors[name]), spec.where)
            if pair:
                try:
                    frames_last = fold_dtype == np.float32 and local in spec.frames_last_tensors
                    array = _fold(tensors[pair[0]], tensors[pair[1]], fold_dtype, frames_last)
                except ZeroDivisionError:
                    raise WeightsError(
                        f"{source}: tensor {pair[1]!r} for {spec.where} has a zero norm where weight "
                        f"norm divides by it (weight = g·v/‖v‖); a trained checkpoint never has one"
                    ) from None
                _check_values(source, f"{full} (folded from {pair[0]}, {pair[1]})", array, spec.where)
                for name in pair:  # folded into a new array: the sources' pages can go
                    release(name)
            else:
                array = np.asarray(tensors[full])
                if array.nbytes < SHARED_MIN_BYTES:  # a small view would keep a whole mapped file resident
                    array = np.array(array)
            layer[local] = array.reshape(expected) if reshaped else array
            used.update(pair or [full])
        params.append(layer)
    # unused: only what lies under the prefix read (an encoder, a discriminator or an optimizer
    # elsewhere in the checkpoint is not the config's business), less what the config declares
    # it leaves unread (weights_ignore: a codec's encoder beside its decoder)
    prefix = layout.prefix if layout else config.weights_prefix
    unused = (name for name in tensors if name not in used and name.startswith(prefix))
    return params, sorted(name for name in unused if not name.startswith(config.weights_ignore))


def _check_norm_shape(source: str, pair: list, g_shape: tuple, v_shape: tuple, where: str) -> None:
    """A weight-norm magnitude has the shape ``torch.nn.utils.weight_norm`` gives it: ``(n, 1, 1)``
    for its default ``dim=0`` (n the weight's first axis), or a scalar for ``dim=None``; any other
    shape would be broadcast into a different weight."""
    allowed = [(), (v_shape[0], *(1 for _ in v_shape[1:]))]
    if tuple(g_shape) not in allowed:
        raise WeightsError(
            f"{source}: tensor {pair[0]!r} for {where} has shape {tuple(g_shape)}; a weight-norm magnitude for "
            f"{pair[1]!r} {tuple(v_shape)} has shape {allowed[1]} (or () for dim=None)"
        )


def _check_values(source: str, name: str, array: np.ndarray, where: str) -> None:
    """A weights error unless ``array`` holds floating-point numbers, all finite."""
    if not np.issubdtype(array.dtype, np.floating):
        raise WeightsError(f"{source}: tensor {name!r} has dtype {array.dtype}, expected floating point")
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise WeightsError(
            f"{source}: tensor {name!r} for {where} holds {bad} non-finite value(s) "
            f"(first {array[first]} at index {first}); every weight must be a finite number"
        )


def needs_weights(config: Config) -> bool:
    return any(spec.tensor_shapes() for spec in config.leaves)


def load_params(
    config: Config, weights: str | Path | None = None, dtype: str | None = None
) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """The config's arrays from ``weights`` (or the config's default weights), and unused names;
    ``dtype`` (the run's, when known) lets folded weight-norm weights be kept in float32."""
    path = Path(weights) if weights is not None else config.weights
    if path is None:
        if needs_weights(config):
            if config.is_builtin:
                raise ConfigError(
                    f"{config.name}: this built-in architecture ships without weights; pass the "
                    f"trained generator's checkpoint with {option('weights', 'CHECKPOINT')}"
                )
            raise ConfigError(
                f"{config.source}: no weights: pass {option('weights', 'WEIGHTS')} or set 'weights:' in the config"
            )
        return [{} for _ in config.leaves], []
    fold = np.float64 if dtype in (None, "float64") else np.float32
    tensors = open_tensors(path)
    layout = recognise_layout(config, tensors) if config.layouts else None
    return match_tensors(config, tensors, str(path), fold, layout)


def check_weights(config: Config, weights: str | Path) -> tuple[list[str], str | None]:
    """A weights file checked against a config, as ``info -w`` reports it: the unused tensor
    names, and the layout recognised (``default``: the config's own names; None when the config
    declares no other layouts)."""
    path = Path(weights)
    tensors = open_tensors(path)
    layout = recognise_layout(config, tensors) if config.layouts else None
    _, unused = match_tensors(config, tensors, str(path), layout=layout)
    if not config.layouts:
        return unused, None
    return unused, "default" if layout is None else layout.name


def load_stack(config: Config, weights: str | Path | None = None, dtype: Any = "float32"):
    """The config's torch :class:`~convt_audio.model.stack.Stack` and the unused tensor names.

    Tensors become ``dtype`` (a torch dtype or its name; ``None`` keeps them as stored, e.g.
    float64 filter taps that a later ``stack.to(dtype=torch.float64)`` should not lose).
    """
    import torch

    from .stack import Stack, as_tensor

    params, unused = load_params(config, weights)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    tensors = [{k: as_tensor(v, dtype) for k, v in layer.items()} for layer in params]
    return Stack(config.layers, tensors), unused


def write_tensors(path: str | Path, tensors: Mapping[str, Any]) -> None:
    """Write tensors (torch or NumPy) atomically as ``.safetensors``, ``.pt``/``.pth`` or ``.npz``."""
    from ..io.atomic import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth", ".npz"):
        raise UsageError(
            f"{path}: weights are written as .safetensors, .pt, .pth or .npz, not {suffix or 'no extension'!r}"
        )
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: folder does not exist")
    arrays = {
        k: np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in tensors.items()
    }
    with atomic_path(path) as tmp:
        if suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(arrays, str(tmp))
        elif suffix == ".npz":
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        else:
            import torch

            torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, str(tmp))
