"""``convt-audio mel``: one audio file's features, as a config's ``features:`` recipe makes
them (:mod:`convt_audio.features`), into a ``.npy`` written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .features import MelStream


def write_mel(source, dest, config, overwrite: bool = False) -> dict:
    """The features ``config`` decodes, computed from an audio file into a ``(n_mels, frames)``
    float32 ``.npy`` (written whole or not at all). Several channels are averaged; an input at
    another rate is first resampled to the recipe's (alias-free, as ``run -r``)."""
    from .atomic import atomic_path
    from .audio_io import TENSOR_SUFFIXES, open_source
    from .errors import AudioError, UsageError, option

    recipe = config.features
    if recipe is None:
        raise UsageError(f"{config.name}: declares no features: section, so there is no recipe to compute")
    source, dest = Path(source), Path(dest)
    if dest.suffix.lower() != ".npy":
        raise UsageError(f"{option('output', dest)}: features are written as .npy")
    if source.suffix.lower() in (".npy", *TENSOR_SUFFIXES):
        raise UsageError(f"{source}: is already a feature array; mel takes audio")
    if dest.exists():
        if dest.resolve() == source.resolve():
            raise UsageError(f"{dest}: is the input; an input is never overwritten")
        if not overwrite:
            raise AudioError(f"{dest}: already exists (pass {option('overwrite')})")
    with open_source(source) as audio:
        resampler = None
        if audio.rate != recipe.sample_rate:
            from .design import resampler_for
            from .engines import build_engine

            design, params = resampler_for(audio.rate, recipe.sample_rate)
            resampler = build_engine(design, params, "cpu", "float32").open_stream(1)
        samples = audio.frames if resampler is None else resampler.engine.output_frames(audio.frames)
        frames = recipe.frames_for(samples)
        if frames < 1 or samples <= recipe.pad:
            raise AudioError(f"{source}: too short for one mel frame ({samples} samples at {recipe.sample_rate} Hz)")
        stream = MelStream(recipe)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest, overwrite=overwrite) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(recipe.n_mels, frames))
            done = 0

            def put(block: np.ndarray) -> None:
                nonlocal done
                out[:, done : done + block.shape[1]] = block
                done += block.shape[1]

            for block in audio.blocks(1 << 16):
                mono = block.mean(axis=0, dtype=np.float32)
                if resampler is not None:
                    mono = resampler.push(mono[None, None])[0, 0]
                put(stream.push(mono))
            if resampler is not None:
                put(stream.push(resampler.flush()[0, 0]))
            put(stream.flush())
            out.flush()
            if done != frames:  # pragma: no cover - the frame count is the recipe's arithmetic
                raise AssertionError(f"{done} mel frames written, {frames} planned")
    return {"input": str(source), "output": str(dest), "frames": frames, "n_mels": recipe.n_mels}
