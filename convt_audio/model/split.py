"""One input of known length streamed as two halves at once, each in a thread of its own.

A stack whose output frame reads a bounded span of input frames (no LSTM, no ``circular``
padding, nothing held until the end) gives the same output frames for the second half of an
input when it is streamed from a little before the half — its *context*, the span's reach —
as when the whole input is streamed: the frames the start of that second stream makes
differently (its own padding at its start) are those the context covers, and they are dropped;
the first stream likewise runs a context past the half and its output is cut at the half.
Each output frame is computed once, from the same inputs by the same layers: equal to the
whole-signal output to float rounding (exactly so in float64, to 1e-9), property-tested in
tests/test_split.py.

Why: torch's intra-op threads meet at a barrier after every operation. On 2 cores, 60 s of
HiFi-GAN V1 took 18.0 s as one stream of 2 threads and 17.3 s as two streams of one thread
each (in process); beside a busy process, where a barrier waits for a descheduled thread,
33.7 s against 26.7 s. Each stream keeps its own buffers per block shape, so each half gets
blocks three quarters as long (:func:`part_block`; 60 s of HiFi-GAN V1, two halves, whole processes: 32
frames 18.6-19.8 s / 521-565 MB, 48 frames 18.3-18.5 s / 632-645 MB, 64 frames 18.1-18.3 s /
702-727 MB; ONNX Runtime 19.7 s / 1414 MB). Used by ``convt-audio run`` for inputs read whole (a ``.npy``, a file
whose length is known) and by :meth:`convt_audio.Model.__call__`; a live stream cannot be
split (its length is unknown).
"""

from __future__ import annotations

import math
import queue
import threading
from fractions import Fraction

import numpy as np

from ..core.shapes import leaves, rate_of

MIN_PART_BLOCKS = 8  # each half holds at least this many of the engine's blocks, or no split
MAX_PERIOD = 1 << 12


def shift_period(specs) -> int:
    """The input frames by which a shift moves every layer's signal by whole frames: the
    product of the leaves' rate denominators (a stride-2 ``conv1d`` needs even shifts)."""
    period = 1
    for leaf in leaves(specs):
        period = min(period * Fraction(leaf.rate()).denominator, MAX_PERIOD)
    return period


def _leaf_edge(leaf) -> Fraction:
    """How much further into a segment, in ``leaf``'s input frames, its output can differ from
    the whole signal's than its input does: the reach of an output frame's window from the
    frame's own time, each way (an output reads inputs up to that far off, and a crop moves the
    end inward by as much), one more, and the frames its length formula adds or drops beyond
    the rate (``output_padding``, padding)."""
    rate = Fraction(leaf.rate())
    steps = max(1, math.ceil(rate)) * max(1, leaf.period())
    base = 1024 * steps
    edge = Fraction(0)
    for t in range(base, base + steps):
        first, last = leaf.input_span(t, t)
        now = Fraction(t) / rate
        edge = max(edge, now - first + 1, last - now + 1)
    return edge + abs(Fraction(leaf.output_frames(base)) - base * rate) / rate


def _edge(specs, rate: Fraction) -> Fraction:
    """The sum of the layers' edges in the stack's input frames (a layer at ``rate`` times the
    input's rate: its frames count 1/rate); a block's worst sequence (branches run side by side)."""
    total = Fraction(0)
    for spec in specs:
        sequences = spec.sequences()
        if sequences:
            total += max(_edge(sequence, rate) for sequence in sequences)
        else:
            total += _leaf_edge(spec) / rate
        rate *= Fraction(spec.rate())
    return total


def context_frames(specs) -> int | None:
    """Input frames of context each side that make a part's kept output equal the whole's: an
    upper bound of how far the effects of a segment's ends reach into its output (the layers'
    edges added up, :func:`_edge`), plus 2, rounded up to :func:`shift_period`. None for a
    stack whose reach is unbounded (a recurrent kind, ``circular`` padding)."""
    for leaf in leaves(specs):
        if getattr(leaf, "recurrent", False) or getattr(leaf, "padding_mode", None) == "circular":
            return None
    period = shift_period(specs)
    return math.ceil((_edge(specs, Fraction(1)) + 2) / period) * period


def split_plan(engine, frames: int | None, batch: int, chunk: int, budget: int) -> tuple[int, int, int] | None:
    """``(boundary, context, threads each)`` for streaming ``frames`` input frames as two
    halves, or None where that does not apply: a device other than the CPU, one torch thread,
    a stack of unbounded reach, an input too short for halves of ``MIN_PART_BLOCKS`` blocks each,
    or one whose input and half of its output would take more than an eighth of ``budget``."""
    if frames is None or getattr(engine, "name", None) != "torch" or str(engine.device) != "cpu":
        return None
    import torch

    threads = torch.get_num_threads()
    if threads < 2:
        return None
    context = context_frames(engine.specs)
    if context is None or engine.leading_circular_frames():
        return None
    period = shift_period(engine.specs)
    boundary = frames // 2 // period * period
    if boundary - context < MIN_PART_BLOCKS * chunk or frames - boundary - context < MIN_PART_BLOCKS * chunk:
        return None
    itemsize = np.dtype(engine.dtype).itemsize
    held = frames * batch * engine.in_channels + engine.output_frames(frames) // 2 * batch * engine.out_channels
    if held * itemsize > budget // 8:
        return None
    return boundary, context, threads // 2


