"""Real-time factors on a CUDA device: the learned stack and HiFi-GAN V1, convt-audio against
the model's own forward on the same device.

Prints, in one run:
1. in process, per model: seconds of compute per second of audio (RTF) of the streaming engine
   (``convt_audio.load(...).stream()``) at several chunk sizes (``auto`` marked) and dtypes,
   against the module's eager forward and its TorchScript on the whole input (weight norm
   removed, as the authors' inference does), synchronised, median of 5 after a warm-up; outputs
   compared; the module runs in exact float32 (no TF32), as convt-audio does, and once with
   PyTorch's default TF32 convolutions for reference;
2. whole processes: ``convt-audio run --device cuda`` (start-up, reading and writing included)
   against a plain script that loads the module, runs it on the whole input (exact float32) and
   writes the WAV;
3. live pushes of 1, 8 and 32 mel frames, HiFi-GAN V1: ``stream()`` and ``stream(graphs=True)``
   (CUDA graphs), per-push median and p95, against the module's forward on the same utterance;
4. a batch of many short files (``--files``, default 1000 mel files of 5 s, HiFi-GAN V1):
   ``convt-audio run DIR --device cuda`` (its files streamed 16 at a time as one batch, the
   default on a GPU) and ``--slots 1`` (one file at a time), against a plain script looping the
   module over the files; whole processes, one run each, outputs compared.

Usage: python benchmarks/gpu.py [--device cuda] [--seconds 60] [--models learned,hifigan-v1]
       [--files 1000] [--quick]
(``--device cpu --quick`` checks the script itself on a machine without CUDA.)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import convt_audio, median_process, scratch, table  # noqa: E402
from decoder import LAYERS, sequential  # noqa: E402
from reference_vocoders import checkpoint_of, randomise, reference  # noqa: E402

import convt_audio as api  # noqa: E402

PLAIN = """
import sys, warnings, numpy as np, soundfile as sf, torch
sys.path.insert(0, sys.argv[4])
sys.path.insert(0, sys.argv[5])
warnings.simplefilter("ignore")
from gpu import exact_float32, plain_module
exact_float32()
x = np.load(sys.argv[1]) if sys.argv[1].endswith(".npy") else sf.read(sys.argv[1], dtype="float32", always_2d=True)[0].T
module, rate = plain_module(sys.argv[6], sys.argv[3], sys.argv[7])
with torch.inference_mode():
    y = module(torch.from_numpy(np.ascontiguousarray(x)).to(sys.argv[7])[None])[0].float().cpu()
sf.write(sys.argv[2], y.numpy().T, rate, subtype="FLOAT")
"""


def strip_weight_norm(module: torch.nn.Module) -> torch.nn.Module:
    """Fold weight norm into plain weights, as the authors' inference scripts do."""
    for child in module.modules():
        try:
            torch.nn.utils.remove_weight_norm(child)
        except (ValueError, AttributeError):
            pass
    return module


def plain_module(model: str, weights: str, device: str):
    """The module a user would run: (module on ``device``, output rate)."""
    if model == "learned":
        from safetensors.torch import load_file

        seq = sequential()
        seq.load_state_dict(load_file(weights))
        return seq.to(device), 48000
    from reference_vocoders import load_checkpoint

    module = load_checkpoint(model, reference(model), weights)
    return strip_weight_norm(module).to(device), 22050


def exact_float32() -> None:
    """No TF32 in convolutions or matmuls: float32 as on the CPU, as convt-audio runs it."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


LOOP = """
import pathlib, sys, warnings, numpy as np, soundfile as sf, torch
sys.path.insert(0, sys.argv[4])
sys.path.insert(0, sys.argv[5])
warnings.simplefilter("ignore")
from gpu import exact_float32, plain_module
exact_float32()
module, rate = plain_module(sys.argv[6], sys.argv[3], sys.argv[7])
out = pathlib.Path(sys.argv[2])
out.mkdir(exist_ok=True)
with torch.inference_mode():
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.npy")):
        y = module(torch.from_numpy(np.load(path)).to(sys.argv[7])[None])[0].float().cpu()
        sf.write(str(out / (path.stem + ".wav")), y.numpy().T, rate, subtype="FLOAT")
