"""The convolutions' torch half: whole-signal forward and exact streaming forms.

Imported by :mod:`.conv` when a layer runs, so that parsing a config never imports torch.
"""

from __future__ import annotations

import functools
import threading
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import List, Optional, Union

import torch
import torch.nn.functional as F

from ..core.errors import InputTooShortError
from ..core.streaming import StreamingModule, cat, frames_last_layout
from .padding import Extender, extend
from .winograd import padded_frames, winograd_conv, winograd_weight


def conv_transpose1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec) -> torch.Tensor:
    """Whole-signal transposed convolution with the padding modes README.md defines ("Padding modes"), ``[B, C_in, L]`` in.

    The input is extended per ``padding_mode``, transposed-convolved with no padding, and the
    ``padding`` crop taken from the result (bias-only frames where ``output_padding`` reaches
    past it). With ``zeros`` this equals ``torch.nn.functional.conv_transpose1d``.
    """
    frames = x.shape[-1]
    out_frames = spec.output_frames(frames)
    if out_frames < 1:
        raise InputTooShortError(
            f"input too short: {spec.where} ({spec.type}) gets {frames} frames and needs at least "
            f"{spec.min_input_frames()}"
        )
    left, right = spec.extension()
    full = F.conv_transpose1d(
        extend(x, left, right, spec.padding_mode),
        weight,
        None,
        spec.stride,
        0,
        0,
        spec.groups,
        spec.dilation,
    )
    offset = spec.crop()[0] + left * spec.stride
    y = full[..., offset : offset + out_frames]
    if y.shape[-1] < out_frames:
        y = F.pad(y, (0, out_frames - y.shape[-1]))
    if bias is not None:
        y = y + bias[:, None]
    return y


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec) -> torch.Tensor:
    """Whole-signal convolution: extend by the padding (per end) per ``padding_mode``, then no padding."""
    frames = x.shape[-1]
    if spec.output_frames(frames) < 1:
        raise InputTooShortError(
            f"input too short: {spec.where} ({spec.type}) gets {frames} frames and needs at least "
            f"{spec.min_input_frames()}"
        )
    x = extend(x, *spec.extension(), spec.padding_mode)
    return F.conv1d(x, weight, bias, spec.stride, 0, spec.dilation, spec.groups)


NATIVE_ELEMENTS = 20480  # PyTorch runs a CPU convolution this small natively, not with oneDNN


