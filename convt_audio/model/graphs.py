"""A stream's steady pushes replayed as one captured step: CUDA graphs on CUDA, TorchScript on the CPU.

A live push runs every layer's operations one by one from Python (HiFi-GAN V1: ~300 kernels a
push on CUDA, ~1900 calls on the CPU, two thirds of them views and copies), which costs more
than a small push computes. Once a stream is steady, a push of a given shape does the same
operations on tensors of the same shapes every time: only how far the stream has gone changes,
and a steady layer reads that only as differences (:func:`~convt_audio.core.batching.batch_key`,
the pool's test for streams that can share a batch, says when this holds). Such a push is traced
once into a function of the input and the state tensors (``make_fx``: the operations, no
Python). On CUDA the trace is captured as a CUDA graph whose state lives in fixed buffers,
updated in place at the end of every replay; on the CPU (``script``) it is handed to
TorchScript, whose interpreter runs the operations without Python between them::

    push 1 (key A -> B)   eager
    push 2 (key B -> B)   eager: B is a fixed point of this push shape; remember it
    push 3 (key B)        traced (a real push), captured          -> state in the step's buffers
    push 4, 5, … (key B)  replayed: input copied in, one launch, output out
    another shape, flush  the buffers written back into the layers, each position advanced by
                          (replays × what one push adds); then eager as before

Each frame is computed by the same operations as the eager push, so the output is the same to
float rounding (TorchScript's buffers may sit at other addresses, and oneDNN's sums can round
differently there). Only stacks whose streaming modules have no data-dependent Python
(:data:`GRAPHABLE_NAMES`) are captured: a codebook layer checks its codes in Python, which a
replay would skip. A trace reads only the weights, the input and the state tensors, so the live
streams of one model share theirs (:attr:`TorchEngine.traces`): each push shape is traced once
per model (HiFi-GAN V1: 3.5-7 s on the CPU). The ``fx`` backend replays the make_fx trace as it is
(the tests: the very trace a CUDA graph holds; slower than eager on the CPU, docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import fields

from ..core.batching import batch_key, mapped, modules
from ..core.streaming import StreamingModule

# streaming modules whose push is the same operations for the same shapes and flags
GRAPHABLE_NAMES = frozenset(
    {
        "StreamingStack",
        "StreamingSequential",
        "StreamingPointwise",
        "StreamingConv1d",
        "StreamingConvTranspose1d",
        "StreamingResidual",
        "StreamingParallel",
        "StreamingStage",
        "StreamingLstm",
        "Extender",
    }
)


MAX_TRACES = 32  # traces a model keeps for its streams (one per push shape and key)
# make_fx keeps process-wide state while it traces (two sessions' threads tracing at once failed
# with "CURRENT_PATCHER is None" and left both pushes eager): one trace at a time
_TRACING = threading.Lock()


def graphable(tree: StreamingModule) -> list[str]:
    """The layers of ``tree`` that a captured step cannot hold, as ``layers[0] (codebooks)``
    (empty: it can hold them all)."""
    refused = []
    for module in modules(tree):
        if type(module).__name__ not in GRAPHABLE_NAMES:
            spec = getattr(module, "spec", None)
            label = f"{spec.where} ({spec.type})" if spec is not None else type(module).__name__
            if label not in refused:
                refused.append(label)
    return refused


def _same(tensor):
    return tensor


class _State:
    """A tree's per-stream state as flat lists: its tensors, and its positions. The walk is
    taken each time: a stage builds its layers at its first chunk."""

    def __init__(self, tree: StreamingModule):
        self.tree = tree

    @property
    def walk(self) -> list:
        return modules(self.tree)

    def tensors(self) -> list:
        flat: list = []
        for module in self.walk:
            for f in fields(module.state):
                if f.name not in module.positions:
                    mapped(getattr(module.state, f.name), flat.append)
        return flat

    def load(self, flat: list) -> None:
        """The tensors of ``flat``, in :meth:`tensors`' order, in place of the layers' own."""
        given = iter(flat)
        for module in self.walk:
            for f in fields(module.state):
                if f.name not in module.positions:
                    setattr(module.state, f.name, mapped(getattr(module.state, f.name), lambda _: next(given)))

    def positions(self) -> list:
        return [getattr(m.state, name) for m in self.walk for name in m.positions]

    def snapshot(self) -> list:
        """Every module's state as it is (its containers copied: some are filled in place)."""
        return [
            (module, {f.name: mapped(getattr(module.state, f.name), _same) for f in fields(module.state)})
            for module in self.walk
        ]

    def restore(self, saved: list) -> None:
        for module, values in saved:
            for name, value in values.items():
                setattr(module.state, name, mapped(value, _same))

    def advance(self, by: list, times: int) -> None:
        steps = iter(by)
        for module in self.walk:
            for name in module.positions:
                setattr(module.state, name, getattr(module.state, name) + times * next(steps))


