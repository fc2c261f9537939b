"""Published vocoder generators written as configs: HiFi-GAN V1/V2/V3, MelGAN, BigVGAN v2, DAC.

Each function returns a config mapping (ready for YAML) with the paper's official
hyper-parameters and the official checkpoints' tensor names, so that a checkpoint trained with
the authors' code loads as it is (weight-norm tensors are folded on load):

- HiFi-GAN (Kong et al. 2020, the authors' ``models.py``): checkpoints ``g_XXXXXXXX`` hold
  ``{"generator": state_dict}``; ``conv_pre``, ``ups.i``, ``resblocks.n.convs1.m``/``convs2.m``
  (ResBlock1) or ``resblocks.n.convs.m`` (ResBlock2), ``conv_post``. Each upsampling stage's
  multi-receptive-field fusion is a ``parallel`` block with ``reduce: mean``; each
  ``x = xt + x`` inside a ResBlock is a ``residual``.
- MelGAN (Kumar et al. 2019, the authors' ``mel2wav/modules.py``): the generator's state_dict,
  ``model.<i>`` as its ``nn.Sequential`` numbers them (ReflectionPad1d and activations count);
  each ResnetBlock ``shortcut(x) + block(x)`` is a ``parallel`` block with ``reduce: sum``.
- BigVGAN v2 (Lee et al. 2023, NVIDIA's ``bigvgan.py``): ``bigvgan_generator.pt`` holds
  ``{"generator": state_dict}``; HiFi-GAN's layout with AMPBlock1 (each activation an
  ``alias_free`` SnakeBeta, its stored up/down filters recomputed, not read), ``ups.i.0``, no bias
  on ``conv_post`` and a clamp instead of tanh.

The YAML files in ``configs/`` are these functions' output (a test keeps them equal).
"""

from __future__ import annotations

HIFIGAN = {
    # upsample_rates, upsample_kernel_sizes, upsample_initial_channel, resblock,
    # resblock_kernel_sizes, resblock_dilation_sizes (config_v1/v2/v3.json)
    "v1": ([8, 8, 2, 2], [16, 16, 4, 4], 512, "1", [3, 7, 11], [[1, 3, 5], [1, 3, 5], [1, 3, 5]]),
    "v2": ([8, 8, 2, 2], [16, 16, 4, 4], 128, "1", [3, 7, 11], [[1, 3, 5], [1, 3, 5], [1, 3, 5]]),
    "v3": ([8, 8, 4], [16, 16, 8], 256, "2", [3, 5, 7], [[1, 2], [2, 6], [3, 12]]),
}
SAMPLE_RATE = 22050
MELS = 80
LRELU_SLOPE = 0.1  # HiFi-GAN's; its last leaky_relu before conv_post keeps PyTorch's 0.01


def _conv(c_in: int, c_out: int, kernel: int, key: str, dilation: int = 1, padding: int = 0, **extra) -> dict:
    layer = {"type": "conv1d", "in_channels": c_in, "out_channels": c_out, "kernel_size": kernel}
    if dilation != 1:
        layer["dilation"] = dilation
    if padding:
        layer["padding"] = padding
    layer.update(extra)
    layer["key"] = key
    return layer


def _up(c_in: int, c_out: int, kernel: int, stride: int, key: str, padding: int | None = None) -> dict:
    """A ConvTranspose1d upsampler; padding (kernel − stride)/2 unless given."""
    return {
        "type": "conv_transpose1d",
        "in_channels": c_in,
        "out_channels": c_out,
        "kernel_size": kernel,
        "stride": stride,
        "padding": (kernel - stride) // 2 if padding is None else padding,
        "key": key,
    }


