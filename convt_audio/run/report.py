"""Facts about a stack for ``convt-audio info``: rates, look-ahead, receptive field, FLOPs, memory.

Everything here is computed from the specs alone (no torch, no weights): each layer kind's
``input_span`` says which input frames an output frame reads, so look-ahead and receptive field
hold for blocks as for plain chains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from ..core.shapes import (
    flops_of,
    input_channels,
    leading_convs,
    leaves,
    out_channels_of,
    parameter_count,
    rate_of,
    span_through,
    stride_period,
)


@dataclass(frozen=True)
class StackFacts:
    rate_factor: Fraction  # output rate / input rate
    lookahead_input_frames: Fraction  # how far past an output frame's time its inputs reach
    receptive_input_frames: int  # input frames one output frame depends on
    flops_per_input_frame: int
    parameters: int


def lookahead(specs: Sequence) -> Fraction:
    """Input frames past output frame t's time (``t / rate``) that t still reads (≥ 0).

    A zero-delay interpolator reads ahead by half its kernel; a causal stack by 0.
    """
    rate = rate_of(specs)
    base = 16 * stride_period(specs)
    ahead = max(span_through(specs, t, t)[1] - Fraction(t) / rate for t in range(base, base + stride_period(specs)))
    return max(ahead, Fraction(0))


def receptive_field(specs: Sequence) -> int:
    """Input frames one output frame depends on (the widest over the output phases)."""
    base = 16 * stride_period(specs)
    return max(hi - lo + 1 for lo, hi in (span_through(specs, t, t) for t in range(base, base + stride_period(specs))))


def describe(specs: Sequence, parameters: int | None = None) -> StackFacts:
    """The stack's rate factor, look-ahead, receptive field and cost, from its specs."""
    if parameters is None:
        parameters = sum(parameter_count(spec) for spec in specs)
    return StackFacts(rate_of(specs), lookahead(specs), receptive_field(specs), math.ceil(flops_of(specs)), parameters)


def _number(value: Fraction):
    """A Fraction as JSON wants it: an int when whole, else a float."""
    return int(value) if value.denominator == 1 else float(value)


def buffering(specs: Sequence) -> dict[str, str]:
    """What each convolution holds back beyond its window, by YAML path (padding modes).

    A ``circular`` convolution needs the signal's last frames before its first output: a
    leading one (only pointwise layers before it) is given them by a seek in the input file;
    any other holds its whole input until the end.
    """
    leading = {id(spec) for spec in leading_convs(specs)}
    held = {}
    for spec in leaves(specs):
        what = spec.holds(id(spec) in leading)
        if what:
            held[spec.where] = what
    return held


def layer_rows(specs: Sequence) -> list[dict]:
    """One row per layer and block, depth first (a block before its layers), numbers as numbers."""
    held = buffering(specs)
    rows = []

    def visit(sequence: Sequence, depth: int, c_in: int | None) -> None:
        for spec in sequence:
            c_out = spec.out_channels_for(c_in)
            row = {
                "path": spec.where,
                "depth": depth,
                "type": spec.type,
                "channels_in": c_in,
                "channels_out": c_out,
                "rate_factor": _number(spec.rate()),
                "lookahead_input_frames": _number(lookahead([spec])),
                "flops_per_input_frame": _number(Fraction(math.ceil(flops_of([spec])))),
                "params": parameter_count(spec),
            }
            row.update(spec.info_columns())
            if spec.where in held or "buffers" in row:
                row["buffers"] = held.get(spec.where, "")
            rows.append(row)
            for child in spec.sequences():
                visit(child, depth + 1, c_in)
            c_in = c_out

    visit(specs, 0, input_channels(specs))
    return rows


CHANNEL_MODES = {
    "joint": "the file's channels are the first layer's in_channels; the output has the last layer's out_channels",
    "per_channel": "each of the file's channels runs through the stack on its own (in_channels 1)",
    "auto": "joint when the file has as many channels as the first layer takes, else each channel on its own "
    "when that is 1",
}


def engine_plan(config, device: str = "auto") -> dict:
    """The engine :func:`~convt_audio.model.engines.choose_engine` picks, and how each layer runs
    (without importing torch)."""
    from ..model.engines import choose_engine
    from ..resampling.chain import resampler_stages, stage_kernel

    if choose_engine(config, device) == "numpy-resampler":
        how = {
            "fft": "an FFT (overlap-save, the whole kernel's spectrum)",
            "polyphase": "matrix products computing only the output samples kept",
        }
        kernels, parts = {}, []
        for number, stage in enumerate(resampler_stages(config.layers), 1):
            kind = stage_kernel(stage)
            kernels[stage[0].where] = kind
            ratio = f"x{stage[0].stride}" if len(stage) == 1 else f"{stage[0].stride}/{stage[1].stride}"
            parts.append(f"stage {number} ({ratio}) by {how[kind]}")
        return {
            "engine": "numpy-resampler",
            "device": "cpu",
            "kernels": kernels,
            "how": f"NumPy in float64: {'; '.join(parts)}; for float32 outputs of a chain that rejects "
            "everything beyond the lower Nyquist frequency (checked on load), all stages at once: one FFT "
            "pair per window; torch is not loaded",
        }
    target = "cuda if available, else cpu" if device == "auto" else device
    kernels = {leaf.where: leaf.computed_as() for leaf in leaves(config.layers) if leaf.computed_as()}
    return {
        "engine": "torch",
        "device": target,
        "kernels": kernels,
        "how": "torch, exact streaming per layer (transposed convolutions as conv_transpose1d, or as a "
        "Conv1d of out·stride outputs interleaved: polyphase)",
    }


