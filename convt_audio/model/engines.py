"""Engines: what runs a config's layers on NumPy blocks of audio.

Every engine is a :class:`~convt_audio.core.engine.Engine` (``open_stream(batch, tail)`` →
``push``/``flush``/``reset`` on ``[batch, channels, frames]`` arrays, plus the shape facts of
:class:`StackShape`); :func:`build_engine` picks one of:

- :class:`TorchEngine` streams any stack with torch on the CPU or a CUDA device;
- :class:`~convt_audio.resampling.chain.ResamplerChain` streams one-channel resampler stacks (the
  built-in ``sinc-xL`` configs, ``design sinc`` outputs and ``--rate``'s designs: one or more
  L/M stages) with NumPy, without importing torch, on the CPU: a stage with a long kernel by
  FFT (:mod:`~convt_audio.resampling.fftconv`), the others computing only the output samples they keep.

:class:`ChainedEngine` runs one then the other (``-c CONFIG -r HZ``); torch is imported only when
it is needed.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..core.engine import Engine
from ..core.errors import DeviceError, option
from ..core.options import DTYPE_NAMES, KERNELS
from ..core.shapes import gemm_frames, widest_activation
from ..core.streaming import StreamingModule
from ..resampling.chain import ResamplerChain, chain_eligible
from .config import Config


def cuda_may_exist() -> bool:
    """False when this machine has no NVIDIA driver, which we can tell without importing torch."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def check_device_name(name: str) -> None:
    """Refuse a device name that is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (no torch)."""
    if not isinstance(name, str):
        raise DeviceError(f"{option('device')}: {name!r} is not one of auto, cpu, cuda, cuda:N")
    base, _, index = name.partition(":")
    if base not in ("auto", "cpu", "cuda") or (index and (base != "cuda" or not index.isdigit())):
        raise DeviceError(f"{option('device')}: {name!r} is not one of auto, cpu, cuda, cuda:N")