def _recipe(rate, n_fft, hop, mels, fmax, fmin=0.0, eps=1e-9, log="e", clamp=1e-5, padding=None) -> dict:
    """A ``features:`` section: the window is n_fft long."""
    recipe = {"sample_rate": rate, "n_fft": n_fft, "hop_length": hop, "win_length": n_fft, "n_mels": mels}
    recipe.update({"fmin": fmin, "fmax": fmax, **({"padding": padding} if padding else {})})
    recipe.update({"magnitude_eps": eps, "log": log, "clamp": clamp})
    return recipe


def _get_padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2


def _resblock(kind: str, n: int, channels: int, kernel: int, dilations: list) -> list:
    """ResBlock1 (two convs per dilation) or ResBlock2 (one) as a list of residual blocks."""
    lrelu = {"type": "leaky_relu", "negative_slope": LRELU_SLOPE}
    blocks = []
    for m, d in enumerate(dilations):
        if kind == "1":
            body = [
                lrelu,
                _conv(channels, channels, kernel, f"resblocks.{n}.convs1.{m}", d, _get_padding(kernel, d)),
                lrelu,
                _conv(channels, channels, kernel, f"resblocks.{n}.convs2.{m}", 1, _get_padding(kernel, 1)),
            ]
        else:
            body = [lrelu, _conv(channels, channels, kernel, f"resblocks.{n}.convs.{m}", d, _get_padding(kernel, d))]
        blocks.append({"type": "residual", "layers": body})
    return blocks


def hifigan(version: str) -> dict:
    """HiFi-GAN generator ``v1``, ``v2`` or ``v3``: 80-band mel at 22050/256 Hz in, 22.05 kHz out."""
    rates, kernels, initial, kind, rb_kernels, rb_dilations = HIFIGAN[version]
    layers = [_conv(MELS, initial, 7, "conv_pre", padding=3)]
    channels = initial
    for i, (u, k) in enumerate(zip(rates, kernels)):
        out = initial // 2 ** (i + 1)
        layers.append({"type": "leaky_relu", "negative_slope": LRELU_SLOPE})
        layers.append(_up(channels, out, k, u, f"ups.{i}"))
        branches = [
            _resblock(kind, i * len(rb_kernels) + j, out, rk, rd)
            for j, (rk, rd) in enumerate(zip(rb_kernels, rb_dilations))
        ]
        layers.append({"type": "parallel", "reduce": "mean", "branches": branches})
        channels = out
    layers += [{"type": "leaky_relu"}, _conv(channels, 1, 7, "conv_post", padding=3), {"type": "tanh"}]
    hop = 1
    for u in rates:
        hop *= u
    return {
        "name": f"hifigan-{version}",
        "description": (
            f"HiFi-GAN {version.upper()} generator (Kong et al. 2020): 80-band log-mel at "
            f"{SAMPLE_RATE}/{hop} Hz in, {SAMPLE_RATE} Hz audio out; ResBlock{kind}; "
            f"official checkpoints (g_XXXXXXXX) load with -w"
        ),
        "weights_prefix": "generator.",
        "channels": "joint",
        "output_sample_rate": SAMPLE_RATE,
        # parallel-wavegan/ESPnet trainer checkpoints (checkpoint-*steps.pkl) of HiFiGANGenerator
        "layouts": [
            {
                "name": "parallel-wavegan",
                "prefix": "model.generator.",
                "map": [
                    ["^conv_pre\\.", "input_conv."],
                    ["^ups\\.(\\d+)\\.", "upsamples.\\1.1."],
                    ["^resblocks\\.(\\d+)\\.convs\\.(\\d+)\\.", "blocks.\\1.convs1.\\2.1."],  # ResBlock2
                    ["^resblocks\\.(\\d+)\\.(convs[12])\\.(\\d+)\\.", "blocks.\\1.\\2.\\3.1."],
                    ["^conv_post\\.", "output_conv.1."],
                ],
            }
        ],
        # meldataset.mel_spectrogram of the authors' code with config_v1/v2/v3.json's numbers
        "features": _recipe(SAMPLE_RATE, 1024, hop, 80, 8000.0),
        "layers": layers,
    }