def summary(config, input_rate, weights_path, weights_status: str) -> dict:
    """Every fact ``info`` shows, JSON-ready, for a config and an input rate (Hz, maybe fractional)."""
    specs = config.layers
    facts = describe(specs)
    rate = Fraction(input_rate)
    out_rate = rate * facts.rate_factor
    rows = layer_rows(specs)
    plan = engine_plan(config)
    for row in rows:
        if row["path"] in plan.get("kernels", {}):
            row["computed_as"] = plan["kernels"][row["path"]]
    whole = [path for path, what in buffering(specs).items() if what == "whole input"]
    return {
        "config": config.source,
        "name": config.name,
        "description": config.description,
        "rate_factor": _number(facts.rate_factor),
        "input_rate": _number(rate),
        "output_rate": _number(out_rate),
        "input_rate_from_config": config.feature_rate() is not None,
        "in_channels": input_channels(specs),
        "out_channels": out_channels_of(specs, input_channels(specs)),
        "lookahead_input_frames": _number(facts.lookahead_input_frames),
        "lookahead_output_frames": _number(facts.lookahead_input_frames * facts.rate_factor),
        "lookahead_seconds": float(facts.lookahead_input_frames / rate),
        "receptive_field_input_frames": facts.receptive_input_frames,
        "receptive_field_output_frames": _number(facts.receptive_input_frames * facts.rate_factor),
        "receptive_field_seconds": float(facts.receptive_input_frames / rate),
        # a recurrent layer (lstm) carries the whole past beyond the convolutions' field
        "recurrent": any(leaf.recurrent for leaf in leaves(specs)),
        "condition": config.condition.describe() if config.condition else None,
        "condition_default": config.condition.default if config.condition else None,
        "parameters": facts.parameters,
        "flops_per_input_frame": facts.flops_per_input_frame,
        "flops_per_second_of_audio": _number(facts.flops_per_input_frame * rate),
        "channels": config.channels,
        "channels_explained": CHANNEL_MODES[config.channels],
        "engine": plan["engine"],
        "device": plan["device"],
        "engine_explained": plan["how"],
        "weights": str(weights_path) if weights_path else None,
        "weights_status": weights_status,
        "buffers_whole_input": whole,
        "layers": rows,
    }


def weights_status(config, weights, spelling=None) -> tuple[str, bool, str | None]:
    """``info``'s weights line: (status, whether the file fits, the layout it was read by);
    ``spelling`` spells options as the front end does (:func:`~convt_audio.core.errors.render`)."""
    from ..model.weights import check_weights, needs_weights

    if weights is None:
        needed = needs_weights(config)
        return (
            ("none given (pass -w WEIGHTS to check a file against the config)" if needed else "not needed"),
            True,
            None,
        )
    try:
        unused, layout = check_weights(config, weights)
    except Exception as exc:  # noqa: BLE001 - the status line says what is wrong, exit 2 follows
        text = exc.render(spelling) if hasattr(exc, "render") else str(exc)
        return text.splitlines()[0], False, None
    return (f"ok, {len(unused)} tensor(s) unused" if unused else "ok"), True, layout


