"""Many independent streams of one engine, run as one batch wherever their states line up.

A live server holds one stream per session; a batch of short files one per file. Pushed one by
one, each stream pays the whole per-push cost alone — on the CPU every weight is read from
memory once per push, on a GPU every layer launches its kernels once per push. A
:class:`StreamPool` runs the streams that push the same number of frames, and whose states
line up (:func:`~convt_audio.core.batching.batch_key`), as one batch: one forward, each row its
own stream's exact output. A stream that pushes another size, or ends, is parted out and runs
on its own; streams opened together start as one batch; one that joins later runs alone until
its layers are past their start, then joins (continuous batching)::

    step   a (900 frames in)   b (300 in)   c (new)       runs
    k      push 64             push 64      push 64       [a | b] one batch, c alone
    k+1    push 64             push 64      push 64       [a | b | c] one batch
    k+2    push 64             push 20      push 64       [a | c], b alone; then b's flush

Only the torch engine's streams share batches (their layers declare what they carry: ``poolable``);
others run one by one, exactly as well.

:class:`SharedPool` is the same pool for streams pushed from threads of their own (the files of
a command-line batch, each read and written by its own thread; a server's session handlers):
each thread's ``push`` waits for the others' and the waiting pushes run as one.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping

import numpy as np

from ..core.batching import batch_key, join, modules, part, shifted
from ..core.errors import UsageError

SLOTS_ON_GPU = 16  # streams batched at once by default on a GPU (Model.map, the command line's batch)


class PooledStream:
    """One stream of a :class:`StreamPool`: its own modules, its batch rows, its group."""

    def __init__(self, pool: StreamPool, rows: int, tree):
        self.pool, self.rows, self.tree = pool, rows, tree
        self.group: _Group | None = None
        self.frames_in = 0
        self.ended = False


class _Group:
    """Streams run as one batch: the first member's modules carry every member's rows, in order."""

    def __init__(self, members: list, offsets: dict):
        self.members, self.offsets = members, offsets  # offsets: member -> its positions − the carrier's
        for member in members:
            member.group = self

    @property
    def carrier(self) -> PooledStream:
        return self.members[0]

    def rows(self, members) -> list[int]:
        starts, at = {}, 0
        for member in self.members:
            starts[member] = at
            at += member.rows
        return [r for m in members for r in range(starts[m], starts[m] + m.rows)]


def _settled(offsets: list) -> tuple:
    """Offsets as a value to compare: two members with equal ones are at the same place everywhere."""
    return tuple(tuple(sorted((k, v) for k, v in module.items() if v)) for module in offsets)


def _alone(member: PooledStream) -> _Group:
    return _Group([member], {member: [{} for _ in modules(member.tree)]})


class StreamPool:
    """Independent streams of ``engine`` (``[rows, channels, frames]`` NumPy blocks in and out),
    batched where they line up. See the module's docstring."""

    def __init__(self, engine):
        self.engine = engine
        self.stack = getattr(engine, "stack", None)  # the torch engine's: its streams share batches
        self.streams: set[PooledStream] = set()
        first = self.stack.specs[0] if self.stack is not None else None
        self._codes = first if hasattr(first, "check_codes") else None
        self.batch_sizes: Counter = Counter()  # streams in a forward -> forwards run so
        self.flush_sizes: Counter = Counter()  # streams in a flush -> flushes run so

    # -- streams -------------------------------------------------------------------------------

    def open(self, rows: int = 1) -> PooledStream:
        """A new stream of ``rows`` batch rows (a file's channels where each runs on its own)."""
        if self.stack is None:
            tree = self.engine.open_stream(rows)
        else:
            from .stack import StreamingStack

            tree = StreamingStack(self.stack, kernel=self.engine.kernel)
            # a push of no frames builds what a module makes at its first chunk, so that every
            # stream of the pool has the same modules to part rows into
            tree.push(self._up(np.zeros((rows, self.engine.in_channels, 0), dtype=np.float32)))
        stream = PooledStream(self, rows, tree)
        _alone(stream)
        self.streams.add(stream)
        return stream

    def check(self, chunks: Mapping[PooledStream, np.ndarray]) -> None:
        """Raise what :meth:`push` would refuse in ``chunks``, before anything runs."""
        for stream, chunk in chunks.items():
            self._check(stream, chunk)
        if self._codes is not None:
            self._check_codes(chunks)

    def push(self, chunks: Mapping[PooledStream, np.ndarray]) -> dict[PooledStream, np.ndarray]:
        """Each stream's ``[rows, channels, frames]`` block in; each stream's frames now final out."""
        self.check(chunks)  # every stream's, before any runs: a failed push loses nothing
        return self._forward(chunks)

    def _forward(self, chunks: Mapping[PooledStream, np.ndarray]) -> dict[PooledStream, np.ndarray]:
        """:meth:`push` of chunks already checked."""
        frames = {stream: chunk.shape[-1] for stream, chunk in chunks.items()}
        for group in {stream.group for stream in chunks}:
            self._keep_uniform(group, frames)
        groups = list(dict.fromkeys(stream.group for stream in chunks))
        if self.stack is not None:
            groups = self._joined(groups, frames)
        out = {}
        for group in groups:
            members = group.members
            x = np.concatenate([chunks[m] for m in members], axis=0) if len(members) > 1 else chunks[members[0]]
            y = self._down(group.carrier.tree.push(self._up(x)))
            self.batch_sizes[len(members)] += 1
            at = 0
            for member in members:
                out[member] = y[at : at + member.rows]
                member.frames_in += frames[member]
                at += member.rows
        return out

    def flush(self, stream: PooledStream) -> np.ndarray:
        """End ``stream``: every output frame it has not returned. It leaves the pool."""
        rest = self.flush_many([stream])[stream]
        if isinstance(rest, BaseException):
            raise rest
        return rest

    def flush_many(self, streams: Iterable[PooledStream]) -> dict:
        """End every stream of ``streams``: each one's frames not yet returned, or the exception
        its flush raised. Streams of one batch that have pushed alike — the same frames, so that
        every layer's counts agree — flush as one forward (files of one length ending together);
        the others one by one. They all leave the pool."""
        streams = list(dict.fromkeys(streams))
        for stream in streams:
            self._own(stream)
        ending = set(streams)
        results: dict = {}
        for group in list(dict.fromkeys(stream.group for stream in streams)):
            alike: dict = defaultdict(list)  # the group's ending members by their offsets
            for member in group.members:
                if member in ending:
                    alike[_settled(group.offsets[member])].append(member)
            rest = [m for m in group.members if m not in ending]
            parts = [*alike.values(), *([rest] if rest else [])]
            if len(parts) > 1:
                self._divide(group, parts)
            for together in alike.values():
                results.update(self._flush_together(together))
        return {stream: results[stream] for stream in streams}

    def _flush_together(self, members: list) -> dict:
        """Flush ``members`` — one group, the lead's modules carrying every member's rows."""
        for member in members:
            member.ended = True
            self.streams.discard(member)
        try:
            y = self._down(members[0].tree.flush())
        except Exception as exc:  # noqa: BLE001 - each member's own: they are alike to the frame
            return {member: exc for member in members}
        if len(members) > 1:
            self.flush_sizes[len(members)] += 1
        out, at = {}, 0
        for member in members:
            out[member] = y[at : at + member.rows]
            at += member.rows
        return out

    def close(self, stream: PooledStream) -> None:
        """Take ``stream`` out of the pool (its state back in its own modules, alone)."""
        self._own(stream)
        if len(stream.group.members) > 1:
            self._split(stream.group, {stream})
        stream.ended = True
        self.streams.discard(stream)

    def map(self, items: Iterable[np.ndarray], slots: int, block: int) -> Iterator[np.ndarray]:
        """Each ``[rows, channels, frames]`` array's whole output, in order, ``slots`` streamed at
        once in blocks of ``block`` frames; a finished one's slot goes to the next."""
        if slots < 1 or block < 1:
            raise UsageError(f"slots and block must be at least 1, got {slots} and {block}")
        pending = iter(enumerate(items))
        active: dict[PooledStream, list] = {}  # stream -> [index, array, frames pushed, outputs]
        done: dict[int, np.ndarray] = {}
        following = 0

        def refill() -> None:
            while len(active) < slots:
                taken = next(pending, None)
                if taken is None:
                    return
                index, array = taken
                self.engine.check_frames(array.shape[-1])
                active[self.open(array.shape[0])] = [index, array, 0, []]

        refill()
        while active:
            chunks = {s: entry[1][..., entry[2] : entry[2] + block] for s, entry in active.items()}
            finished = []
            for stream, y in self.push(chunks).items():
                entry = active[stream]
                entry[2] += block
                entry[3].append(y)
                if entry[2] >= entry[1].shape[-1]:
                    finished.append(stream)
            for stream, rest in self.flush_many(finished).items():  # arrays of one length: one flush
                if isinstance(rest, BaseException):
                    raise rest
                entry = active.pop(stream)
                done[entry[0]] = np.concatenate([*entry[3], rest], axis=-1)
            refill()
            while following in done:
                yield done.pop(following)
                following += 1

    # -- batches -------------------------------------------------------------------------------

    def _keep_uniform(self, group: _Group, frames: Mapping) -> None:
        """Part out the members that do not push what most of the group pushes (or push at all)."""
        if len(group.members) == 1:
            return
        sizes = Counter(frames.get(m) for m in group.members)
        if len(sizes) == 1:
            return
        most = sizes.most_common(1)[0][0]
        self._split(group, {m for m in group.members if frames.get(m) != most})

    def _split(self, group: _Group, leaving: set) -> None:
        """Each member in ``leaving`` back on its own modules, alone; the rest stay one group."""
        staying = [m for m in group.members if m not in leaving]
        self._divide(group, [[m] for m in group.members if m in leaving] + ([staying] if staying else []))

    def _divide(self, group: _Group, parts: list) -> None:
        """Make each of ``parts`` (members of ``group``, in its order) a group of its own."""
        carrier, offsets = group.carrier, group.offsets
        for members in sorted(parts, key=lambda members: carrier in members):  # the carrier's rows last
            lead = members[0]
            part(carrier.tree, group.rows(members), lead.tree, offsets[lead])
            _Group(members, {m: shifted(offsets[m], offsets[lead]) for m in members})

    def _joined(self, groups: list, frames: Mapping) -> list:
        """Groups pushing the same frames whose states line up, made one (in order of ``groups``)."""
        by_size = defaultdict(list)
        for group in groups:
            by_size[frames[group.carrier]].append(group)
        result = []
        for same in by_size.values():
            if len(same) == 1:
                result.extend(same)
                continue
            by_key = defaultdict(list)
            for group in same:
                key = batch_key(group.carrier.tree)
                by_key[key if key is not None else id(group)].append(group)
            for together in by_key.values():
                result.append(together[0] if len(together) == 1 else self._join(together))
        return result

    @staticmethod
    def _join(groups: list) -> _Group:
        between = join([g.carrier.tree for g in groups])  # each carrier's positions − the first's
        members, offsets = [], {}
        for group, base in zip(groups, between):
            for member in group.members:
                own = group.offsets[member]
                offsets[member] = [{k: o.get(k, 0) + b.get(k, 0) for k in {*o, *b}} for o, b in zip(own, base)]
                members.append(member)
        return _Group(members, offsets)

    # -- arrays --------------------------------------------------------------------------------

    def _own(self, stream: PooledStream) -> None:
        if stream.pool is not self:
            raise UsageError("a stream of another pool")
        if stream.ended:
            raise UsageError("the stream was flushed or closed already; open a new one")

    def _check(self, stream: PooledStream, chunk: np.ndarray) -> None:
        self._own(stream)
        if chunk.ndim != 3 or chunk.shape[0] != stream.rows:
            raise UsageError(f"a block of shape {chunk.shape} for a stream of {stream.rows} rows")

    def _check_codes(self, chunks: Mapping) -> None:
        """Codes checked stream by stream, so that a bad one names its own stream's frame (in a
        batch the layer counts the carrier's)."""
        for stream, chunk in chunks.items():
            x = self._up(chunk)
            if not self._codes.is_latent(x):
                self._codes.check_codes(x, stream.frames_in)

    def _up(self, block: np.ndarray):
        if self.stack is None:
            return block
        import torch

        x = torch.from_numpy(np.ascontiguousarray(block))
        return x.to(device=self.engine.torch_device, dtype=self.engine.torch_dtype)

    def _down(self, y) -> np.ndarray:
        if self.stack is None:
            return y
        import torch

        if y.dtype in (torch.float16, torch.bfloat16):
            y = y.float()
        return y.cpu().numpy()


