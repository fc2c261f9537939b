"""Independent streams sharing one batch: their states joined along the batch axis and parted again.

Two streams of one stack can run as one batch while every layer would treat both alike: their
states agree in every shape and flag, and differ only in how far each stream has gone (the
``positions`` a layer declares: frames consumed, emitted, …) — and only where the layer is
``steady()`` (past its start, where those counts enter only as differences). :func:`batch_key`
says when that holds; :func:`join` makes one stream's modules carry both states (rows of the
first, then the second's), keeping the first's positions and returning each one's offsets;
:func:`part` writes some rows back into a stream's own modules, positions restored::

    stream a:  frames 0 … 900 pushed    \\  join: one tree, rows [a | b], a's positions,
    stream b:  frames 0 … 300 pushed    /         b's offsets (−600 input frames, …) kept aside
    push [a | b] 64 frames each          -> both advance alike; each row exact for its stream
    part b                               -> b's rows and positions (a's + offset) back in b

Every module opts in with ``poolable``: all it carries per stream is in ``state`` (nothing kept
elsewhere), tensors with the batch on axis 0 unless ``batch_dims`` names another. Knows no layer
kind and does not import torch: it moves whatever arrays the states hold.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Sequence

from .streaming import StreamingModule

Offsets = list  # per module of a walk, {position field: this stream's value − the carrier's}


def modules(tree: StreamingModule) -> list[StreamingModule]:
    """The modules of ``tree``, parent before children, in one fixed order."""
    found, todo = [], [tree]
    while todo:
        module = todo.pop()
        found.append(module)
        todo.extend(reversed(module.children))
    return found


class _Unshareable(Exception):
    pass


def _describe(value, dim: int):
    """What of a state value must agree for two streams to share a batch."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        shape = tuple(value.shape)
        return ("array", shape[:dim] + shape[dim + 1 :], str(value.dtype), str(getattr(value, "device", "cpu")))
    if isinstance(value, tuple):
        return ("tuple",) + tuple(_describe(v, dim) for v in value)
    if isinstance(value, list):
        return ("list",) + tuple(_describe(v, dim) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple((k, _describe(value[k], dim)) for k in sorted(value))
    raise _Unshareable


def batch_key(tree: StreamingModule):
    """A value two streams' trees have equal when one batch can carry both, or None when this
    one can share with none (a module not ``poolable``, not started, or flushed)."""
    key = []
    for module in modules(tree):
        if not module.poolable or module._flushed or module._like is None:
            return None
        steady = module.steady()
        like = module._like
        described = [type(module), len(module.children), tuple(like.shape[1:]), str(like.dtype)]
        for f in fields(module.state):
            value = getattr(module.state, f.name)
            if f.name in module.positions:
                if not steady:  # at its start a layer acts on its counts themselves
                    described.append(value)
                continue
            try:
                described.append(_describe(value, module.batch_dims.get(f.name, 0)))
            except _Unshareable:
                return None
        key.append(tuple(described))
    return tuple(key)


def _joined(values: Sequence, dim: int):
    first = values[0]
    if first is None or isinstance(first, (bool, int, float, str)):
        return first
    if hasattr(first, "shape"):
        if type(first).__module__ == "numpy":
            import numpy

            return numpy.concatenate(values, axis=dim)
        import torch

        return torch.cat(list(values), dim=dim)
    if isinstance(first, tuple):
        return tuple(_joined(parts, dim) for parts in zip(*values))
    if isinstance(first, list):
        return [_joined(parts, dim) for parts in zip(*values)]
    return {k: _joined([v[k] for v in values], dim) for k in first}


def mapped(value, fn):
    """A state value with ``fn`` applied to each array in it, in order, and its tuples, lists and
    dicts made anew around the results; anything else as it is."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "shape"):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(mapped(v, fn) for v in value)
    if isinstance(value, list):
        return [mapped(v, fn) for v in value]
    return {k: mapped(v, fn) for k, v in value.items()}


def _taken(value, rows: Sequence[int], dim: int):
    def take(array):
        if type(array).__module__ == "numpy":
            import numpy

            return numpy.take(array, rows, axis=dim)
        import torch

        return array.index_select(dim, torch.tensor(list(rows), dtype=torch.long, device=array.device))

    return mapped(value, take)


def _resized(like, rows: int):
    """An empty ``[rows, C, 0]`` array of ``like``'s kind, dtype and device (a module's template)."""
    shape = (rows, *like.shape[1:])
    if hasattr(like, "new_empty"):
        return like.new_empty(shape)
    import numpy

    return numpy.empty(shape, like.dtype)


def join(trees: Sequence[StreamingModule]) -> list[Offsets]:
    """Make ``trees[0]`` carry every tree's state (its rows first, then each other's, in order)
    and return each tree's offsets from it. The others are left at their initial state (their
    memory freed) until :func:`part` writes rows back. All must have one :func:`batch_key`."""
    walks = [modules(tree) for tree in trees]
    offsets: list[Offsets] = [[{} for _ in walks[0]] for _ in trees]
    for i, group in enumerate(zip(*walks)):
        carrier = group[0]
        new = {}
        for f in fields(carrier.state):
            values = [getattr(m.state, f.name) for m in group]
            if f.name in carrier.positions:
                for k, value in enumerate(values):
                    offsets[k][i][f.name] = value - values[0]
                new[f.name] = values[0]
            else:
                new[f.name] = _joined(values, carrier.batch_dims.get(f.name, 0))
        carrier.state = replace(carrier.state, **new)
        carrier._like = _resized(carrier._like, sum(m._like.shape[0] for m in group))
        for other in group[1:]:
            other.state = other.initial_state()
    return offsets


def part(source: StreamingModule, rows: Sequence[int], target: StreamingModule, offsets: Offsets) -> None:
    """Write rows ``rows`` of ``source``'s states into ``target`` (the same stack's stream; may be
    ``source`` itself), positions shifted by ``offsets`` (from :func:`join`)."""
    for i, (s, t) in enumerate(zip(modules(source), modules(target))):
        new = {}
        for f in fields(s.state):
            value = getattr(s.state, f.name)
            if f.name in s.positions:
                new[f.name] = value + offsets[i].get(f.name, 0)
            else:
                new[f.name] = _taken(value, rows, s.batch_dims.get(f.name, 0))
        t.state = replace(s.state, **new)
        t._like, t._flushed = _resized(s._like, len(rows)), s._flushed


def shifted(offsets: Offsets, base: Offsets) -> Offsets:
    """``offsets`` measured from the stream whose offsets were ``base`` (a new carrier)."""
    return [{k: v - b.get(k, 0) for k, v in o.items()} for o, b in zip(offsets, base)]