def _scripted(trace, x, flat: list):
    """``trace`` (a ``make_fx`` graph) as TorchScript: the same operations, run one after the
    other by TorchScript's interpreter instead of a Python call each (HiFi-GAN V1, a 1-frame
    push: ~1900 of them, two thirds views and copies). oneDNN's packed products are called
    through :func:`~convt_audio.kinds.conv_torch.scripted_packed_product`, which the tracer
    can record."""
    import torch

    packed = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    rewritten = False
    for node in trace.graph.nodes:
        if packed is not None and node.target is packed.default and tuple(node.args[3:]) == ("none", [], ""):
            node.target, node.args = _scripted_packed_product, node.args[:3]
            rewritten = True
    if rewritten:
        trace.recompile()
    with warnings.catch_warnings():  # deprecated for torch.compile, which was measured and not kept
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.trace(trace, (x, *flat), check_trace=False)


def _scripted_packed_product(taps, packed, bias):
    from ..kinds.conv_torch import scripted_packed_product

    return scripted_packed_product()(taps, packed, bias)


class _Step:
    """One push shape's captured step: replayed while the stream stays at its key."""

    def __init__(self, state: _State, trace, x, flat: list, advance: list, backend: str):
        self.state, self.trace, self.advance, self.backend = state, trace, advance, backend
        self.shape, self.dtype = tuple(x.shape), x.dtype
        self.replays = 0
        if backend == "cuda":
            self._capture(x, flat)
        else:
            self.inputs = list(flat)

    def takes(self, x) -> bool:
        """Whether ``x`` is a push of this step's shape and dtype."""
        return tuple(x.shape) == self.shape and x.dtype == self.dtype

    def _capture(self, x, flat: list) -> None:
        import torch

        self.static_x = x.clone()
        self.inputs = [t.clone() for t in flat]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture (the trace writes none of its inputs)
            for _ in range(2):
                self.trace(self.static_x, *self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # other sessions' threads go on pushing meanwhile: only this thread's unsafe calls (an
        # allocation, a synchronisation) may fail the capture, not theirs ("global", the default)
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            out = self.trace(self.static_x, *self.inputs)
            for buffer, new in zip(self.inputs, out[1:]):
                if new is not buffer:  # the state a replay leaves, in the buffers the next reads
                    buffer.copy_(new)
        self.static_y = out[0]

    def enter(self) -> None:
        """Take the stream's state (the layers' tensors) as this step's input."""
        flat = self.state.tensors()
        if self.backend == "cuda":
            for buffer, value in zip(self.inputs, flat):
                if value is not buffer:
                    buffer.copy_(value)
        else:
            self.inputs = flat

    def replay(self, x):
        self.replays += 1
        if self.backend == "cuda":
            self.static_x.copy_(x, non_blocking=True)
            self.graph.replay()
            return self.static_y
        out = self.trace(x, *self.inputs)
        self.inputs = list(out[1:])
        return out[0]

    def leave(self) -> None:
        """Write the state back into the layers, each position advanced by the replays."""
        self.state.load(list(self.inputs))
        self.state.advance(self.advance, self.replays)
        self.replays = 0


def _why(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


class _Refused(Exception):
    """A push shape the tracer refused, kept in a model's traces in the trace's place: the
    same push fails the same way for every stream of that model (a capture, which a device may
    refuse for a moment, is not kept)."""


class StepGraphs(StreamingModule):
    """``streamer`` (a :class:`~convt_audio.model.stack.StreamingStack`) whose steady pushes
    replay a captured step per push shape; ``backend`` ``cuda`` (CUDA graphs), ``script``
    (TorchScript, the CPU's) or ``fx`` (the trace replayed as it is). The same frames as
    ``streamer`` alone, to float rounding."""

    def __init__(self, streamer: StreamingModule, backend: str = "cuda", traces: dict | None = None):
        """``traces``: where the traces are kept by key, shared with other streams of the same
        stack and backend (a trace reads the weights, the input and the state tensors only;
        positions are constants, and the same at an equal key). By default this stream's own."""
        self.streamer, self.backend = streamer, backend
        self.traces = {} if traces is None else traces
        self.children = ()  # the streamer keeps its own state; this wrapper carries steps only
        self.state_of = _State(streamer)
        self.steps: dict = {}  # (push shape, key) -> _Step
        self.fixed: set = set()  # keys an eager push left unchanged: captured at their next push
        self.untraceable: dict = {}  # key -> why its push could not be captured (it stays eager)
        self.current: _Step | None = None  # the step holding the stream's state, if any
        self.captured = 0  # steps captured (for tests and reports)
        self.traced = 0  # of which traced by this stream (the others came from ``traces``)
        super().__init__()

    @property
    def frames_in(self) -> int:
        self._settle()
        return self.streamer.frames_in

    def _settle(self) -> None:
        if self.current is not None:
            self.current.leave()
            self.current = None

    def _push(self, x):
        import torch

        with torch.inference_mode():  # as the stack's own push: the buffers and traces alike
            return self._step(x)

    def _step(self, x):
        current = self.current
        if current is not None and current.takes(x):
            # the layers still hold the state the step was entered with, so batch_key would
            # give the step's own key: a replay leaves the key as it found it
            return current.replay(x)
        key = batch_key(self.streamer)
        if key is not None:
            key = (tuple(x.shape), str(x.dtype), key)
            step = self.steps.get(key)
            if step is not None:
                if self.current is not step:
                    self._settle()
                    step.enter()
                    self.current = step
                return step.replay(x)
            if key in self.fixed or key in self.traces and key not in self.untraceable:
                self._settle()
                return self._capture(key, x)
        self._settle()
        y = self.streamer.push(x)
        after = batch_key(self.streamer)
        if key is not None and after is not None and key[2] == after and key not in self.untraceable:
            self.fixed.add(key)
        return y

    def _capture(self, key, x):
        """Keep a step for this key's pushes to come, traced now unless :attr:`traces` has it,
        and run it as this push. A push that cannot be traced (a value read out of a tensor) or
        captured (an operation a CUDA graph refuses) gets its state back and stays eager at this
        key, the reason kept in ``untraceable`` and said once in a RuntimeWarning. A refused
        trace is kept in :attr:`traces` too: the model's other streams stay eager at that key
        at once instead of tracing it again."""
        state = self.state_of
        saved, start = state.snapshot(), state.tensors()
        try:
            traced = self.traces.get(key)
            if traced is None:
                with _TRACING:
                    traced = self.traces.get(key)  # traced by another stream while this one waited
                    if traced is None:
                        try:
                            traced = self._trace(x, start, saved)
                        except Exception as error:  # noqa: BLE001 - the same push fails the same way
                            traced = _Refused(_why(error))
                        if len(self.traces) < MAX_TRACES:
                            self.traces[key] = traced
            if isinstance(traced, _Refused):  # this model's streams do not trace it again (3-10 s each)
                raise traced
            captured = _Step(state, traced[0], x, start, traced[1], self.backend)
        except Exception as error:  # noqa: BLE001 - a value read out of a tensor, or a capture refused
            state.restore(saved)
            self.fixed.discard(key)
            why = str(error) if isinstance(error, _Refused) else _why(error)
            self.untraceable[key] = why
            warnings.warn(f"graphs: pushes of {x.shape[-1]} frames stay eager: {why}", RuntimeWarning, stacklevel=2)
            return self.streamer.push(x)
        self.current = self.steps[key] = captured
        self.captured += 1
        return captured.replay(x)

    def _trace(self, x, start: list, saved: list) -> tuple:
        """``(trace, advance)``: this push as a function of the input and the state tensors
        (TorchScript for the ``script`` backend), and what it adds to each position. The
        layers are left as they were."""
        from torch.fx.experimental.proxy_tensor import make_fx

        from ..kinds.conv_torch import replayed

        state, streamer = self.state_of, self.streamer
        before = state.positions()

        def step(x, *flat):
            state.load(list(flat))
            y = streamer.push(x)
            return (y, *state.tensors())

        try:
            with replayed():
                # once untraced, so that what the layers make on first use for many pushes
                # (packed weights, Winograd's transformed ones) is made now, not in every replay
                streamer.push(x)
                state.restore(saved)
                trace = make_fx(step, tracing_mode="real")(x, *start)
            advance = [b - a for a, b in zip(before, state.positions())]
        finally:
            state.restore(saved)  # tracing left its own tensors in the layers: back to before
        self.traced += 1
        return (_scripted(trace, x, start) if self.backend == "script" else trace), advance

    def reset(self) -> None:
        """A new signal: the streamer back to its start; the steps are kept for its pushes."""
        super().reset()
        if self.current is not None:
            self.current.replays = 0  # its replays belonged to the signal now forgotten
            self.current = None
        self.streamer.reset()

    def _flush(self):
        self._settle()
        return self.streamer.flush()