def resolve_device(name: str):
    """``auto`` → CUDA when available, else CPU; ``cuda`` without CUDA is an error (torch.device)."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"{option('device', name)}: CUDA is not available on this machine "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{option('device', name)}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def build_engine(
    config: Config,
    params: list,
    device: str = "auto",
    dtype: str = "float32",
    deterministic: bool = False,
    kernel: str = "auto",
):
    """The engine for a config and its arrays (from :func:`~convt_audio.model.weights.load_params`).

    The NumPy resampler serves eligible configs on the CPU (``kernel`` ``auto`` or ``numpy``,
    float32/float64); everything else runs on torch.
    """
    if choose_engine(config, device, dtype, kernel) == "numpy-resampler":
        return ResamplerChain(config.layers, params, dtype)
    return TorchEngine.build(config, params, device, dtype, deterministic, kernel)


def choose_engine(config: Config, device: str = "auto", dtype: str = "float32", kernel: str = "auto") -> str:
    """``"numpy-resampler"`` or ``"torch"``: the one place that decides (``info`` reports it).

    The NumPy resampler serves resampler stacks on the CPU (``kernel`` ``auto`` or ``numpy``,
    float32/float64) — the CPU being ``cpu``, or ``auto`` on a machine without an NVIDIA driver;
    everything else runs on torch. Never imports torch.
    """
    check_device_name(device)
    if dtype not in DTYPE_NAMES:
        raise DeviceError(f"{option('dtype')}: {dtype!r} is not one of {sorted(DTYPE_NAMES)}")
    if kernel not in KERNELS:
        raise DeviceError(f"kernel: {kernel!r} is not one of {list(KERNELS)}")
    on_cpu = device == "cpu" or (device == "auto" and not cuda_may_exist())
    numpy_ok = chain_eligible(config.layers) and dtype in ("float32", "float64")
    if kernel == "numpy" and not (numpy_ok and on_cpu):
        raise DeviceError(
            "kernel numpy: needs a one-channel conv_transpose1d (then a kernel-1 conv1d) config in float32/64 on cpu"
        )
    return "numpy-resampler" if numpy_ok and on_cpu and kernel in ("auto", "numpy") else "torch"


class TorchEngine(Engine):
    """Streams a torch :class:`~convt_audio.model.stack.Stack` on its device, NumPy in and out."""

    name = "torch"

    def __init__(self, stack, kernel: str = "auto"):
        self.stack = stack
        self.specs = stack.specs
        self.kernel = kernel
        first = next((t for p in stack.params for t in p.values()), None)
        self.torch_device = first.device if first is not None else None
        self.torch_dtype = first.dtype if first is not None else None
        self.device = str(self.torch_device) if first is not None else "cpu"
        self.dtype = np.dtype("float64") if str(self.torch_dtype) == "torch.float64" else np.dtype("float32")
        self.traces: dict = {}  # backend -> its captured steps' traces, shared by the live streams (graphs.StepGraphs)

    @classmethod
    def build(
        cls,
        config: Config,
        params: list,
        device: str = "auto",
        dtype: str = "float32",
        deterministic: bool = False,
        kernel: str = "auto",
    ) -> "TorchEngine":
        import torch

        from ..core.shapes import leaves
        from .stack import Stack, as_tensor

        target = resolve_device(device)
        if target.type == "cuda":  # exact float32, as on the CPU (a CPU model leaves the process's flags alone)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        if deterministic:
            if target.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        torch_dtype = getattr(torch, dtype)
        tensors = []
        for leaf, layer in zip(leaves(config.layers), params):
            tensors.append(
                {k: as_tensor(v, torch_dtype, target, k in leaf.frames_last_tensors) for k, v in layer.items()}
            )
            leaf.store_for_streams(tensors[-1], kernel)  # the engine only streams: one form of each weight
        return cls(Stack(config.layers, tensors), kernel)

    def preferred_chunk(self) -> int:
        """Input frames per block: the widest activation near 2^17 elements (512 kB in float32).

        Measured with benchmarks/decoder.py at 2^18: its stack (widest 512 channels·rate) got
        512 frames; 2048 was within the noise but raised peak RSS by 50 MB, 8192 was slower, 128
        was 1.4x slower. A block holds at least 64 frames: the vocoders (widest 8192 to 49152)
        would get fewer, and peak RSS grows with the block (oneDNN's per-shape buffers), but
        below 64 the per-block cost shows (2 cores, whole processes, 32 → 64 frames): HiFi-GAN
        V1 60 s 27.0 → 24.5 s, 435 → 659 MB; EnCodec 60 s 6.9 → 5.7 s, 401 → 434 MB; DAC 44 kHz
        20 s 28.2 → 23.6 s, 984 → 1216 MB; 128 frames gained HiFi-GAN 4 % more for 876 MB. ONNX
        Runtime on HiFi-GAN's whole mel, the peer deployers run, holds 1414 MB
        (benchmarks/ort_vocoder.py); the authors' DAC forward 2361 MB.

        A matrix product over the frames (``linear``: Vocos's ConvNeXt blocks) gets at least the
        rows it wants (``gemm_rows``): Vocos, widest 1536, would get 64 frames, and runs 1.5x
        faster at 256.

        On CUDA the block is 64x larger (2^23 elements, 32 MB in float32): each launch costs
        microseconds whatever its size, so small blocks leave the device idle. benchmarks/gpu.py
        on an H200, 60 s of HiFi-GAN V1 in float32: 0.237 s at 256 frames, 0.178 s at 1024.
        """
        on_cuda = self.torch_device is not None and self.torch_device.type == "cuda"
        chunk = int((2**23 if on_cuda else 2**17) / widest_activation(self.specs))
        chunk = 1 << max(6, min(16, chunk.bit_length() - 1))
        rows = gemm_frames(self.specs)
        if rows > chunk:
            chunk = 1 << min(16, (rows - 1).bit_length())  # the power of two that gives them
        return max(chunk, self.min_input_frames())

    def leading_circular_frames(self) -> int:
        from .stack import leading_circular_frames

        return leading_circular_frames(self.stack)

    def open_stream(self, batch: int, tail: np.ndarray | None = None) -> "TorchStream":
        return TorchStream(self, batch, tail)

    def open_live_stream(self, batch: int) -> "TorchStream":
        return TorchStream(self, batch, None, overlap=False)  # each push's frames out at once, on CUDA too


class TorchStream(StreamingModule):
    """One file's stream on a torch device, NumPy ``[B, C, n]`` blocks in and out.

    On CUDA, host blocks go up from pinned memory without blocking, and each result is copied
    back into pinned memory and handed out one block later (``overlap``), so the copy runs
    while the next block computes.
    """

    @dataclass
    class State:
        in_flight: deque = field(default_factory=deque)  # (event or None, host tensor) copies under way

    def __init__(self, engine: TorchEngine, batch: int, tail: np.ndarray | None, overlap: bool | None = None):
        import torch

        from .stack import StreamingStack

        self.torch = torch
        self.engine = engine
        self.cuda = engine.torch_device is not None and engine.torch_device.type == "cuda"
        self.overlap = self.cuda if overlap is None else overlap
        self.streamer = StreamingStack(
            engine.stack, tail=None if tail is None else self._up(tail), kernel=engine.kernel
        )
        self.tailed = tail is not None
        self.children = (self.streamer,)
        super().__init__()

    def _up(self, block: np.ndarray):
        x = self.torch.from_numpy(block)
        if self.cuda:
            return x.pin_memory().to(self.engine.torch_device, self.engine.torch_dtype, non_blocking=True)
        return x.to(dtype=self.engine.torch_dtype) if self.engine.torch_dtype is not None else x

    def _down(self, y, keep: int) -> np.ndarray:
        """Start copying ``y`` to the host; return the copies done, leaving ``keep`` in flight."""
        if y.dtype in (self.torch.float16, self.torch.bfloat16):
            y = y.float()
        if not self.overlap:
            return y.cpu().numpy()
        host = self.torch.empty(y.shape, dtype=y.dtype, pin_memory=self.cuda)
        host.copy_(y, non_blocking=self.cuda)
        event = None
        if self.cuda:
            event = self.torch.cuda.Event()
            event.record()
        self.state.in_flight.append((event, host))
        done = []
        while len(self.state.in_flight) > keep:
            event, ready = self.state.in_flight.popleft()
            if event is not None:
                event.synchronize()
            done.append(ready.numpy())
        if not done:
            return np.zeros((y.shape[0], y.shape[1], 0), dtype=np.float32)
        return done[0] if len(done) == 1 else np.concatenate(done, axis=-1)

    def capture_steps(self, backend: str = "cuda") -> None:
        """From now on replay each steady push shape as one captured step
        (:class:`~convt_audio.model.graphs.StepGraphs`: ``cuda``, CUDA graphs; ``script``, a
        TorchScript graph; ``fx``, the trace itself); refused in words where the device or a
        layer cannot. A stream with no file tail shares its traces with the engine's other
        such streams of the same backend: each push shape is traced once per model."""
        from ..core.errors import UsageError
        from .graphs import StepGraphs, graphable

        if backend == "cuda" and not self.cuda:
            raise UsageError(f"graphs: CUDA graphs need a CUDA device; this model runs on {self.engine.device}")
        if self.started:
            raise UsageError("graphs: choose them before the stream's first push")
        refused = graphable(self.streamer)
        if refused:
            more = f" and {len(refused) - 2} more" if len(refused) > 2 else ""
            raise UsageError(
                f"graphs: {', '.join(refused[:2])}{more} cannot be replayed from a captured step; stream without graphs"
            )
        shared = None if self.tailed else self.engine.traces.setdefault(backend, {})
        self.streamer = StepGraphs(self.streamer, backend, shared)
        self.children = (self.streamer,)

    def _push(self, block: np.ndarray) -> np.ndarray:
        """``[B, C, n]`` input frames in; the output frames now final (one block late on CUDA)."""
        x = self._up(block)
        return self._down(self.streamer.push(x), keep=1)

    def _check_end(self) -> None:
        self.engine.check_frames(self.streamer.frames_in)

    def _flush(self) -> np.ndarray:
        """Every remaining output frame."""
        return self._down(self.streamer.flush(), keep=0)


class ChainedEngine(Engine):
    """A config's stack on its engine, then a resampler on the NumPy engine: ``-c CONFIG -r HZ``
    as one stream (a vocoder's 22050 Hz out, 48000 Hz written). Each output channel of the first
    is resampled on its own; the samples are those of two runs joined by a pipe."""

    name = "chained"  # each instance names its two engines: "torch+numpy-resampler"

    def __init__(self, first, second, specs: tuple):
        self.first, self.second = first, second
        self.specs = specs  # the config's layers, then the resampler's (re-indexed after them)
        self.name = f"{first.name}+{second.name}"
        self.device, self.dtype = first.device, first.dtype

    def preferred_chunk(self) -> int:
        return self.first.preferred_chunk()

    def leading_circular_frames(self) -> int:
        return self.first.leading_circular_frames()

    def open_stream(self, batch: int, tail: np.ndarray | None = None) -> "ChainedStream":
        rows = batch * self.first.out_channels
        return ChainedStream(self, self.first.open_stream(batch, tail), self.second.open_stream(rows))

    def open_live_stream(self, batch: int) -> "ChainedStream":
        rows = batch * self.first.out_channels
        return ChainedStream(self, self.first.open_live_stream(batch), self.second.open_live_stream(rows))


class ChainedStream(StreamingModule):
    """The first engine's stream (``first``) feeding the second's, channel by channel."""

    def __init__(self, engine: ChainedEngine, first: StreamingModule, second: StreamingModule):
        self.engine = engine
        self.channels = engine.first.out_channels
        self.children = (first, second)
        super().__init__()

    def _hand_on(self, y: np.ndarray) -> np.ndarray:
        batch = y.shape[0]
        flat = np.ascontiguousarray(y).reshape(batch * self.channels, 1, y.shape[-1])
        return self.children[1].push(flat).reshape(batch, self.channels, -1)

    def _push(self, chunk: np.ndarray) -> np.ndarray:
        return self._hand_on(self.children[0].push(chunk))

    def _flush(self) -> np.ndarray:
        last = self._hand_on(self.children[0].flush())
        rest = self.children[1].flush().reshape(last.shape[0], self.channels, -1)
        return np.concatenate([last, rest], axis=-1)