def melgan(ngf: int = 32, n_residual_layers: int = 3, ratios=(8, 8, 2, 2)) -> dict:
    """MelGAN generator as the authors' code builds it (80 mels, ngf 32, 3 residual layers)."""
    mult = 2 ** len(ratios)
    layers = [_conv(MELS, mult * ngf, 7, "model.1", padding=3, padding_mode="reflect")]
    index = 2  # position in the authors' nn.Sequential: ReflectionPad1d(3), WNConv1d
    for r in ratios:
        dim = mult * ngf // 2
        layers.append({"type": "leaky_relu", "negative_slope": 0.2})
        layer = {
            "type": "conv_transpose1d",
            "in_channels": mult * ngf,
            "out_channels": dim,
            "kernel_size": 2 * r,
            "stride": r,
            "padding": r // 2 + r % 2,
        }
        if r % 2:
            layer["output_padding"] = r % 2
        layer["key"] = f"model.{index + 1}"
        layers.append(layer)
        for j in range(n_residual_layers):
            n = index + 2 + j
            d = 3**j
            block = [
                {"type": "leaky_relu", "negative_slope": 0.2},
                _conv(dim, dim, 3, f"model.{n}.block.2", d, d, padding_mode="reflect"),
                {"type": "leaky_relu", "negative_slope": 0.2},
                _conv(dim, dim, 1, f"model.{n}.block.4"),
            ]
            layers.append(
                {"type": "parallel", "reduce": "sum", "branches": [[_conv(dim, dim, 1, f"model.{n}.shortcut")], block]}
            )
        index += 2 + n_residual_layers
        mult //= 2
    layers += [
        {"type": "leaky_relu", "negative_slope": 0.2},
        _conv(ngf, 1, 7, f"model.{index + 2}", padding=3, padding_mode="reflect"),
        {"type": "tanh"},
    ]
    hop = 1
    for r in ratios:
        hop *= r
    return {
        "name": "melgan",
        "description": (
            f"MelGAN generator (Kumar et al. 2019): 80-band log-mel at {SAMPLE_RATE}/{hop} Hz "
            f"in, {SAMPLE_RATE} Hz audio out; ratios {'·'.join(map(str, ratios))}, residual "
            f"stacks with 1x1 shortcuts and reflection padding; its generator state_dict "
            f"loads with -w"
        ),
        "channels": "joint",
        "output_sample_rate": SAMPLE_RATE,
        # mel2wav/modules.py Audio2Mel of the authors' code: no fmax (Nyquist), |X| without eps, log10
        "features": _recipe(SAMPLE_RATE, 1024, hop, 80, None, eps=0.0, log="10"),
        "layers": layers,
    }


BIGVGAN = {
    # sampling_rate, num_mels, n_fft/hop/win, upsample_rates, upsample_kernel_sizes (NVIDIA's
    # configs/bigvgan_v2_*.json; all: initial channels 1536, AMPBlock1 kernels 3/7/11 with
    # dilations 1/3/5, snakebeta with log-scale parameters, no bias and no tanh at the end)
    "bigvgan-v2-22khz-80band-256x": (22050, 80, (1024, 256, 1024), [4, 4, 2, 2, 2, 2], [8, 8, 4, 4, 4, 4]),
    "bigvgan-v2-24khz-100band-256x": (24000, 100, (1024, 256, 1024), [4, 4, 2, 2, 2, 2], [8, 8, 4, 4, 4, 4]),
    "bigvgan-v2-44khz-128band-512x": (44100, 128, (2048, 512, 2048), [8, 4, 2, 2, 2, 2], [16, 8, 4, 4, 4, 4]),
}


def _amp(key: str, channels: int, activation: str = "snake_beta") -> dict:
    """BigVGAN's Activation1d(SnakeBeta(channels, alpha_logscale=True)) at ``key``."""
    return {
        "type": "alias_free",
        "activation": {"type": activation, "channels": channels, "logscale": True},
        "key": key,
    }