def part_block(engine, chunk: int) -> int:
    """The block of each half where the caller chose none: three quarters of ``chunk``, since
    each stream keeps its own buffers per block shape (figures above)."""
    return max(engine.min_input_frames(), chunk * 3 // 4)


_END = object()


class SplitStream:
    """The stream protocol's ``push``/``flush`` over two streams of ``engine`` run by two
    threads: blocks before ``boundary + context`` go to the first, blocks from
    ``boundary − context`` to the second. ``push`` returns the first stream's output frames
    ready so far (cut at the boundary's output frame); ``flush`` waits for both and returns the
    rest, the second stream's output without its context's frames."""

    def __init__(self, engine, batch: int, boundary: int, context: int, threads: int):
        self.engine = engine
        rate = rate_of(engine.specs)
        self.batch, self.dtype = batch, np.dtype(engine.dtype)
        self.cut = int(boundary * rate)  # output frames the first stream gives
        self.drop = int(context * rate)  # output frames of the second's context, dropped
        self.ranges = ((0, boundary + context), (boundary - context, None))
        self.seen = 0
        self.given = 0  # output frames of the first stream handed out
        self.inputs = (queue.SimpleQueue(), queue.SimpleQueue())
        self.first_out: queue.SimpleQueue = queue.SimpleQueue()
        self.second_out: list = []
        self.errors: list = []
        self.stopped = threading.Event()
        self.workers = [
            threading.Thread(target=self._work, args=(part, batch, threads), daemon=True, name=f"split-{part}")
            for part in (0, 1)
        ]
        for worker in self.workers:
            worker.start()

    def _work(self, part: int, batch: int, threads: int) -> None:
        import torch

        try:
            torch.set_num_threads(threads)  # this thread's OpenMP team only
            stream = self.engine.open_stream(batch)
            put = self.first_out.put if part == 0 else self.second_out.append
            while True:
                block = self.inputs[part].get()
                if self.stopped.is_set():
                    return
                if block is _END:
                    put(stream.flush())
                    break
                put(stream.push(block))
        except BaseException as exc:  # re-raised in the caller's thread
            self.errors.append(exc)
        finally:
            if part == 0:
                self.first_out.put(_END)

    def _route(self, block: np.ndarray) -> None:
        start, n = self.seen, block.shape[-1]
        for part, (first, last) in enumerate(self.ranges):
            lo, hi = max(first, start), min(start + n, last if last is not None else start + n)
            if hi > lo:
                self.inputs[part].put(block[..., lo - start : hi - start])
        self.seen += n

    def _take(self, ready: list, wait: bool) -> bool:
        """Move the first stream's outputs into ``ready`` (cut at the boundary); True at its end."""
        while True:
            try:
                item = self.first_out.get(timeout=0.1) if wait else self.first_out.get_nowait()
            except queue.Empty:
                if wait:
                    continue
                return False
            if item is _END:
                return True
            keep = max(0, min(item.shape[-1], self.cut - self.given))
            if keep:
                ready.append(item[..., :keep])
                self.given += keep

    def _raise(self) -> None:
        if self.errors:
            self.stop()
            raise self.errors[0]

    def push(self, block: np.ndarray) -> np.ndarray:
        self._raise()
        self._route(block)
        ready: list = []
        self._take(ready, wait=False)
        self._raise()
        return self._joined(ready)

    def flush(self) -> np.ndarray:
        for part in (0, 1):
            self.inputs[part].put(_END)
        ready: list = []
        self._take(ready, wait=True)
        for worker in self.workers:  # both ended before the caller goes on: a thread still
            worker.join()  # tearing down its OpenMP team as the process exits aborts it
        self._raise()
        if self.given != self.cut:
            raise RuntimeError(f"split stream: the first half gave {self.given} output frames, not {self.cut}")
        second = np.concatenate(self.second_out, axis=-1) if self.second_out else None
        if second is not None:
            ready.append(second[..., self.drop :])
        self.second_out = []
        return self._joined(ready)

    def stop(self) -> None:
        """Stop both threads after their current block (a failed or cancelled run)."""
        self.stopped.set()
        for part in (0, 1):
            self.inputs[part].put(_END)
        for worker in self.workers:
            worker.join()

    def _joined(self, ready: list) -> np.ndarray:
        if ready:
            return ready[0] if len(ready) == 1 else np.concatenate(ready, axis=-1)
        return np.zeros((self.batch, self.engine.out_channels, 0), dtype=self.dtype)
