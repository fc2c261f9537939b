"""Brute-force references straight from the definitions in README.md ("Padding modes"), independent of the engine's code paths."""

from contextlib import contextmanager

import numpy as np

NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_frames(x, left, right, mode):
    """``x [..., frames]`` extended per README.md's padding modes: ``numpy.pad`` for PyTorch's
    four; ``reflect_zeros`` as EnCodec's ``pad1d`` writes it (zeros appended to a signal no longer
    than the padding, reflected, the zeros cut off again)."""
    widths = [(0, 0)] * (x.ndim - 1) + [(left, right)]
    if mode != "reflect_zeros":
        return np.pad(x, widths, mode=NUMPY_MODE[mode])
    frames, extra = x.shape[-1], 0
    if frames <= max(left, right):
        extra = max(left, right) - frames + 1
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])
    padded = np.pad(x, widths, mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


def brute_conv_transpose1d(x, weight, bias, spec, out_frames):
    """y[c_out, t] = bias + Σ_{i,k: i·s + k·d − p = t} Σ_{c_in in group} x_ext[c_in, i]·w[c_in, c_out', k]
    (p: the padding, or the left trim: frames cut from the start)."""
    c_in, frames = x.shape
    p = spec.trim[0] if getattr(spec, "trim", None) is not None else spec.padding
    margin = 4 * (spec.dilation * spec.kernel_size + max(p, spec.padding)) + 8
    x_ext = np.pad(x, ((0, 0), (margin, margin)), mode=NUMPY_MODE[spec.padding_mode])
    c_out_g = spec.out_channels // spec.groups
    c_in_g = c_in // spec.groups
    y = np.zeros((spec.out_channels, out_frames))
    for t in range(out_frames):
        for co in range(spec.out_channels):
            group = co // c_out_g
            total = 0.0 if bias is None else bias[co]
            for k in range(spec.kernel_size):
                num = t + p - k * spec.dilation
                if num % spec.stride:
                    continue
                i = num // spec.stride
                for ci in range(group * c_in_g, (group + 1) * c_in_g):
                    total += x_ext[ci, i + margin] * weight[ci, co % c_out_g, k]
            y[co, t] = total
    return y


def brute_conv1d(x, weight, bias, spec, out_frames):
    """Extend by padding (per end, or [left, right]) per numpy.pad, then
    y[c_out, q] = bias + Σ_k Σ_c_in x_ext[c_in, q·s + k·d]·w."""
    c_in, frames = x.shape
    left, right = tuple(spec.padding) if isinstance(spec.padding, (list, tuple)) else (spec.padding, spec.padding)
    x_ext = pad_frames(x, left, right, spec.padding_mode)
    c_out_g = spec.out_channels // spec.groups
    c_in_g = c_in // spec.groups
    y = np.zeros((spec.out_channels, out_frames))
    for q in range(out_frames):
        for co in range(spec.out_channels):
            group = co // c_out_g
            total = 0.0 if bias is None else bias[co]
            for k in range(spec.kernel_size):
                for cl in range(c_in_g):
                    total += x_ext[group * c_in_g + cl, q * spec.stride + k * spec.dilation] * weight[co, cl, k]
            y[co, q] = total
    return y


def stream_chunks(stream, x, sizes, lengths=None):
    """Push ``x`` through ``stream`` in chunks of ``sizes`` (cycled), flush, join on the last axis
    (``lengths``: a list given the frames each push handed out)."""
    parts, pos, i = [], 0, 0
    while pos < x.shape[-1]:
        n = sizes[i % len(sizes)]
        parts.append(stream.push(x[..., pos : pos + n]))
        if lengths is not None:
            lengths.append(parts[-1].shape[-1])
        pos, i = pos + n, i + 1
    parts.append(stream.flush())
    return np.concatenate(parts, axis=-1)


@contextmanager
def slice_elements(elements):
    """The streams' ``SLICE_ELEMENTS`` set to ``elements`` inside the block (None: unchanged),
    so that small test chunks go on through the later layers in slices of frames."""
    from convt_audio.core import streaming

    with module_values(streaming, SLICE_ELEMENTS=elements or streaming.SLICE_ELEMENTS):
        yield


@contextmanager
def module_values(module, **values):
    """``module``'s globals set to ``values`` inside the block and put back after it, even when
    it fails (the size thresholds a test lowers to send a call down one path)."""
    saved = {name: getattr(module, name) for name in values}
    try:
        for name, value in values.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


@contextmanager
def one_thread(winograd_everywhere=False):
    """One torch thread inside the block, as a file's halves and live streams run; with
    ``winograd_everywhere`` every stride-1 ungrouped float32 convolution of any size takes the
    Winograd path (its size thresholds lifted), not only those where it pays."""
    import torch

    from convt_audio.kinds import conv_torch

    lifted = dict(WINOGRAD_KERNEL=1, WINOGRAD_CHANNELS=1, WINOGRAD_FRAMES=1, WINOGRAD_MAX_WEIGHTS=1 << 40)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with module_values(conv_torch, **(lifted if winograd_everywhere else {})):
            yield
    finally:
        torch.set_num_threads(threads)