def bigvgan(
    name: str,
    initial: int = 1536,
    rb_kernels=(3, 7, 11),
    rb_dilations=((1, 3, 5), (1, 3, 5), (1, 3, 5)),
    bias_at_final: bool = False,
    tanh_at_final: bool = False,
) -> dict:
    """BigVGAN v2 (Lee et al. 2023, NVIDIA's ``bigvgan.py``) with AMPBlock1: ``conv_pre``,
    ``ups.i.0``, ``resblocks.n.convs1.m``/``convs2.m`` with ``activations.2m``/``2m+1``
    (anti-aliased SnakeBeta), ``activation_post``, ``conv_post``, then clamp to ±1."""
    rate, mels, (n_fft, hop, win), rates, kernels = BIGVGAN[name]
    layers = [_conv(mels, initial, 7, "conv_pre", padding=3)]
    channels = initial
    for i, (u, k) in enumerate(zip(rates, kernels)):
        out = initial // 2 ** (i + 1)
        layers.append(_up(channels, out, k, u, f"ups.{i}.0"))
        branches = []
        for j, (rk, rd) in enumerate(zip(rb_kernels, rb_dilations)):
            n = i * len(rb_kernels) + j
            blocks = []
            for m, d in enumerate(rd):
                body = [
                    _amp(f"resblocks.{n}.activations.{2 * m}", out),
                    _conv(out, out, rk, f"resblocks.{n}.convs1.{m}", d, _get_padding(rk, d)),
                    _amp(f"resblocks.{n}.activations.{2 * m + 1}", out),
                    _conv(out, out, rk, f"resblocks.{n}.convs2.{m}", 1, _get_padding(rk, 1)),
                ]
                blocks.append({"type": "residual", "layers": body})
            branches.append(blocks)
        layers.append({"type": "parallel", "reduce": "mean", "branches": branches})
        channels = out
    layers += [
        _amp("activation_post", channels),
        _conv(channels, 1, 7, "conv_post", padding=3, **({} if bias_at_final else {"bias": False})),
        {"type": "tanh"} if tanh_at_final else {"type": "clamp", "min": -1.0, "max": 1.0},
    ]
    upsampling = 1
    for u in rates:
        upsampling *= u
    return {
        "name": name,
        "description": (
            f"BigVGAN v2 generator (Lee et al. 2023): {mels}-band log-mel at {rate}/{hop} Hz in, {rate} Hz "
            f"audio out; AMPBlock1 with anti-aliased SnakeBeta; NVIDIA's bigvgan_generator.pt loads with -w"
        ),
        "weights_prefix": "generator.",
        "channels": "joint",
        "output_sample_rate": rate,
        # meldataset.mel_spectrogram of NVIDIA's code (fmax null: Nyquist)
        "features": _recipe(rate, n_fft, hop, mels, None),
        "layers": layers,
    }


DAC = {
    # sample_rate, decoder_rates, n_codebooks (descript-audio-codec conf/final/*.yml; all: latent
    # 1024, decoder_dim 1536, codebook_size 1024, codebook_dim 8)
    "dac-44khz": (44100, [8, 8, 4, 2], 9),
    "dac-24khz": (24000, [8, 5, 4, 2], 32),
    "dac-16khz": (16000, [8, 5, 4, 2], 12),
}


def _prefixed(layers: list, prefix: str) -> list:
    """``layers`` with ``prefix`` before every ``key``, inside blocks too."""
    out = []
    for layer in layers:
        layer = dict(layer)
        if "key" in layer:
            layer["key"] = prefix + layer["key"]
        for field in ("layers", "branches"):
            if field in layer:
                inner = layer[field]
                layer[field] = (
                    [_prefixed(b, prefix) for b in inner] if field == "branches" else _prefixed(inner, prefix)
                )
        out.append(layer)
    return out