_FLUSH = object()  # a SharedStream's flush, waiting among the pushes


class SharedStream:
    """One thread's stream of a :class:`SharedPool`: ``push`` / ``flush`` as a stream of the
    engine's own, and ``stop`` to leave without its remaining frames (a failed file, a dropped
    session). Its rows are set when it opens, or by its first push."""

    def __init__(self, shared: SharedPool, rows: int | None):
        self.shared = shared
        self.stream: PooledStream | None = None if rows is None else shared._open_rows(rows)
        self.left = False

    def push(self, chunk: np.ndarray) -> np.ndarray:
        if self.stream is None and not self.left:
            self.stream = self.shared._open_rows(chunk.shape[0])
        return self.shared._push(self, chunk)

    def flush(self) -> np.ndarray:
        """The rest of the output, flushed with the other streams' pushes and flushes waiting
        (streams that pushed alike flush as one forward); the stream leaves the pool."""
        if self.stream is None and not self.left:
            raise UsageError("flush: nothing was pushed")
        return self.shared._push(self, _FLUSH)

    def stop(self) -> None:
        if not self.left:
            self.left = True
            self.shared._leave(self.stream)


class SharedPool:
    """A :class:`StreamPool` whose streams are pushed from threads of their own.

    A ``push`` waits until every open stream has a push waiting — or ``patience`` seconds have
    passed, so that a thread busy reading or writing holds the others up that long at most —
    and the thread that finds them complete runs them as one :meth:`StreamPool.push` (the
    pool's batching rules decide which share a forward), while new pushes gather for the next
    round. Flushes wait and run the same way, streams that pushed alike as one forward
    (:meth:`StreamPool.flush_many`: files of one length). A push the pool refuses (a bad code)
    fails its own thread alone: each is checked before the batch runs. Every stream's frames
    equal its own stream's, whatever the others do. ``slots`` is what the caller promises to
    open at most at once (blocks are sized for it)."""

    def __init__(self, engine, slots: int = 1, patience: float = 0.01):
        self.pool = StreamPool(engine)
        self.slots = slots  # at most this many streams open at once: their blocks share a forward
        self.patience = patience
        self._cond = threading.Condition()
        self._pending: dict[PooledStream, np.ndarray] = {}
        self._results: dict[PooledStream, object] = {}  # frames out, or the exception to raise
        self._busy = False  # a thread is running the pool: pushes, opens and flushes wait
        self._open = 0
        self._waiting: set[PooledStream] = set()  # streams whose push or flush has not returned

    def open(self, rows: int | None = 1) -> SharedStream:
        """A stream of ``rows`` batch rows (None: its first push's). It counts as open at once:
        from now on the others' pushes wait for its pushes too."""
        with self._cond:
            self._open += 1
        return SharedStream(self, rows)

    def _open_rows(self, rows: int) -> PooledStream:
        with self._running():
            return self.pool.open(rows)

    @contextmanager
    def _running(self):
        """The pool to this thread alone (the lock itself is not held, so pushes can gather)."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _push(self, owner: SharedStream, chunk) -> np.ndarray:
        """``owner``'s chunk (or its flush) waits with the others' and runs with them; its
        frames out. One push or flush of a stream at a time: a second thread's chunk would take
        the waiting one's place, and one of them would be lost."""
        with self._cond:
            verb = "flush" if chunk is _FLUSH else "push"
            if owner.left:
                raise UsageError(f"{verb}: the stream was flushed or closed already; open a new one")
            stream = owner.stream
            if stream in self._waiting:
                raise UsageError(
                    f"{verb}: another thread's push or flush of this stream has not returned yet; "
                    "a stream's chunks go one after the other"
                )
            owner.left = chunk is _FLUSH
            self._waiting.add(stream)
            try:
                result = self._answer(stream, chunk)
            finally:
                self._waiting.discard(stream)
        if isinstance(result, BaseException):
            raise result
        return result

    def _answer(self, stream: PooledStream, chunk):
        """Under the lock: ``chunk`` pending until a round runs it; its frames out, or the
        exception its thread raises."""
        self._pending[stream] = chunk
        self._cond.notify_all()
        deadline = time.monotonic() + self.patience
        while stream not in self._results:
            left = deadline - time.monotonic()
            if not self._busy and self._pending and (len(self._pending) >= self._open or left <= 0):
                batch, self._pending = self._pending, {}
                self._busy = True
                self._cond.release()
                results: dict = {}
                try:
                    results = self._run(batch)
                finally:  # every push of the batch answered, even if this thread is stopped
                    self._cond.acquire()
                    unfinished = RuntimeError("the batch this push was in did not finish")
                    self._results.update({s: results.get(s, unfinished) for s in batch})
                    self._open -= sum(value is _FLUSH for value in batch.values())  # they left
                    self._busy = False
                    self._cond.notify_all()
            else:
                self._cond.wait(left if left > 0 and not self._busy else None)
        return self._results.pop(stream)

    def _run(self, batch: dict) -> dict:
        """The flushes waiting (:meth:`StreamPool.flush_many`), then the pushes: each checked
        alone (a refused one is its own thread's error), the rest as one."""
        ending = [stream for stream, chunk in batch.items() if chunk is _FLUSH]
        try:
            results: dict = self.pool.flush_many(ending) if ending else {}
        except Exception as exc:  # noqa: BLE001 - a flush that failed fails every flush in it
            results = {stream: exc for stream in ending}
        good = {}
        for stream, chunk in batch.items():
            if chunk is _FLUSH:
                continue
            try:
                self.pool.check({stream: chunk})
            except Exception as exc:  # noqa: BLE001 - handed to the thread that pushed it
                results[stream] = exc
            else:
                good[stream] = chunk
        if good:
            try:
                results.update(self.pool._forward(good))  # checked above, each alone
            except Exception as exc:  # noqa: BLE001 - a forward that failed fails every push in it
                results.update({stream: exc for stream in good})
        return results

    def _leave(self, stream: PooledStream | None) -> None:
        """``stream`` out of the pool without its last frames."""
        with self._cond:  # no one waits for this stream's pushes while it waits to leave
            self._open -= 1
            self._cond.notify_all()
        if stream is not None and not stream.ended:
            with self._running():
                self.pool.close(stream)