def info_lines(facts: dict, config, rate_given: bool, status: str, weights_ok: bool) -> list[str]:
    """``info``'s lines below the layer table, from :func:`summary`'s facts (options are
    :func:`~convt_audio.core.errors.option` marks, spelt by the front end)."""
    from ..core.errors import option

    rate_text = f"{facts['input_rate']:g} Hz" + (
        " (the config's feature rate)" if facts["input_rate_from_config"] and not rate_given else ""
    )
    layout = facts.get("weights_layout")
    lines = [
        f"rate:            ×{facts['rate_factor']:g} ({rate_text} -> {facts['output_rate']:g} Hz)",
        f"channels:        {facts['in_channels']} in, {facts['out_channels']} out; {config.channels}: "
        f"{facts['channels_explained']}",
        f"engine:          {facts['engine']} on {facts['device']}: {facts['engine_explained']}",
        f"look-ahead:      {facts['lookahead_input_frames']:g} input frames "
        f"({facts['lookahead_output_frames']:g} output frames, {facts['lookahead_seconds'] * 1000:.2f} ms)",
        f"receptive field: {facts['receptive_field_input_frames']} input frames "
        f"({facts['receptive_field_output_frames']:g} output frames, {facts['receptive_field_seconds'] * 1000:.2f} ms)"
        + ("; its LSTM also carries the whole past" if facts["recurrent"] else ""),
        f"parameters:      {facts['parameters']:,}",
        f"cost:            {facts['flops_per_input_frame']:,} FLOP per input frame, "
        f"{facts['flops_per_second_of_audio'] / 1e9:.3f} GFLOP per second of audio",
        f"weights:         {(facts['weights'] or '(none)') + ': ' + status if weights_ok else status}"
        + (f" (layout {layout})" if layout else ""),
    ]
    if config.features is not None:
        lines.append(f"features:        {config.features.describe()} (convt-audio mel computes them)")
    if facts["condition"]:
        default = facts["condition_default"]
        chosen = "none: a run must choose" if default is None else f"{default:g}"
        lines.append(f"condition:       {facts['condition']}; chosen with {option('condition')} (default {chosen})")
    if facts["buffers_whole_input"]:
        lines.append(
            f"memory:          {', '.join(facts['buffers_whole_input'])} hold their whole "
            f"input (circular padding past the leading convolutions)"
        )
    return lines


def file_warnings(report, quiet: bool = False) -> list[str]:
    """The warnings a finished file gets: clipping and NaN/Inf outputs (even when quiet: the
    file was changed), NaN/Inf inputs replaced (not when quiet). Options are :func:`option`
    marks, spelt by the front end."""
    from ..core.errors import one_line, option

    lines = []
    if report.clipped_samples:
        share = report.clipped_samples / max(1, report.frames_out * report.channels_out)
        lines.append(
            f"{one_line(report.output)}: {report.clipped_samples} samples clipped ({100 * share:.3g} %); "
            f"{option('clip', 'rescale')} scales the file to fit, {option('subtype', 'FLOAT')} keeps every value"
        )
    if report.non_finite_output_samples:
        written = " written as 0 or ±1" if report.subtype not in ("FLOAT", "DOUBLE") else ""
        lines.append(
            f"{one_line(report.output)}: {report.non_finite_output_samples} NaN/Inf output samples (an overflow){written}"
        )
    if report.non_finite_input_samples_zeroed and not quiet:
        lines.append(
            f"{one_line(report.input)}: {report.non_finite_input_samples_zeroed} NaN/Inf input samples replaced with 0"
        )
    return lines


def file_line(report, verbose: bool = False) -> str | None:
    """A finished file's line: what was written (with the engine and dither when ``verbose``), or
    why it was skipped; None for other statuses."""
    from ..core.errors import one_line

    if report.status == "ok":
        gain = f", scaled by {report.gain_db:+.2f} dB" if report.gain_db else ""
        more = ""
        if verbose:
            dither = ", TPDF-dithered" if report.dithered else ""
            more = f"; {report.engine} engine on {report.device}, {report.subtype}{dither}"
        return (
            f"{one_line(report.input)} -> {one_line(report.output)} ({report.seconds:.2f} s "
            f"at {report.output_rate} Hz, {report.speed_x_realtime:.1f}x real time{gain}{more})"
        )
    if report.status == "skipped":
        why = f"{one_line(report.output)} exists" if report.reason == "output exists" else report.reason
        return f"{one_line(report.input)}: skipped, {why}"
    return None


def batch_line(total: int, result) -> str:
    """The batch's closing count."""
    return f"{total} inputs: {result.written} written, {result.skipped} skipped, {result.failed} failed"


def builtin_lines() -> list[str]:
    """``configs``'s entries: each built-in config's name and description, then what goes in,
    what comes out, and whether weights ship."""
    from ..core.errors import one_line
    from ..model.config import DEFAULT_CONFIG, builtin_configs, load_config

    entries = []
    for name in builtin_configs():
        cfg = load_config(name)
        default = " (default)" if name == DEFAULT_CONFIG else ""
        feature_rate = cfg.feature_rate()
        if feature_rate is not None:
            what = f"{cfg.in_channels}-band features"
            if cfg.layers[0].takes_codes:  # a codec's decoder
                what = f"integer codes (up to {cfg.in_channels} rows)"
                what += f" or the {cfg.latent_channels}-channel latent" if cfg.latent_channels else ""
            rate = f"{float(feature_rate):g} Hz"
            shape = f"in: {what} at {rate} (.npy, .pt); out: audio at {cfg.output_sample_rate} Hz"
        else:
            shape = f"in: audio at any rate; out: ×{cfg.rate_factor()} the rate"
        weights = "weights included" if cfg.weights else "no weights: pass -w CHECKPOINT"
        entries.append(one_line(f"{name}{default}: {cfg.description}") + f"\n    {shape}; {weights}")
    return entries