def dac(name: str, latent: int = 1024, dim: int = 1536) -> dict:
    """Descript Audio Codec's decoder (Kumar et al. 2023, ``dac/model/dac.py``): integer codes
    ``(n_codebooks, frames)`` (``quantizer.from_codes``: each codebook's entry through its
    weight-normed ``out_proj``, summed) or the quantized latent z itself (``latent`` channels) at
    rate / hop in, audio out. ``weights.pth`` holds ``{"state_dict": …, "metadata": …}``; the
    quantizer is ``quantizer.quantizers.<i>``, the decoder ``decoder.model.<i>``: a conv, one
    DecoderBlock per rate (Snake1d, ConvTranspose1d k=2s, ResidualUnits with dilations 1/3/9:
    Snake1d, conv k7, Snake1d, conv k1, x + y), Snake1d, conv k7, tanh."""
    rate, rates, n_codebooks = DAC[name]

    def snake(channels: int, key: str) -> dict:
        return {"type": "snake", "channels": channels, "key": key}

    layers = [_conv(latent, dim, 7, "0", padding=3)]
    out = dim
    for i, stride in enumerate(rates):
        c_in, out = dim // 2**i, dim // 2 ** (i + 1)
        block = f"{i + 1}.block"
        layers += [
            snake(c_in, f"{block}.0"),
            _up(c_in, out, 2 * stride, stride, f"{block}.1", padding=-(-stride // 2)),
        ]
        for j, dilation in enumerate((1, 3, 9)):
            unit = f"{block}.{j + 2}.block"
            body = [
                snake(out, f"{unit}.0"),
                _conv(out, out, 7, f"{unit}.1", dilation, 3 * dilation),
                snake(out, f"{unit}.2"),
                _conv(out, out, 1, f"{unit}.3"),
            ]
            layers.append({"type": "residual", "layers": body})
    n = len(rates) + 1
    layers += [snake(out, f"{n}"), _conv(out, 1, 7, f"{n + 1}", padding=3), {"type": "tanh"}]
    codebooks = {"type": "codebooks", "codebooks": n_codebooks, "bins": 1024, "dim": 8, "projection": latent}
    codebooks.update(layout="dac", latents=True, key="quantizer")
    layers = [codebooks, *_prefixed(layers, "decoder.model.")]
    hop = 1
    for stride in rates:
        hop *= stride
    return {
        "name": name,
        "description": (
            f"Descript Audio Codec decoder (Kumar et al. 2023): integer codes ({n_codebooks} or fewer rows of "
            f"1024-entry codebooks) or the {latent}-channel quantized latent z, at {rate}/{hop} Hz, in; "
            f"{rate} Hz audio out; the released weights_*.pth load with -w"
        ),
        "weights_prefix": "state_dict.",
        "weights_ignore": ["state_dict.encoder.", "state_dict.quantizer."],  # the encoder; in_proj
        "channels": "joint",
        "output_sample_rate": rate,
        "layers": layers,
    }


PWG_MELGAN = {
    # parallel-wavegan's egs/ljspeech/voc1/conf: melgan.v1 and multi_band_melgan.v2
    # (channels, upsample_scales, stacks, out_channels = subbands)
    "pwg-melgan": (512, [8, 8, 2, 2], 3, 1),
    "pwg-multiband-melgan": (384, [8, 4, 2], 4, 4),
}


def pwg_melgan(name: str, channels: int | None = None) -> dict:
    """parallel-wavegan's MelGANGenerator (``parallel_wavegan/models/melgan.py``), its names
    ``melgan.<i>`` as its ``nn.Sequential`` numbers them (paddings and activations count); each
    ResidualStack ``stack(x) + skip_layer(x)`` a ``parallel`` sum. With several output channels
    (multi-band MelGAN) a ``pqmf_synthesis`` joins the subbands. Trainer checkpoints
    (``checkpoint-*steps.pkl``) hold ``{"model": {"generator": …}}``."""
    width, scales, stacks, subbands = PWG_MELGAN[name]
    width = channels or width
    lrelu = {"type": "leaky_relu", "negative_slope": 0.2}
    layers = [_conv(MELS, width, 7, "melgan.1", padding=3, padding_mode="reflect")]
    index, c = 2, width
    for i, scale in enumerate(scales):
        out = width // 2 ** (i + 1)
        layers += [
            lrelu,
            _up(c, out, 2 * scale, scale, f"melgan.{index + 1}", padding=scale // 2 + scale % 2),
        ]
        if scale % 2:
            layers[-1]["output_padding"] = 1
        index += 2
        for j in range(stacks):
            d = 3**j
            stack = [
                lrelu,
                _conv(out, out, 3, f"melgan.{index}.stack.2", d, d, padding_mode="reflect"),
                lrelu,
                _conv(out, out, 1, f"melgan.{index}.stack.4"),
            ]
            skip = [_conv(out, out, 1, f"melgan.{index}.skip_layer")]
            layers.append({"type": "parallel", "reduce": "sum", "branches": [stack, skip]})
            index += 1
        c = out
    layers += [lrelu, _conv(c, subbands, 7, f"melgan.{index + 2}", padding=3, padding_mode="reflect"), {"type": "tanh"}]
    if subbands > 1:
        layers.append({"type": "pqmf_synthesis", "subbands": subbands})
    hop = subbands
    for scale in scales:
        hop *= scale
    kind = "multi-band MelGAN with PQMF synthesis" if subbands > 1 else "MelGAN"
    return {
        "name": name,
        "description": (
            f"parallel-wavegan's {kind} (its LJSpeech recipe's numbers): 80-band log10-mel at "
            f"{SAMPLE_RATE}/{hop} Hz, normalised by the recipe's stats, in; {SAMPLE_RATE} Hz audio out; "
            f"trainer checkpoints (checkpoint-*steps.pkl) load with -w"
        ),
        "weights_prefix": "model.generator.",
        "channels": "joint",
        "output_sample_rate": SAMPLE_RATE,
        # parallel_wavegan/bin/preprocess.py logmelfilterbank: librosa.stft (centred), |X|, log10;
        # the recipe normalises with its stats.h5: give them to `mel --stats`
        "features": _recipe(SAMPLE_RATE, 1024, hop, MELS, 7600.0, 80.0, 0.0, "10", 1e-10, "center"),
        "layers": layers,
    }


VOCOS = {
    # the hub's config.yaml of each: sample rate, n_fft, hop, input channels, dim, intermediate_dim,
    # layers, the ISTFT head's padding, adaptive LayerNorm rows (the bandwidths)
    "vocos-mel-24khz": (24000, 1024, 256, 100, 512, 1536, 8, "center", None),
    "vocos-encodec-24khz": (24000, 1280, 320, 128, 384, 1152, 8, "same", 4),
}
VOCOS_BANDWIDTHS = [1.5, 3.0, 6.0, 12.0]  # EncodecFeatures' bandwidths: kbps, 2/4/8/16 codebooks


def vocos(name: str) -> dict:
    """Vocos (Siuzdak 2023, ``vocos/models.py``, ``heads.py``, ``modules.py``): a ConvNeXt backbone
    (embed conv k7, LayerNorm, blocks of depthwise conv k7, LayerNorm, Linear, GELU, Linear, layer
    scale, residual; a final LayerNorm) and an ISTFT head (Linear to n_fft + 2, exp'd magnitude
    clipped at 100, phase, inverse STFT). The hub's ``pytorch_model.bin`` is the model's
    state_dict: ``backbone.…``, ``head.out``, ``head.istft.window``. The mel variant's input is
    the log-mel (its feature extractor's buffers are not the decoder's); the EnCodec variant's is
    EnCodec's codes, looked up in ``feature_extractor.codebook_weights`` (16 codebooks stacked) and
    decoded with the LayerNorms' rows of the bandwidth chosen (``AdaLayerNorm``)."""
    rate, n_fft, hop, channels, dim, inner, count, padding, rows = VOCOS[name]

    def norm(key: str) -> dict:
        layer = {"type": "layer_norm", "channels": dim, "eps": 1e-6, "key": key}
        return {**layer, "conditions": rows} if rows else layer

    layers = []
    if rows:
        stacked = {"type": "codebooks", "codebooks": 16, "bins": 1024, "dim": channels, "layout": "stacked"}
        layers.append({**stacked, "key": "feature_extractor"})
    layers += [_conv(channels, dim, 7, "backbone.embed", padding=3), norm("backbone.norm")]
    for i in range(count):
        block = f"backbone.convnext.{i}"
        body = [
            _conv(dim, dim, 7, f"{block}.dwconv", padding=3, groups=dim),
            norm(f"{block}.norm"),
            {"type": "linear", "in_features": dim, "out_features": inner, "key": f"{block}.pwconv1"},
            {"type": "gelu"},
            {"type": "linear", "in_features": inner, "out_features": dim, "key": f"{block}.pwconv2"},
            {"type": "scale", "channels": dim, "key": block},
        ]
        layers.append({"type": "residual", "layers": body})
    layers += [
        {"type": "layer_norm", "channels": dim, "eps": 1e-6, "key": "backbone.final_layer_norm"},
        {"type": "linear", "in_features": dim, "out_features": n_fft + 2, "key": "head.out"},
        {"type": "istft", "n_fft": n_fft, "hop_length": hop, "padding": padding, "key": "head.istft"},
    ]
    if rows:
        return {
            "name": name,
            "description": (
                f"Vocos (Siuzdak 2023) for EnCodec: EnCodec 24 kHz's integer codes (codebooks, frames) at "
                f"{rate}/{hop} Hz in, 2, 4, 8 or 16 rows for 1.5, 3, 6 or 12 kbps (--condition chooses the "
                f"bandwidth); {rate} Hz audio out; the hub's pytorch_model.bin loads with -w"
            ),
            "weights_ignore": ["feature_extractor.encodec."],  # EnCodec's own model, where a file holds it
            "channels": "joint",
            "output_sample_rate": rate,
            "condition": {
                "name": "bandwidth",
                "unit": "kbps",
                "values": VOCOS_BANDWIDTHS,
                "codebooks": [2, 4, 8, 16],
                "default": None,
            },
            "layers": layers,
        }
    return {
        "name": name,
        "description": (
            f"Vocos (Siuzdak 2023): {channels}-band log-mel at {rate}/{hop} Hz in, {rate} Hz audio out; ConvNeXt "
            f"backbone and ISTFT head; the hub's pytorch_model.bin loads with -w"
        ),
        "weights_ignore": ["feature_extractor."],  # the mel's window and filterbank: `mel` computes them
        "channels": "joint",
        "output_sample_rate": rate,
        # MelSpectrogramFeatures: torchaudio's MelSpectrogram (centred, power 1, HTK scale, no
        # area normalisation), then log(clip(·, 1e-7))
        "features": {
            **_recipe(rate, n_fft, hop, channels, None, eps=0.0, clamp=1e-7, padding="center"),
            "mel_scale": "htk",
            "mel_norm": None,
        },
        "layers": layers,
    }


def encodec() -> dict:
    """EnCodec 24 kHz's decoder (Défossez et al. 2022, ``encodec/model.py``, ``modules/seanet.py``):
    integer codes in — up to 32 codebooks of 1024 at 75 Hz (1.5 kbps: 2 rows … 24 kbps: 32) —
    summed codebook entries (``quantizer.vq.layers.<i>._codebook.embed``), then the causal SEANet
    decoder: SConv1d k7 (all padding on the left, EnCodec's ``pad1d`` reflect: ``reflect_zeros``),
    a 2-layer SLSTM with its skip, per ratio 8·5·4·2 ELU and a transposed conv k = 2r trimmed on the
    right by K − stride, a residual block (ELU, conv k3, ELU, conv k1) plus its 1×1 shortcut; ELU,
    conv k7. ``encodec_24khz-d7cc33bc.th`` is the model's state_dict: every tensor is named
    in full (no prefix); the encoder's are left unused."""
    dimension, filters, ratios = 128, 32, (8, 5, 4, 2)

    def sconv(c_in: int, c_out: int, kernel: int, key: str) -> dict:
        layer = _conv(c_in, c_out, kernel, f"{key}.conv.conv")
        if kernel > 1:
            layer.update(padding=[kernel - 1, 0], padding_mode="reflect_zeros")
        return layer

    elu = {"type": "elu"}
    width = filters * 2 ** len(ratios)
    layers = [
        {"type": "codebooks", "codebooks": 32, "bins": 1024, "dim": dimension, "key": "quantizer.vq"},
        sconv(dimension, width, 7, "decoder.model.0"),
        {"type": "lstm", "channels": width, "num_layers": 2, "skip": True, "key": "decoder.model.1.lstm"},
    ]
    for i, ratio in enumerate(ratios):
        index, out = 3 + 3 * i, width // 2
        up = {"type": "conv_transpose1d", "in_channels": width, "out_channels": out, "kernel_size": 2 * ratio}
        up.update(stride=ratio, trim=[0, ratio], key=f"decoder.model.{index}.convtr.convtr")
        block = f"decoder.model.{index + 1}"
        body = [elu, sconv(out, out // 2, 3, f"{block}.block.1"), elu, sconv(out // 2, out, 1, f"{block}.block.3")]
        shortcut = [sconv(out, out, 1, f"{block}.shortcut")]
        layers += [elu, up, {"type": "parallel", "reduce": "sum", "branches": [shortcut, body]}]
        width = out
    layers += [elu, sconv(width, 1, 7, "decoder.model.15")]
    return {
        "name": "encodec-24khz",
        "description": (
            "EnCodec 24 kHz's decoder (Defossez et al. 2022): integer codes (codebooks, frames) at 75 Hz in, "
            "2 to 32 rows of 1024-entry codebooks (1.5 to 24 kbps) as EncodecModel.encode returns them; "
            "24000 Hz audio out; causal; encodec_24khz-d7cc33bc.th loads with -w"
        ),
        "weights_ignore": ["encoder.", "quantizer."],  # the encoder; the codebooks' training buffers
        "channels": "joint",
        "output_sample_rate": 24000,
        "layers": layers,
    }


def architectures() -> dict[str, dict]:
    """Every built-in architecture config, by name."""
    configs = {f"hifigan-{v}": hifigan(v) for v in HIFIGAN}
    configs["melgan"] = melgan()
    configs.update({name: bigvgan(name) for name in BIGVGAN})
    configs.update({name: dac(name) for name in DAC})
    configs.update({name: pwg_melgan(name) for name in PWG_MELGAN})
    configs.update({name: vocos(name) for name in VOCOS})
    configs["encodec-24khz"] = encodec()
    return configs


def write_configs(folder) -> list:
    """Write each architecture as ``<name>.yaml`` into ``folder`` (how ``configs/`` is made)."""
    from pathlib import Path

    import yaml

    header = (
        "# Generated by tests/architectures.py (python tests/architectures.py configs/);\n"
        "# edit that file, not this one. Ships without weights: pass the checkpoint with -w.\n"
    )

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data) -> bool:  # configs hold no YAML anchors or aliases
            return True

    written = []
    for name, data in architectures().items():
        path = Path(folder) / f"{name}.yaml"
        text = yaml.dump(data, Dumper=Dumper, sort_keys=False, width=200, default_flow_style=None)
        path.write_text(header + text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover
    import sys

    for written_path in write_configs(sys.argv[1] if len(sys.argv) > 1 else "configs"):
        print(written_path)