"""


def synced(device: str):
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return sync


def median_seconds(fn, sync, repeats: int) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def prepare(model: str, work: Path, seconds: float) -> tuple[Path, Path, np.ndarray, float]:
    """(config or built-in name, weights, input (channels, frames), audio seconds)."""
    if model == "learned":
        config = work / "learned.yaml"
        config.write_text(yaml.safe_dump({"name": "learned-x32", "layers": LAYERS}))
        torch.manual_seed(0)
        from safetensors.torch import save_file

        weights = work / "learned.safetensors"
        save_file({k: v.contiguous() for k, v in sequential().state_dict().items()}, str(weights))
        rate = 1500
        n = int(seconds * rate)
        t = np.arange(n) / rate
        rng = np.random.default_rng(0)
        x = (0.3 * np.sin(2 * np.pi * 100 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)[None]
        return config, weights, x, n * 32 / 48000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generator = randomise(reference(model), seed=0)
    weights = work / f"{model}.pt"
    torch.save(checkpoint_of(model, generator), weights)
    frames = int(np.ceil(seconds * 22050 / 256))
    rng = np.random.default_rng(0)
    t = np.arange(frames, dtype=np.float32)
    bands = np.arange(80, dtype=np.float32)[:, None]
    mel = -6 + 3 * np.sin(t / 17 + bands / 9) * np.cos(bands / 23) + 0.5 * rng.standard_normal((80, frames))
    return Path(model), weights, mel.astype(np.float32), frames * 256 / 22050


def in_process(model: str, config, weights, x, audio_s, device, dtypes, repeats) -> None:
    sync = synced(device)
    module, _ = plain_module(model, str(weights), device)
    xt = torch.from_numpy(x)[None].to(device)
    rows = []
    with torch.inference_mode():
        tf32 = median_seconds(lambda: module(xt), sync, repeats)  # PyTorch's default: cuDNN may use TF32
        exact_float32()
        want = module(xt)[0].float().cpu().numpy()
        eager = median_seconds(lambda: module(xt), sync, repeats)
        script = torch.jit.trace(module, xt[..., :64])
        scripted = median_seconds(lambda: script(xt), sync, repeats)
    rows.append(["the module, eager, TF32 allowed (default)", "-", "tf32", f"{tf32:.3f}", f"{tf32 / audio_s:.4f}"])
    rows[-1] += [f"{tf32 / eager:.2f}", "-"]
    rows.append(
        ["the module, eager, whole input", "-", "float32", f"{eager:.3f}", f"{eager / audio_s:.4f}", "1.00", "-"]
    )
    rows.append(
        [
            "the module's TorchScript, whole input",
            "-",
            "float32",
            f"{scripted:.3f}",
            f"{scripted / audio_s:.4f}",
            f"{scripted / eager:.2f}",
            "-",
        ]
    )
    module = None  # free the device memory before the engine runs
    for dtype in dtypes:
        ours = api.load(str(config), str(weights), device=device, dtype=dtype)
        auto = ours.engine.preferred_chunk()
        # up to 16x the auto block: HiFi-GAN V1's 60 s (5168 frames) is then one block, the stream's
        # floor against the module's whole forward, from which to choose the CUDA default
        sizes = sorted({auto // 16, auto // 4, auto, auto * 4, auto * 16} - {0})
        for size in sizes:

            def streamed(size=size, ours=ours):
                stream = ours.stream()
                parts = [stream.push(x[:, i : i + size]) for i in range(0, x.shape[-1], size)]
                parts.append(stream.flush())
                return np.concatenate(parts, axis=-1)

            got = streamed()
            scale = max(1.0, float(np.abs(want).max()))
            delta = float(np.abs(got - want).max()) / scale if got.shape == want.shape else float("inf")
            t = median_seconds(streamed, sync, repeats)
            rows.append(
                [
                    "convt-audio stream" + (" (auto chunk)" if size == auto else ""),
                    size,
                    dtype,
                    f"{t:.3f}",
                    f"{t / audio_s:.4f}",
                    f"{t / eager:.2f}",
                    f"{delta:.1e}",
                ]
            )
        ours = None
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(f"\n{model}: {audio_s:.1f} s of audio, in process on {device}, median of {repeats}")
    print(table(rows, ["what", "chunk", "dtype", "seconds", "RTF", "× eager", "max |Δ| / scale"]))


def whole_processes(model: str, config, weights, x, audio_s, device, work: Path, repeats: int) -> None:
    source = work / (f"{model}-in.npy" if model != "learned" else "learned-in.wav")
    if model == "learned":
        import soundfile as sf

        sf.write(str(source), x[0], 1500, subtype="FLOAT")
    else:
        np.save(source, x)
    (work / "plain.py").write_text(PLAIN)
    plain = [sys.executable, str(work / "plain.py"), str(source), str(work / "p.wav"), str(weights)]
    plain += [str(HERE.parent / "tests"), str(HERE), model, device]
    rows = []
    t_plain, rss_plain = median_process(plain, repeats)
    rows.append(["plain script: the module on the whole input", f"{t_plain:.2f}", f"{t_plain / audio_s:.4f}", "1.00"])
    for dtype in ("float32", "bfloat16"):
        ours = [convt_audio(), "run", str(source), "-c", str(config), "-w", str(weights), "--device", device]
        ours += ["--dtype", dtype, "-o", str(work / f"c-{dtype}.wav"), "--subtype", "FLOAT", "-y", "-q"]
        t, rss = median_process(ours, repeats)
        rows.append([f"convt-audio run --device {device} --dtype {dtype}", f"{t:.2f}", f"{t / audio_s:.4f}"])
        rows[-1].append(f"{t / t_plain:.2f}")
    import soundfile as sf

    a, _ = sf.read(str(work / "p.wav"), dtype="float32")
    b, _ = sf.read(str(work / "c-float32.wav"), dtype="float32")
    delta = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    print(f"\n{model}: {audio_s:.1f} s of audio, whole processes on {device}, median of {repeats}")
    print(table(rows, ["process", "seconds", "RTF", "× plain"]))
    print(f"float32 outputs equal: {delta <= 1e-4} (max |Δ| {delta:.2e})")


def live_pushes(model: str, config, weights, x, device: str, seconds: float = 5.0) -> None:
    """A live stream on the device (a TTS server pushing mel frames as they come): pushes of 1,
    8 and 32 frames through ``stream()`` and ``stream(graphs=True)`` (each steady push shape
    replayed as one CUDA graph; on the CPU through TorchScript), per push the median
    and p95 milliseconds, the real-time factor against the module's whole forward on the same
    frames, and the largest error against ``model(x)``."""
    import statistics

    from convt_audio.api import Stream

    frames = min(x.shape[-1], int(seconds * 22050 / 256))
    mel = np.ascontiguousarray(x[:, :frames])
    audio_s = frames * 256 / 22050
    sync = synced(device)
    module, _ = plain_module(model, str(weights), device)
    with torch.inference_mode():
        eager = median_seconds(lambda: module(torch.from_numpy(mel)[None].to(device)), sync, 5)
    module = None
    ours = api.load(str(config), str(weights), device=device)
    want = ours(mel)
    scale = max(1.0, float(np.abs(want).max()))
    graphs = "cuda" if device.startswith("cuda") else "script"  # as model.stream(graphs=True) picks
    rows = []
    for size in (1, 8, 32):
        for label, backend in (("stream()", None), (f"stream(graphs=True) [{graphs}]", graphs)):
            stream = Stream(ours, backend)
            for _run in ("warm-up", "timed"):  # reset keeps the steps captured in the warm-up
                stream.reset()
                times, parts = [], []
                start = time.perf_counter()
                for i in range(0, frames, size):
                    t = time.perf_counter()
                    parts.append(stream.push(mel[:, i : i + size]))
                    times.append(time.perf_counter() - t)
                parts.append(stream.flush())
                sync()
                total = time.perf_counter() - start
            got = np.concatenate(parts, axis=-1)
            delta = float(np.abs(got - want).max()) / scale if got.shape == want.shape else float("inf")
            graphed = stream._stream.streamer if backend else None
            for why in getattr(graphed, "untraceable", {}).values():
                print(f"{size}-frame pushes: a step not captured: {why}")
            rows.append(
                [
                    size,
                    label,
                    "-" if graphed is None else graphed.captured,
                    f"{1000 * statistics.median(times):.2f}",
                    f"{1000 * float(np.percentile(times, 95)):.2f}",
                    f"{total / audio_s:.4f}",
                    f"{total / eager:.2f}",
                    f"{delta:.1e}",
                ]
            )
    print(
        f"\n{model}: live pushes of a {audio_s:.1f} s utterance on {device} (the module's whole forward {eager:.4f} s)"
    )
    headers = ["push frames", "stream", "steps captured", "median ms", "p95 ms", "RTF", "× module", "max |Δ| / scale"]
    print(table(rows, headers))


def many_files(model: str, weights, device: str, work: Path, files: int, seconds: float) -> None:
    """``files`` mel files of ``seconds`` each: the plain loop against ``convt-audio run DIR``."""
    import shutil

    import soundfile as sf

    folder = work / "files"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    frames = int(np.ceil(seconds * 22050 / 256))
    bands = np.arange(80, dtype=np.float32)[:, None]
    for i in range(files):
        t = np.arange(frames, dtype=np.float32) + 97 * i
        mel = -6 + 3 * np.sin(t / 17 + bands / 9) * np.cos(bands / 23) + 0.5 * rng.standard_normal((80, frames))
        np.save(folder / f"{i:05d}.npy", mel.astype(np.float32))
    (work / "loop.py").write_text(LOOP)
    audio_s = files * frames * 256 / 22050
    plain = [sys.executable, str(work / "loop.py"), str(folder), str(work / "out-plain"), str(weights)]
    plain += [str(HERE.parent / "tests"), str(HERE), model, device]
    ours = [convt_audio(), "run", str(folder), "-c", model, "-w", str(weights), "--device", device]
    ours += ["--subtype", "FLOAT", "-q", "-o"]
    batched = "convt-audio run DIR --slots 16 (" + (
        "the default on a GPU)" if device.startswith("cuda") else "not the CPU's)"
    )
    runs = [
        ("plain script: the module over each file in turn", plain, "out-plain"),
        (batched, [*ours, str(work / "out-slots"), "--slots", "16"], "out-slots"),
        (
            "convt-audio run DIR --slots 1 (one file at a time)",
            [*ours, str(work / "out-one"), "--slots", "1"],
            "out-one",
        ),
    ]
    rows, first = [], None
    for label, command, out in runs:
        shutil.rmtree(work / out, ignore_errors=True)
        wall, rss = median_process(command, 1)
        first = first or wall
        assert len(list((work / out).glob("*.wav"))) == files, f"{label}: not every file was written"
        rows.append([label, f"{wall:.2f}", f"{wall / audio_s:.5f}", f"{first / wall:.2f}", rss // 1024])
    worst, step = 0.0, max(1, files // 50)
    for i in range(0, files, step):
        a = sf.read(str(work / "out-plain" / f"{i:05d}.wav"), dtype="float32")[0]
        for out in ("out-slots", "out-one"):
            b = sf.read(str(work / out / f"{i:05d}.wav"), dtype="float32")[0]
            worst = max(worst, float(np.abs(a - b).max()) if a.shape == b.shape else float("inf"))
    print(
        f"\n{model}: {files} files of {seconds:g} s ({audio_s:.0f} s of audio), whole processes on {device}, one run each"
    )
    print(table(rows, ["process", "seconds", "RTF", "× faster than the loop", "peak RSS MB"]))
    print(f"max |Δ| against the loop, {'every file' if step == 1 else f'every {step}th file'}: {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--models", default="learned,hifigan-v1", help="comma-separated: learned, hifigan-v1")
    parser.add_argument("--files", type=int, default=1000, help="short files of the batch part (0: none)")
    parser.add_argument("--file-seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="2 s, 2 repeats, 12 files: checks the script")
    args = parser.parse_args()
    seconds, repeats = (2.0, 2) if args.quick else (args.seconds, 5)
    files = min(args.files, 12) if args.quick else args.files
    work = scratch("convt-gpu-")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {args.device} ({name}), torch {torch.__version__}, CUDA {torch.version.cuda}")
    dtypes = ("float32", "float16", "bfloat16") if args.device.startswith("cuda") else ("float32",)
    for model in args.models.split(","):
        config, weights, x, audio_s = prepare(model, work, seconds)
        in_process(model, config, weights, x, audio_s, args.device, dtypes, repeats)
        whole_processes(model, config, weights, x, audio_s, args.device, work, min(repeats, 3))
        if model != "learned":
            live_pushes(model, config, weights, x, args.device, 2.0 if args.quick else 5.0)
        if model != "learned" and files:
            many_files(model, weights, args.device, work, files, args.file_seconds)


if __name__ == "__main__":
    main()