def dilated_as_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec) -> torch.Tensor:
    """``F.conv1d`` of a small chunk with ``dilation > 1``, as one matrix product of the kernel
    and the chunk's taps (``unfold``, every ``dilation``-th frame of each window).

    Below :data:`NATIVE_ELEMENTS` PyTorch computes a dilated CPU convolution with
    ``slow_conv_dilated2d``, which loops over single elements: 256 channels, kernel 3, dilation 5,
    8 frames took 486 µs that way and 260 µs as a product, its weights read from memory either
    way (the same sums; float rounding differs by the order of the additions only)."""
    batch, channels, _ = x.shape
    out, per_group, kernel = weight.shape
    groups = spec.groups
    taps = x.unfold(-1, spec.receptive, spec.stride)[..., :: spec.dilation]  # [B, C, count, K]
    count = taps.shape[2]
    taps = taps.reshape(batch, groups, per_group, count, kernel).transpose(3, 4)
    taps = taps.reshape(batch, groups, per_group * kernel, count)
    y = torch.matmul(weight.reshape(groups, out // groups, per_group * kernel), taps).reshape(batch, out, count)
    return y if bias is None else y + bias[:, None]


def channels_last_weight(weight: torch.Tensor) -> torch.Tensor | None:
    """``weight`` as the ``[O, I, 1, K]`` channels-last tensor the CPU convolutions take, or None
    where that layout does not pay (CUDA, float64, which oneDNN does not run).

    oneDNN convolves frames-outermost (``nwc``) data 1.2–1.45x faster than ``ncw`` on AVX2/AVX-512
    (HiFi-GAN V1's shapes, 2 threads: 128 channels, kernel 11, 4096 frames 150 → 197 GFLOP/s), and
    small chunks, which PyTorch otherwise convolves natively (:data:`NATIVE_ELEMENTS`), 1.1-6x
    faster (1 thread: 256 channels, kernel 3, 10 frames 447 → 70 µs; dilation 5, 8 frames
    326 → 75 µs). A convolution's output keeps its input's layout, so every pointwise op and
    join between two convolutions runs on it too (:func:`~convt_audio.core.streaming.cat`
    keeps it)."""
    if not channels_last_pays(weight):
        return None
    return weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def channels_last_pays(weight: torch.Tensor) -> bool:
    """Whether :func:`channels_last_weight` gives a layout: a CPU weight in float32 or bfloat16."""
    return weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16)


# a dilated convolution with at most this many outputs (all rows of a batch) runs as a product
MATMUL_DILATED_FRAMES = 256
PACKED_FRAMES = 128  # a large one with at most this many, as a product with the weight packed once
PACKED_WEIGHTS = 1 << 13  # "large": weights (O·C_in·K) from which packing pays
PACKED_MAX_WEIGHTS = 1 << 22  # and up to which its copy is worth its memory (16 MB in float32)


def conv_frames_last(x: torch.Tensor, weight4: torch.Tensor, bias, stride: int, dilation: int, groups: int):
    """``F.conv1d`` in the channels-last layout: ``[B, C, n]`` in (any layout), out with frames
    outermost.

    oneDNN's convolution pays per call what a few outputs do not amortise, a dilated one above
    all; a live stream's pushes are all that size. So, ungrouped (1 thread, medians):

    - on one thread, stride 1, kernel 7 or more, 64 or more channels, at least
      :data:`WINOGRAD_FRAMES` outputs: Winograd's tiled product (:func:`winograd_pays`; half
      the multiplications, 0.64-0.77x the convolution's time).
    - few outputs of a layer of :data:`PACKED_WEIGHTS` or more: one product with the weight
      packed once for oneDNN's matrix multiply (:func:`packed_matrix`, from a layer's 17th such
      call). 256 channels, kernel 11, 8 outputs 216 → 145 µs, 64 outputs 1129 → 920 µs;
      HiFi-GAN V1's first upsampler (512 → 2048 polyphase outputs, 9 outputs) 1166 → 655 µs.
      Smaller layers gain less alone (weights in cache) than in a push, where every layer's
      weights come from memory: with 2^13 weights instead of 2^18 (HiFi-GAN V1's 128- and
      64-channel layers packed too) a replayed 1-frame push took 5-10 % less (1 thread, 14.1
      → 13.1 ms; 2 threads 2-9 %), an 8-frame one 0-3 %. 32 channels, kernel 3 (3072
      weights) stays a convolution: packed it is slower (29 → 44 µs). Unpacked, the product
      repacks the weight every call and gains nothing. Past ~128 outputs on 2 threads the
      convolution is faster again. The packed copy is a second copy of the weights: not for layers above
      :data:`PACKED_MAX_WEIGHTS` (DAC's and BigVGAN's 1536-channel ones, 44-75 MB each; with
      them packed a 20 s DAC decode held ~250 MB more for 3 % less time).
    - a dilated layer's outputs up to :data:`MATMUL_DILATED_FRAMES`: a plain product (256
      channels, kernel 3, dilation 3, 8 outputs 310 → 59 µs; 32 channels 40 → 7 µs), in
      slices of outputs that keep the gathered taps small (:func:`taps_product`).
    - a layer with one output channel (a vocoder's last), whatever the count: each tap's sums
      over the channels, then their diagonals (:func:`tap_sums`). oneDNN runs it at ~5
      GFLOP/s and gathered taps copy K·C values a frame (32 → 1 channels, kernel 7, 2048
      outputs: convolution 161 µs, gathered taps 81-130 µs, tap sums 36 µs).
    - everything else: the convolution (small layers, where a product's fixed cost is larger).

    Same sums in another order: float rounding differs, nothing else."""
    kernel = weight4.shape[-1]
    count = (x.shape[-1] - dilation * (kernel - 1) - 1) // stride + 1
    height = x.shape[0] * count  # the product's rows: a pool's batch of streams counts them all
    if groups == 1 and stride == 1 and count >= WINOGRAD_FRAMES and winograd_pays(weight4):
        transformed = derived(weight4, "winograd", lambda w4: winograd_weight(w4.squeeze(2)))
        if bias is not None:  # once per layer and dilation, not every call
            bias = derived(bias, ("repeated", dilation), lambda b: b.repeat(dilation))
        y = x.new_empty(x.shape[0], padded_frames(count, dilation, transformed), weight4.shape[0])  # whole tiles
        for item in range(x.shape[0]):
            winograd_conv(frame_rows(x[item : item + 1])[0], transformed, bias, dilation, count, y[item])
        return y[:, :count].transpose(1, 2)
    if groups == 1 and count > 0:
        large = PACKED_WEIGHTS <= weight4.numel() <= PACKED_MAX_WEIGHTS
        packed = packed_matrix(weight4) if large and height <= PACKED_FRAMES else None
        if packed is not None:
            taps = taps_rows(x, kernel, stride, dilation, count)
            y = packed_product(taps, packed, bias)
            return y.view(x.shape[0], count, -1).transpose(1, 2)
        if weight4.shape[0] == 1:
            return tap_sums(x, weight4, bias, stride, dilation, count)
        if dilation > 1 and height <= MATMUL_DILATED_FRAMES:
            return taps_product(x, weight4, bias, stride, dilation, count)
    return F.conv2d(x.unsqueeze(2), weight4, bias, (1, stride), 0, (1, dilation), groups).squeeze(2)


WINOGRAD_KERNEL = 7  # the fewest taps, the fewest channels each side, and the fewest outputs
WINOGRAD_CHANNELS = 64  # from which the tiled Winograd product beats oneDNN on one thread
WINOGRAD_FRAMES = 256
WINOGRAD_MAX_WEIGHTS = 1 << 18  # the transformed copy is ~2x the weight: 2 MB at most


def winograd_pays(weight4: torch.Tensor) -> bool:
    """Whether a stride-1 ungrouped convolution runs faster as :func:`.winograd.winograd_conv`:
    float32, kernel ≥ :data:`WINOGRAD_KERNEL`, ≥ :data:`WINOGRAD_CHANNELS` channels in and out,
    at most :data:`WINOGRAD_MAX_WEIGHTS` weights, and one thread.

    1 thread, medians, weights read from memory (HiFi-GAN V1's resblocks, kernel 11): 128
    channels, 512 outputs 1790 → 1214 µs, kernel 7 1162 → 885 µs; 64 channels, 1024 outputs
    888 → 688 µs. Its transforms run on one thread where oneDNN's convolution uses them all:
    with 2 threads it loses (1.0–2.8x), so a stream with more threads convolves. Kernel 3 and
    32 channels lose (0.9–1.8x), and so do fewer outputs than :data:`WINOGRAD_FRAMES` (a
    1-frame push's 128 at 64 channels). Larger layers gain too (256 channels, kernel 11, 512
    outputs 7.3 → 4.3 ms), but their transformed copies held HiFi-GAN V1's two halves 190 MB
    more (72 MB of copies, the rest glibc's heap) for 8 % less time; at this size 17 MB."""
    out_channels, channels, _, kernel = weight4.shape
    return (
        weight4.dtype == torch.float32
        and kernel >= WINOGRAD_KERNEL
        and min(out_channels, channels) >= WINOGRAD_CHANNELS
        and weight4.numel() <= WINOGRAD_MAX_WEIGHTS
        and torch.get_num_threads() == 1
    )


TAPS_ELEMENTS = 1 << 19  # the most gathered taps (or tap sums) a product holds at once (2 MB in float32)


def taps_product(x: torch.Tensor, weight4: torch.Tensor, bias, stride: int, dilation: int, count: int):
    """``count`` outputs of the ungrouped convolution ``weight4`` as products of the taps and
    the weight matrix, gathered at most :data:`TAPS_ELEMENTS` at a time; out frames outermost.

    Measured while one-output layers still took this path (they take :func:`tap_sums` now):
    gathered all at once, DAC's last layer (96 → 1 channels, kernel 7, a 64-frame block's 32768
    outputs) made an 84 MB copy a block: 52 ms against 4.4 ms in slices that stay in cache, and
    the largest allocation of a DAC stream (1 thread; 32 → 1, 16384 outputs 3.1 → 0.8 ms). Past
    ~2^19 elements a slice is slower again; below, the calls' fixed cost shows (2^14: 3.2 ms)."""
    batch, channels, _ = x.shape
    kernel = weight4.shape[-1]
    matrix = weight_matrix(weight4).t()
    step = max(1, TAPS_ELEMENTS // (kernel * channels))
    if batch * count <= step:
        taps = taps_rows(x, kernel, stride, dilation, count)
        y = taps @ matrix if bias is None else torch.addmm(bias, taps, matrix)
        return y.view(batch, count, -1).transpose(1, 2)
    y = x.new_empty(batch, count, weight4.shape[0])
    span = dilation * (kernel - 1) + 1
    for item in range(batch):
        for first in range(0, count, step):
            last = min(count, first + step)
            window = x[item : item + 1, :, first * stride : (last - 1) * stride + span]
            taps = taps_rows(window, kernel, stride, dilation, last - first)
            if bias is None:
                torch.mm(taps, matrix, out=y[item, first:last])
            else:
                torch.addmm(bias, taps, matrix, out=y[item, first:last])
    return y.transpose(1, 2)


def tap_sums(x: torch.Tensor, weight4: torch.Tensor, bias, stride: int, dilation: int, count: int):
    """``count`` outputs ``[B, 1, count]`` of an ungrouped convolution with one output channel
    (a vocoder's last): each tap's sum over the channels at every input frame, one product,
    then each output the sum of one diagonal of those sums::

        z[k, i] = Σ_c w[c, k] · x[c, i]                 K × n: one product, no taps gathered
        y[t]    = Σ_k z[k, t·stride + k·dilation]        a strided view, summed over k

    The product reads the input in the layout it has, channels or frames outermost, and writes
    K values a frame where gathered taps are K·C (:func:`taps_product`). 1 thread, medians: 32 →
    1 channels, kernel 7, 2048 outputs 130 → 36 µs from channels outermost; DAC's 96 → 1, 16384
    outputs 8.8 → 1.0 ms (frames outermost 1.9 → 1.1 ms). Slices of outputs keep ``z`` at most
    :data:`TAPS_ELEMENTS`. Same sums in another order: float rounding differs, nothing else."""
    batch, channels, _ = x.shape
    kernel = weight4.shape[-1]
    taps = weight_matrix(weight4).view(kernel, channels)
    y = x.new_empty(batch, count)
    span = dilation * (kernel - 1) + 1
    step = max(1, TAPS_ELEMENTS // (batch * kernel * stride))
    for first in range(0, count, step):
        last = min(count, first + step)
        window = x[:, :, first * stride : (last - 1) * stride + span]
        frames = window.shape[-1]
        if window.stride(1) == 1:  # frames outermost: z [B, n, K]
            z = frame_rows(window) @ taps.t()
            strides = (frames * kernel, stride * kernel, dilation * kernel + 1)
        else:  # channels outermost: z [B, K, n]
            z = torch.matmul(taps, window if window.stride(2) == 1 else window.contiguous())
            strides = (kernel * frames, stride, frames + dilation)
        torch.sum(z.as_strided((batch, last - first, kernel), strides, z.storage_offset()), 2, out=y[:, first:last])
    if bias is not None:
        y += bias
    return y.unsqueeze(1)


def frame_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, C, n]`` as ``[B, n, C]`` with each frame's channels contiguous (copied there
    if they are not)."""
    rows = x.transpose(1, 2)
    if rows.stride(2) != 1 or rows.stride(1) != x.shape[1]:
        rows = rows.contiguous()
    return rows


def taps_rows(x: torch.Tensor, kernel: int, stride: int, dilation: int, count: int) -> torch.Tensor:
    """``[B·count, K·C]``: each output's taps, tap-major, gathered from ``x`` ``[B, C, n]`` with
    frames outermost (copied there first if it is not)."""
    batch, channels, _ = x.shape
    rows = frame_rows(x)
    return rows.as_strided(
        (batch, count, kernel, channels),
        (rows.stride(0), stride * channels, dilation * channels, 1),
        rows.storage_offset(),
    ).reshape(batch * count, kernel * channels)


def weight_matrix(weight4: torch.Tensor) -> torch.Tensor:
    """The channels-last ``[O, C, 1, K]`` weight as the ``[O, K·C]`` matrix (tap-major) it
    already is in memory: a view."""
    out_channels = weight4.shape[0]
    width = weight4.numel() // out_channels
    return weight4.as_strided((out_channels, width), (width, 1), weight4.storage_offset())


PACKED_AFTER = 16  # few-output calls of a layer (all its streams together) before it is packed
_REPLAYED = ContextVar("replayed", default=False)  # the calls made now are a step traced for replays


@contextmanager
def replayed():
    """The convolutions called inside are traced into a step that will be replayed push after
    push (:mod:`convt_audio.model.graphs`): they choose as a layer past its
    :data:`PACKED_AFTER` few-output calls does, since a trace keeps the choice for good."""
    token = _REPLAYED.set(True)
    try:
        yield
    finally:
        _REPLAYED.reset(token)


def packed_matrix(weight4: torch.Tensor):
    """:func:`weight_matrix` packed for oneDNN's matrix multiply, shared by every stream; None
    until the layer has had :data:`PACKED_AFTER` few-output calls (or at once in a step traced
    for replays, :func:`replayed`), and where this PyTorch build cannot pack (then the caller
    convolves).

    Packing pays over a live stream's many small pushes, not over the few small blocks of a
    whole file (a half's first and last blocks, the flush): packed on first use, BigVGAN v2's
    copies held a 1.2 s decode 1121 MB instead of 854 MB, for no gain in time."""
    calls = derived(weight4, "few-output calls", lambda _: [0])
    calls[0] += 1  # a race between two streams only packs it a call earlier or later
    if calls[0] <= PACKED_AFTER and not _REPLAYED.get():
        return None

    def make(weight4):
        matrix = weight_matrix(weight4)
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(matrix, None)
            torch.ops.mkldnn._linear_pointwise(matrix.new_zeros(1, matrix.shape[1]), packed, None, "none", [], "")
        except (AttributeError, RuntimeError, NotImplementedError):
            return None
        return packed

    return derived(weight4, "packed", make)


def packed_product(taps: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``taps @ matrix.T + bias`` with the matrix packed by :func:`packed_matrix`."""
    return torch.ops.mkldnn._linear_pointwise(taps, packed, bias, "none", [], "")


@functools.lru_cache(maxsize=None)
def scripted_packed_product():
    """:func:`packed_product` as a TorchScript function, which a TorchScript trace records as a
    call: tracing the operation itself fails on its empty list of scalars, whose type the
    tracer cannot tell (:mod:`convt_audio.model.graphs` traces steps through it)."""

    def product(taps: torch.Tensor, packed: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        no_scalars: List[Optional[Union[float, int, complex]]] = []
        return torch.ops.mkldnn._linear_pointwise(taps, packed, bias, "none", no_scalars, "")

    return torch.jit.script(product)


def polyphase_weight(weight: torch.Tensor, spec) -> torch.Tensor:
    """Rewrite a transposed-conv weight as a Conv1d weight with ``out_channels·stride`` outputs.

    Tap k lands at raw offset ``k·d = m·s + r``: phase r, delay m. Output channel ``c·s + r`` of
    the Conv1d is phase r of channel c; its kernel (flipped, cross-correlation) holds the taps of
    that phase at ``M − m``, ``M = ⌊d(K−1)/s⌋``. Groups stay contiguous.
    """
    c_in, c_out_g, kernel = weight.shape
    s, d, groups = spec.stride, spec.dilation, spec.groups
    delays = (spec.receptive - 1) // s
    c_in_g = c_in // groups
    poly = weight.new_zeros(groups, c_out_g, s, c_in_g, delays + 1)
    w = weight.reshape(groups, c_in_g, c_out_g, kernel).permute(0, 2, 1, 3)  # g, co, ci, k
    for k in range(kernel):
        m, r = divmod(k * d, s)
        poly[:, :, r, :, delays - m] += w[..., k]
    return poly.reshape(groups * c_out_g * s, c_in_g, delays + 1)


_DERIVED: dict[int, tuple] = {}  # id(tensor) -> (a weak reference to it, {what: derived from it})
_DERIVING = threading.RLock()


def derived(tensor: torch.Tensor, what, make):
    """``make(tensor)``, made once per weight tensor and ``what`` and shared by every stream of
    the stack while the tensor lives (a pool's hundred streams of HiFi-GAN V1 would otherwise
    hold a hundred copies of its rearranged weights), whichever thread opens them: a file's two
    halves opened theirs at once, each made its own, and DAC's decode held 263 MB more."""
    key = id(tensor)
    with _DERIVING:
        entry = _DERIVED.get(key)
        if entry is None or entry[0]() is not tensor:
            # the table bound now: at exit the module's globals may be gone before the tensors
            entry = (weakref.ref(tensor, lambda _, key=key, table=_DERIVED: table.pop(key, None)), {})
            _DERIVED[key] = entry
        if what not in entry[1]:
            entry[1][what] = make(tensor)
        return entry[1][what]


def store_channels_last(params: dict) -> None:
    """Keep a convolution's ``params["weight"]`` in the channels-last layout its streams take
    (:func:`channels_last_weight`): the stack holds that one copy of the weights, not two.
    Under the lock of :func:`derived`: streams opened at once convert it once."""
    with _DERIVING:
        weight4 = channels_last_weight(params["weight"])
        if weight4 is not None:
            params["weight"] = weight4.squeeze(2)


def transposed_weight(poly: torch.Tensor, spec) -> torch.Tensor:
    """The transposed-conv weight ``[C_in, O/groups, K]`` that :func:`polyphase_weight` rewrote
    as ``poly``: each tap read back from its phase and delay (a gather, exact)."""
    s, d, groups, kernel = spec.stride, spec.dilation, spec.groups, spec.kernel_size
    delays = (spec.receptive - 1) // s
    c_out_g = spec.out_channels // groups
    c_in_g = poly.shape[1]
    phases = poly.reshape(groups, c_out_g, s, c_in_g, delays + 1)
    w = poly.new_empty(groups, c_out_g, c_in_g, kernel)
    for k in range(kernel):
        m, r = divmod(k * d, s)
        w[..., k] = phases[:, :, r, :, delays - m]
    return w.permute(0, 2, 1, 3).reshape(groups * c_in_g, c_out_g, kernel)


def store_polyphase(params: dict, spec) -> None:
    """Keep a transposed convolution's weight only in the polyphase form its CPU streams take:
    ``params["weight"]`` becomes ``params["polyphase"]`` (channels-last, :func:`polyphase_weights`),
    where that form pays (:func:`channels_last_weight`). The original was otherwise held beside
    its copy for the whole run: 97 MB of DAC 44 kHz's decoder, 49 MB of BigVGAN v2's. The
    whole-signal forward reads the original back (:func:`transposed_weight`)."""
    weight = params.get("weight")
    if weight is None or not channels_last_pays(weight):
        return
    params["polyphase"] = polyphase_weights(weight, spec)[0]
    del params["weight"]


def polyphase_weights(weight: torch.Tensor, spec) -> tuple:
    """``(poly, poly4)``: :func:`polyphase_weight` of ``weight`` and its channels-last form (None
    where that does not pay; ``poly`` is then a view of it), made once per weight tensor."""

    def make(weight):
        poly = polyphase_weight(weight, spec)
        poly4 = channels_last_weight(poly)
        return (poly if poly4 is None else poly4.squeeze(2), poly4)

    return derived(weight, ("polyphase", spec.stride, spec.dilation, spec.groups, spec.kernel_size), make)


class StreamingConvTranspose1d(StreamingModule):
    """Exact streaming transposed convolution by overlap-add of partial sums.

    Extended input frame j adds its kernel at raw positions ``j·s + k·d``; output t is raw
    ``t + padding + left·s``. After frames j < E, raw positions < ``E·s`` are final::

        input  j:      0       1       2          stride 3, kernel 5
        raw    u:  0 1 2 3 4
                         3 4 5 6 7
                               6 7 8 9 10     -> after input j, raw u < 3(j+1) is final

    ``state.partial`` holds the ``d(K−1) + 1 − s`` raw positions still open (none when that is
    ≤ 0: then the kernel leaves gaps of zeros), plus finished frames not yet emitted: those past
    the output length a still-growing input guarantees (output_padding and padding decide the
    end, and the end is only known at :meth:`flush`). Bias is added to finished frames only.
    """

    @dataclass
    class State:
        extended: int = 0  # extended input frames consumed (E)
        partial: torch.Tensor | None = None  # raw positions [partial_start, E·s + max(overlap, 0))
        partial_start: int = 0
        emitted: int = 0  # output frames returned so far

    poolable = True
    positions = ("extended", "partial_start", "emitted")

    def __init__(
        self,
        spec,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        tail: torch.Tensor | None = None,
        kernel: str = "transposed",
        full=None,
        polyphase: torch.Tensor | None = None,
    ):
        """``full``: computes a chunk's untrimmed sums in place of ``weight`` (the istft's FFT).
        ``polyphase``: the weight in :func:`polyphase_weight`'s form instead (``weight`` None;
        :func:`store_polyphase`)."""
        if polyphase is not None and kernel != "polyphase":
            weight = transposed_weight(polyphase, spec)
        self.spec, self.weight, self.bias, self.kernel, self.full = spec, weight, bias, kernel, full
        left, right = spec.extension()
        self.extender = Extender(spec.padding_mode, left, right, tail)
        self.children = (self.extender,)
        self.offset = spec.crop()[0] + left * spec.stride
        self.overlap = spec.receptive - spec.stride
        if kernel == "polyphase" and polyphase is not None:  # one channels-last view, shared by every stream
            self.poly_weight, self.poly_weight4 = polyphase, derived(polyphase, "channels_last", channels_last_weight)
        elif kernel == "polyphase":
            self.poly_weight, self.poly_weight4 = polyphase_weights(weight, spec)
        super().__init__()

    def _full(self, x: torch.Tensor) -> torch.Tensor:
        """Transposed convolution of a chunk with no padding: ``n·s + overlap`` raw frames."""
        spec = self.spec
        if self.full is not None:
            return self.full(x)
        if self.kernel == "polyphase":
            delays = (spec.receptive - 1) // spec.stride
            padded = F.pad(x, (delays, delays))
            if self.poly_weight4 is not None:
                phases = conv_frames_last(padded, self.poly_weight4, None, 1, 1, spec.groups)
                batch, _, steps = phases.shape  # frames outermost: [B, steps, C, s] in memory
                raw = phases.view(batch, spec.out_channels, spec.stride, steps).permute(0, 3, 2, 1)
                raw = raw.reshape(batch, steps * spec.stride, spec.out_channels).transpose(1, 2)
            else:
                phases = F.conv1d(padded, self.poly_weight, None, 1, 0, 1, spec.groups)
                batch, _, steps = phases.shape
                raw = phases.view(batch, spec.out_channels, spec.stride, steps).transpose(2, 3)
                raw = raw.reshape(batch, spec.out_channels, steps * spec.stride)
            return raw[..., : x.shape[-1] * spec.stride + self.overlap]
        return F.conv_transpose1d(x, self.weight, None, spec.stride, 0, 0, spec.groups, spec.dilation)

    def _accumulate(self, x: torch.Tensor) -> None:
        state = self.state
        frames = x.shape[-1]
        if not frames:
            return
        raw = self._full(x)
        if self.overlap < 0:  # gaps between kernels: finished zeros
            raw = F.pad(raw, (0, -self.overlap))
        base = state.extended * self.spec.stride
        if state.partial is None:
            state.partial, state.partial_start = raw, base
        else:
            finished = base - state.partial_start
            still_open = state.partial.shape[-1] - finished
            if still_open > 0:
                raw[..., :still_open] += state.partial[..., finished:]
            state.partial = cat([state.partial[..., :finished], raw]) if finished else raw
        state.extended += frames

    def _emit(self, end: int) -> torch.Tensor:
        """Return output frames [emitted, end), padded with zeros past the raw output."""
        state = self.state
        if state.partial is None or end <= state.emitted:
            return self._empty(self.spec.out_channels)
        start = state.emitted + self.offset - state.partial_start
        stop = end + self.offset - state.partial_start
        y = state.partial[..., start:stop]
        if y.shape[-1] < stop - start:
            y = F.pad(y, (0, stop - start - y.shape[-1]))
        state.partial = state.partial[..., stop:].clone()  # a copy: the chunk-sized base can go
        state.partial_start += stop
        state.emitted = end
        return y + self.bias[:, None] if self.bias is not None else y

    @property
    def buffers_whole_input(self) -> bool:
        return self.extender.holds_whole_input

    def steady(self) -> bool:
        """Past the first output frame: from there on each push emits, in both the final-sums
        and the guaranteed-length bounds, ``stride`` frames per input frame whatever the place."""
        return self.state.emitted > 0

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        self._accumulate(self.extender.push(chunk))
        final_raw = self.state.extended * self.spec.stride - self.offset
        at_least = self.spec.output_frames(self.extender.state.frames)
        return self._emit(min(final_raw, at_least))

    def _flush(self) -> torch.Tensor:
        self._accumulate(self.extender.flush())
        return self._emit(self.spec.output_frames(self.extender.state.frames))

    def _finish(self, chunk: torch.Tensor) -> torch.Tensor:
        self._ended()
        self._accumulate(cat([self.extender.push(chunk), self.extender.flush()]))
        return self._emit(self.spec.output_frames(self.extender.state.frames))


class StreamingConv1d(StreamingModule):
    """Exact streaming convolution: ``state.window`` keeps the extended inputs not yet consumed.

    Output q reads extended inputs ``q·s … q·s + d(K−1)``; every complete window is computed as
    soon as its last input arrives, and the inputs before the next window's start are dropped
    (with stride > receptive field, some not yet arrived: ``skip`` counts those)::

        extended j:  0 1 2 3 4 5 6 7          kernel 3, stride 2
        output q=0:  0 1 2
               q=1:      2 3 4
               q=2:          4 5 6    -> after input 4, q ≤ 1 is final; window keeps j ≥ 4
    """

    @dataclass
    class State:
        window: torch.Tensor | None = None  # extended inputs from the next window's start
        skip: int = 0  # extended inputs still to drop before the next window starts

    poolable = True

    def __init__(self, spec, weight: torch.Tensor, bias: torch.Tensor | None, tail: torch.Tensor | None = None):
        self.spec, self.weight, self.bias = spec, weight, bias
        self.weight4 = derived(weight, "channels_last", channels_last_weight)
        left, right = spec.extension()
        self.extender = Extender(spec.padding_mode, left, right, tail)
        self.children = (self.extender,)
        super().__init__()

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        state, spec = self.state, self.spec
        if state.skip:  # stride jumped past the inputs we had: drop those frames as they come
            dropped = min(state.skip, x.shape[-1])
            x, state.skip = x[..., dropped:], state.skip - dropped
            if state.skip:
                return self._empty(spec.out_channels)
        if state.window is not None and state.window.shape[-1]:
            x = cat([state.window, x]) if x.shape[-1] else state.window
        return self._windows(x)

    def push_activated(self, chunk: torch.Tensor, pointwise) -> torch.Tensor:
        """``push(pointwise.push(chunk))``, the activation written straight into this layer's
        input buffer after the frames it keeps, instead of into a new tensor then joined to
        them (a copy of every frame: 7-10 % of HiFi-GAN's time). Once the padding at the start
        is made, the extender passes frames through unchanged, so the order is the same."""
        state, frames = self.state, chunk.shape[-1]
        window = state.window
        if self._flushed or not self.extender.state.started or state.skip or window is None or not frames:
            return self.push(pointwise.push(chunk))
        kept = window.shape[-1]
        batch, channels = chunk.shape[:2]
        if frames_last_layout(chunk):
            joined = chunk.new_empty(batch, kept + frames, channels).transpose(1, 2)
        else:
            joined = chunk.new_empty(batch, channels, kept + frames)
        joined[..., :kept] = window
        pointwise.push_into(chunk, joined[..., kept:])
        self.extender.push(joined[..., kept:])  # counts the frames, keeps what a right extension copies
        return self._windows(joined)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """Every complete window of ``x`` (the kept frames, then the new) convolved."""
        state, spec = self.state, self.spec
        count = (x.shape[-1] - spec.receptive) // spec.stride + 1 if x.shape[-1] >= spec.receptive else 0
        state.window = x[..., count * spec.stride :].clone()  # a copy: x, chunk-sized, can go
        state.skip = max(0, count * spec.stride - x.shape[-1])
        if not count:
            return self._empty(spec.out_channels)
        used = x[..., : (count - 1) * spec.stride + spec.receptive]
        if self.weight4 is not None:
            return conv_frames_last(used, self.weight4, self.bias, spec.stride, spec.dilation, spec.groups)
        if spec.dilation > 1 and used.device.type == "cpu" and used.numel() <= NATIVE_ELEMENTS:
            return dilated_as_matmul(used, self.weight, self.bias, spec)
        return F.conv1d(used, self.weight, self.bias, spec.stride, 0, spec.dilation, spec.groups)

    @property
    def buffers_whole_input(self) -> bool:
        return self.extender.holds_whole_input

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        return self._convolve(self.extender.push(chunk))

    def _flush(self) -> torch.Tensor:
        return self._convolve(self.extender.flush())

    def _finish(self, chunk: torch.Tensor) -> torch.Tensor:
        self._ended()
        return self._convolve(cat([self.extender.push(chunk), self.extender.flush()]))
