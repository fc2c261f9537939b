"""Independent references: the published generators as plain PyTorch modules.

Written from the papers' official code (HiFi-GAN: ``models.py`` of the authors' repository;
MelGAN: ``mel2wav/modules.py``): the same module names, so that ``state_dict()`` has the
official checkpoints' layout, the same weight normalisation, and the same forward arithmetic
(HiFi-GAN sums its ResBlocks in order and divides by their count; its last leaky_relu uses
PyTorch's default slope). Nothing here imports convt_audio.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import weight_norm

HIFIGAN_HPARAMS = {  # config_v1/v2/v3.json of the authors' code
    "v1": dict(
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        upsample_initial_channel=512,
        resblock="1",
        resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3,
    ),
    "v2": dict(
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        upsample_initial_channel=128,
        resblock="1",
        resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3,
    ),
    "v3": dict(
        upsample_rates=[8, 8, 4],
        upsample_kernel_sizes=[16, 16, 8],
        upsample_initial_channel=256,
        resblock="2",
        resblock_kernel_sizes=[3, 5, 7],
        resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]],
    ),
}


def same_padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


def _wn_conv(c_in, c_out, kernel, dilation=1, padding=0):
    return weight_norm(nn.Conv1d(c_in, c_out, kernel, 1, dilation=dilation, padding=padding))


class HifiResBlock1(nn.Module):
    """Per dilation: x += conv2(lrelu(conv1(lrelu(x)))), conv1 dilated, conv2 not."""

    def __init__(self, channels: int, kernel: int, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList(_wn_conv(channels, channels, kernel, d, same_padding(kernel, d)) for d in dilations)
        self.convs2 = nn.ModuleList(_wn_conv(channels, channels, kernel, 1, same_padding(kernel, 1)) for _ in dilations)

    def forward(self, x):
        for first, second in zip(self.convs1, self.convs2):
            y = second(F.leaky_relu(first(F.leaky_relu(x, 0.1)), 0.1))
            x = y + x
        return x


class HifiResBlock2(nn.Module):
    """Per dilation: x += conv(lrelu(x))."""

    def __init__(self, channels: int, kernel: int, dilations):
        super().__init__()
        self.convs = nn.ModuleList(_wn_conv(channels, channels, kernel, d, same_padding(kernel, d)) for d in dilations)

    def forward(self, x):
        for conv in self.convs:
            x = conv(F.leaky_relu(x, 0.1)) + x
        return x


class HifiGanGenerator(nn.Module):
    def __init__(self, version: str = "v1"):
        super().__init__()
        h = HIFIGAN_HPARAMS[version]
        initial = h["upsample_initial_channel"]
        self.num_kernels = len(h["resblock_kernel_sizes"])
        self.conv_pre = _wn_conv(80, initial, 7, 1, 3)
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(initial // 2**i, initial // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"]))
        )
        block = HifiResBlock1 if h["resblock"] == "1" else HifiResBlock2
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            channels = initial // 2 ** (i + 1)
            for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]):
                self.resblocks.append(block(channels, k, d))
        self.conv_post = _wn_conv(channels, 1, 7, 1, 3)

    def forward(self, x):
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, 0.1))
            total = None
            for j in range(self.num_kernels):
                y = self.resblocks[i * self.num_kernels + j](x)
                total = y if total is None else total + y
            x = total / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


class MelGanResnetBlock(nn.Module):
    def __init__(self, dim: int, dilation: int = 1):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            weight_norm(nn.Conv1d(dim, dim, kernel_size=3, dilation=dilation)),
            nn.LeakyReLU(0.2),
            weight_norm(nn.Conv1d(dim, dim, kernel_size=1)),
        )
        self.shortcut = weight_norm(nn.Conv1d(dim, dim, kernel_size=1))

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class MelGanGenerator(nn.Module):
    def __init__(self, input_size: int = 80, ngf: int = 32, n_residual_layers: int = 3, ratios=(8, 8, 2, 2)):
        super().__init__()
        mult = 2 ** len(ratios)
        model = [nn.ReflectionPad1d(3), weight_norm(nn.Conv1d(input_size, mult * ngf, kernel_size=7))]
        for r in ratios:
            model += [
                nn.LeakyReLU(0.2),
                weight_norm(
                    nn.ConvTranspose1d(
                        mult * ngf,
                        mult * ngf // 2,
                        kernel_size=2 * r,
                        stride=r,
                        padding=r // 2 + r % 2,
                        output_padding=r % 2,
                    )
                ),
            ]
            model += [MelGanResnetBlock(mult * ngf // 2, dilation=3**j) for j in range(n_residual_layers)]
            mult //= 2
        model += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), weight_norm(nn.Conv1d(ngf, 1, kernel_size=7)), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every weight_g/weight_v/bias random values (the default init leaves g = ‖v‖)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.named_parameters():
            scale = 0.5 if name.endswith("weight_g") else 0.2
            tensor.copy_(
                (torch.rand(tensor.shape, generator=generator) - 0.5) * 2 * scale
                + (0.6 if name.endswith("weight_g") else 0.0)
            )
    return module.eval()


# --------------------------------------------------------------------------------------------
# BigVGAN's activations (activations.py, alias_free_activation/torch/{filter,resample,act}.py of
# NVIDIA's repository): parameters of shape (C,), filters registered as buffers


class Snake(nn.Module):
    def __init__(self, in_features, alpha=1.0, alpha_logscale=False):
        super().__init__()
        self.alpha_logscale = alpha_logscale
        start = torch.zeros(in_features) if alpha_logscale else torch.ones(in_features)
        self.alpha = nn.Parameter(start * alpha)
        self.no_div_by_zero = 0.000000001

    def forward(self, x):
        alpha = self.alpha.unsqueeze(0).unsqueeze(-1)
        if self.alpha_logscale:
            alpha = torch.exp(alpha)
        return x + (1.0 / (alpha + self.no_div_by_zero)) * torch.pow(torch.sin(x * alpha), 2)


class SnakeBeta(nn.Module):
    def __init__(self, in_features, alpha=1.0, alpha_logscale=False):
        super().__init__()
        self.alpha_logscale = alpha_logscale
        start = torch.zeros(in_features) if alpha_logscale else torch.ones(in_features)
        self.alpha = nn.Parameter(start * alpha)
        self.beta = nn.Parameter(start * alpha)
        self.no_div_by_zero = 0.000000001

    def forward(self, x):
        alpha = self.alpha.unsqueeze(0).unsqueeze(-1)
        beta = self.beta.unsqueeze(0).unsqueeze(-1)
        if self.alpha_logscale:
            alpha = torch.exp(alpha)
            beta = torch.exp(beta)
        return x + (1.0 / (beta + self.no_div_by_zero)) * torch.pow(torch.sin(x * alpha), 2)


def kaiser_sinc_filter1d(cutoff, half_width, kernel_size):  # [1, 1, kernel_size]
    even = kernel_size % 2 == 0
    half_size = kernel_size // 2
    delta_f = 4 * half_width
    A = 2.285 * (half_size - 1) * math.pi * delta_f + 7.95
    if A > 50.0:
        beta = 0.1102 * (A - 8.7)
    elif A >= 21.0:
        beta = 0.5842 * (A - 21) ** 0.4 + 0.07886 * (A - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    if even:
        time = torch.arange(-half_size, half_size) + 0.5
    else:
        time = torch.arange(kernel_size) - half_size
    filter_ = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    filter_ /= filter_.sum()
    return filter_.view(1, 1, kernel_size)


class LowPassFilter1d(nn.Module):
    def __init__(self, cutoff=0.5, half_width=0.6, stride=1, padding=True, padding_mode="replicate", kernel_size=12):
        super().__init__()
        self.kernel_size = kernel_size
        self.even = kernel_size % 2 == 0
        self.pad_left = kernel_size // 2 - int(self.even)
        self.pad_right = kernel_size // 2
        self.stride = stride
        self.padding = padding
        self.padding_mode = padding_mode
        self.register_buffer("filter", kaiser_sinc_filter1d(cutoff, half_width, kernel_size))

    def forward(self, x):
        _, C, _ = x.shape
        if self.padding:
            x = F.pad(x, (self.pad_left, self.pad_right), mode=self.padding_mode)
        return F.conv1d(x, self.filter.expand(C, -1, -1), stride=self.stride, groups=C)


class UpSample1d(nn.Module):
    def __init__(self, ratio=2, kernel_size=None):
        super().__init__()
        self.ratio = ratio
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.stride = ratio
        self.pad = self.kernel_size // ratio - 1
        self.pad_left = self.pad * self.stride + (self.kernel_size - self.stride) // 2
        self.pad_right = self.pad * self.stride + (self.kernel_size - self.stride + 1) // 2
        self.register_buffer(
            "filter", kaiser_sinc_filter1d(cutoff=0.5 / ratio, half_width=0.6 / ratio, kernel_size=self.kernel_size)
        )

    def forward(self, x):
        _, C, _ = x.shape
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(C, -1, -1), stride=self.stride, groups=C)
        return x[..., self.pad_left : -self.pad_right]


class DownSample1d(nn.Module):
    def __init__(self, ratio=2, kernel_size=None):
        super().__init__()
        self.ratio = ratio
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.lowpass = LowPassFilter1d(
            cutoff=0.5 / ratio, half_width=0.6 / ratio, stride=ratio, kernel_size=self.kernel_size
        )

    def forward(self, x):
        return self.lowpass(x)


class Activation1d(nn.Module):
    def __init__(self, activation, up_ratio=2, down_ratio=2, up_kernel_size=12, down_kernel_size=12):
        super().__init__()
        self.up_ratio = up_ratio
        self.down_ratio = down_ratio
        self.act = activation
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)

    def forward(self, x):
        x = self.upsample(x)
        x = self.act(x)
        return self.downsample(x)


# --------------------------------------------------------------------------------------------
# the features the checkpoints were trained on (librosa's filterbank, as the authors' code uses it)


def hifigan_mel_spectrogram(y, n_fft, num_mels, sampling_rate, hop_size, win_size, fmin, fmax, center=False):
    """meldataset.mel_spectrogram of HiFi-GAN's official code (complex STFT in today's torch)."""
    from librosa.filters import mel as librosa_mel_fn

    mel_basis = torch.from_numpy(
        librosa_mel_fn(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax)
    ).float()
    hann_window = torch.hann_window(win_size)
    y = F.pad(y.unsqueeze(1), (int((n_fft - hop_size) / 2), int((n_fft - hop_size) / 2)), mode="reflect")
    y = y.squeeze(1)
    spec = torch.stft(
        y, n_fft, hop_length=hop_size, win_length=win_size, window=hann_window, center=center,
        pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )  # fmt: skip
    spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + (1e-9))
    spec = torch.matmul(mel_basis, spec)
    return torch.log(torch.clamp(spec, min=1e-5) * 1)


class Audio2Mel(nn.Module):
    """mel2wav/modules.py of MelGAN's official code."""

    def __init__(self, n_fft=1024, hop_length=256, win_length=1024, sampling_rate=22050, n_mel_channels=80,
                 mel_fmin=0.0, mel_fmax=None):  # fmt: skip
        super().__init__()
        from librosa.filters import mel as librosa_mel_fn

        window = torch.hann_window(win_length).float()
        mel_basis = librosa_mel_fn(sr=sampling_rate, n_fft=n_fft, n_mels=n_mel_channels, fmin=mel_fmin, fmax=mel_fmax)
        self.register_buffer("mel_basis", torch.from_numpy(mel_basis).float())
        self.register_buffer("window", window)
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length

    def forward(self, audio):
        p = (self.n_fft - self.hop_length) // 2
        audio = F.pad(audio, (p, p), "reflect").squeeze(1)
        fft = torch.stft(
            audio, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length, window=self.window,
            center=False, return_complex=True,
        )  # fmt: skip
        real_part, imag_part = torch.view_as_real(fft).unbind(-1)
        magnitude = torch.sqrt(real_part**2 + imag_part**2)
        mel_output = torch.matmul(self.mel_basis, magnitude)
        return torch.log10(torch.clamp(mel_output, min=1e-5))


# --------------------------------------------------------------------------------------------
# BigVGAN v2's generator (bigvgan.py of NVIDIA's repository), AMPBlock1 and the torch Activation1d

BIGVGAN_HPARAMS = {  # configs/bigvgan_v2_*.json
    "bigvgan-v2-22khz-80band-256x": dict(num_mels=80, upsample_rates=[4, 4, 2, 2, 2, 2], upsample_kernel_sizes=[8, 8, 4, 4, 4, 4]),
    "bigvgan-v2-24khz-100band-256x": dict(num_mels=100, upsample_rates=[4, 4, 2, 2, 2, 2], upsample_kernel_sizes=[8, 8, 4, 4, 4, 4]),
    "bigvgan-v2-44khz-128band-512x": dict(num_mels=128, upsample_rates=[8, 4, 2, 2, 2, 2], upsample_kernel_sizes=[16, 8, 4, 4, 4, 4]),
}  # fmt: skip


class AMPBlock1(nn.Module):
    def __init__(self, channels, kernel_size=3, dilation=(1, 3, 5), snake_logscale=True):
        super().__init__()
        self.convs1 = nn.ModuleList(
            [_wn_conv(channels, channels, kernel_size, d, same_padding(kernel_size, d)) for d in dilation]
        )
        self.convs2 = nn.ModuleList(
            [_wn_conv(channels, channels, kernel_size, 1, same_padding(kernel_size, 1)) for _ in dilation]
        )
        self.num_layers = len(self.convs1) + len(self.convs2)
        self.activations = nn.ModuleList(
            [
                Activation1d(activation=SnakeBeta(channels, alpha_logscale=snake_logscale))
                for _ in range(self.num_layers)
            ]
        )

    def forward(self, x):
        acts1, acts2 = self.activations[::2], self.activations[1::2]
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, acts1, acts2):
            xt = a1(x)
            xt = c1(xt)
            xt = a2(xt)
            xt = c2(xt)
            x = xt + x
        return x


class BigVGAN(nn.Module):
    def __init__(self, name, upsample_initial_channel=1536, resblock_kernel_sizes=(3, 7, 11),
                 resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)), use_bias_at_final=False,
                 use_tanh_at_final=False):  # fmt: skip
        super().__init__()
        h = BIGVGAN_HPARAMS[name]
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(h["upsample_rates"])
        self.conv_pre = weight_norm(nn.Conv1d(h["num_mels"], upsample_initial_channel, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"])):
            self.ups.append(
                nn.ModuleList(
                    [
                        weight_norm(
                            nn.ConvTranspose1d(
                                upsample_initial_channel // (2**i),
                                upsample_initial_channel // (2 ** (i + 1)),
                                k,
                                u,
                                padding=(k - u) // 2,
                            )
                        )
                    ]
                )
            )
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(AMPBlock1(ch, k, d))
        self.activation_post = Activation1d(activation=SnakeBeta(ch, alpha_logscale=True))
        self.use_bias_at_final = use_bias_at_final
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3, bias=use_bias_at_final))
        self.use_tanh_at_final = use_tanh_at_final

    def forward(self, x):
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            for i_up in range(len(self.ups[i])):
                x = self.ups[i][i_up](x)
            xs = None
            for j in range(self.num_kernels):
                if xs is None:
                    xs = self.resblocks[i * self.num_kernels + j](x)
                else:
                    xs += self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = self.activation_post(x)
        x = self.conv_post(x)
        if self.use_tanh_at_final:
            x = torch.tanh(x)
        else:
            x = torch.clamp(x, min=-1.0, max=1.0)
        return x


# --------------------------------------------------------------------------------------------
# parallel-wavegan's HiFiGANGenerator (parallel_wavegan/models/hifigan.py, layers/residual_block.py)


class PwgResidualBlock(nn.Module):
    def __init__(self, kernel_size=3, channels=512, dilations=(1, 3, 5), use_additional_convs=True, slope=0.1):
        super().__init__()
        self.use_additional_convs = use_additional_convs
        self.convs1 = nn.ModuleList()
        if use_additional_convs:
            self.convs2 = nn.ModuleList()
        for dilation in dilations:
            self.convs1 += [
                nn.Sequential(
                    nn.LeakyReLU(slope),
                    nn.Conv1d(
                        channels, channels, kernel_size, 1, dilation=dilation, padding=(kernel_size - 1) // 2 * dilation
                    ),  # fmt: skip
                )
            ]
            if use_additional_convs:
                self.convs2 += [
                    nn.Sequential(
                        nn.LeakyReLU(slope),
                        nn.Conv1d(channels, channels, kernel_size, dilation=1, padding=(kernel_size - 1) // 2),
                    )
                ]

    def forward(self, x):
        for idx in range(len(self.convs1)):
            xt = self.convs1[idx](x)
            if self.use_additional_convs:
                xt = self.convs2[idx](xt)
            x = xt + x
        return x


class PwgHiFiGANGenerator(nn.Module):
    def __init__(self, in_channels=80, out_channels=1, channels=512, kernel_size=7, upsample_scales=(8, 8, 2, 2),
                 upsample_kernel_sizes=(16, 16, 4, 4), resblock_kernel_sizes=(3, 7, 11),
                 resblock_dilations=((1, 3, 5), (1, 3, 5), (1, 3, 5)), use_additional_convs=True):  # fmt: skip
        super().__init__()
        self.num_upsamples = len(upsample_kernel_sizes)
        self.num_blocks = len(resblock_kernel_sizes)
        self.input_conv = nn.Conv1d(in_channels, channels, kernel_size, padding=(kernel_size - 1) // 2)
        self.upsamples = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for i in range(len(upsample_kernel_sizes)):
            self.upsamples += [
                nn.Sequential(
                    nn.LeakyReLU(0.1),
                    nn.ConvTranspose1d(
                        channels // (2**i),
                        channels // (2 ** (i + 1)),
                        upsample_kernel_sizes[i],
                        upsample_scales[i],
                        padding=upsample_scales[i] // 2 + upsample_scales[i] % 2,
                        output_padding=upsample_scales[i] % 2,
                    ),  # fmt: skip
                )
            ]
            for j in range(len(resblock_kernel_sizes)):
                self.blocks += [
                    PwgResidualBlock(
                        resblock_kernel_sizes[j],
                        channels // (2 ** (i + 1)),
                        resblock_dilations[j],
                        use_additional_convs,
                    )  # fmt: skip
                ]
        self.output_conv = nn.Sequential(
            nn.LeakyReLU(),
            nn.Conv1d(channels // (2 ** (i + 1)), out_channels, kernel_size, padding=(kernel_size - 1) // 2),
            nn.Tanh(),
        )

        def _apply_weight_norm(m):
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                weight_norm(m)

        self.apply(_apply_weight_norm)

    def forward(self, c):
        c = self.input_conv(c)
        for i in range(self.num_upsamples):
            c = self.upsamples[i](c)
            cs = 0.0
            for j in range(self.num_blocks):
                cs += self.blocks[i * self.num_blocks + j](c)
            c = cs / self.num_blocks
        return self.output_conv(c)


# --------------------------------------------------------------------------------------------
# Descript Audio Codec's decoder (dac/model/dac.py, dac/nn/layers.py)

DAC_HPARAMS = {"dac-44khz": [8, 8, 4, 2], "dac-24khz": [8, 5, 4, 2], "dac-16khz": [8, 5, 4, 2]}


def dac_snake(x, alpha):
    shape = x.shape
    x = x.reshape(shape[0], shape[1], -1)
    x = x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
    return x.reshape(shape)


class Snake1d(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x):
        return dac_snake(x, self.alpha)


class ResidualUnit(nn.Module):
    def __init__(self, dim=16, dilation=1):
        super().__init__()
        pad = ((7 - 1) * dilation) // 2
        self.block = nn.Sequential(
            Snake1d(dim),
            weight_norm(nn.Conv1d(dim, dim, kernel_size=7, dilation=dilation, padding=pad)),
            Snake1d(dim),
            weight_norm(nn.Conv1d(dim, dim, kernel_size=1)),
        )

    def forward(self, x):
        y = self.block(x)
        pad = (x.shape[-1] - y.shape[-1]) // 2
        if pad > 0:
            x = x[..., pad:-pad]
        return x + y


class DecoderBlock(nn.Module):
    def __init__(self, input_dim=16, output_dim=8, stride=1):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(input_dim),
            weight_norm(
                nn.ConvTranspose1d(
                    input_dim, output_dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
                )
            ),  # fmt: skip
            ResidualUnit(output_dim, dilation=1),
            ResidualUnit(output_dim, dilation=3),
            ResidualUnit(output_dim, dilation=9),
        )

    def forward(self, x):
        return self.block(x)


class DacDecoder(nn.Module):
    def __init__(self, input_channel, channels, rates, d_out=1):
        super().__init__()
        layers = [weight_norm(nn.Conv1d(input_channel, channels, kernel_size=7, padding=3))]
        for i, stride in enumerate(rates):
            input_dim = channels // 2**i
            output_dim = channels // 2 ** (i + 1)
            layers += [DecoderBlock(input_dim, output_dim, stride)]
        layers += [Snake1d(output_dim), weight_norm(nn.Conv1d(output_dim, d_out, kernel_size=7, padding=3)), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


DAC_CODEBOOKS = {"dac-44khz": 9, "dac-24khz": 32, "dac-16khz": 12}  # conf/final/*.yml: n_codebooks


class DacVectorQuantize(nn.Module):
    """dac/nn/quantize.py's VectorQuantize, its decoding half: codebook (bins, 8), in/out_proj."""

    def __init__(self, input_dim: int, codebook_size: int = 1024, codebook_dim: int = 8):
        super().__init__()
        self.in_proj = weight_norm(nn.Conv1d(input_dim, codebook_dim, kernel_size=1))
        self.out_proj = weight_norm(nn.Conv1d(codebook_dim, input_dim, kernel_size=1))
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def decode_code(self, embed_id):
        return F.embedding(embed_id, self.codebook.weight).transpose(1, 2)


class DacResidualVectorQuantize(nn.Module):
    def __init__(self, input_dim: int, n_codebooks: int):
        super().__init__()
        self.quantizers = nn.ModuleList([DacVectorQuantize(input_dim) for _ in range(n_codebooks)])

    def from_codes(self, codes):
        """codes [B, N, T] (N ≤ n_codebooks) → z_q [B, D, T]: Σ_i out_proj_i(codebook_i[codes_i])."""
        z_q = 0.0
        for i in range(codes.shape[1]):
            z_q = z_q + self.quantizers[i].out_proj(self.quantizers[i].decode_code(codes[:, i, :]))
        return z_q


class Dac(nn.Module):
    """The decoding half of dac/model/dac.py's DAC: ``quantizer`` and ``decoder``, as weights.pth
    names them (``state_dict.quantizer.…``, ``state_dict.decoder.…``)."""

    def __init__(self, name: str, latent: int = 1024, dim: int = 1536):
        super().__init__()
        self.quantizer = DacResidualVectorQuantize(latent, DAC_CODEBOOKS[name])
        self.decoder = DacDecoder(latent, dim, DAC_HPARAMS[name])

    def decode_codes(self, codes):
        return self.decoder(self.quantizer.from_codes(codes))

    def forward(self, z):  # DAC.decode: the quantized latent to audio
        return self.decoder(z)


# --------------------------------------------------------------------------------------------
# by built-in name (benchmarks/vocoder.py builds its peers with these)


def reference(name: str) -> nn.Module:
    """The official module for a built-in config's name, full size, default init."""
    if name.startswith("hifigan"):
        return HifiGanGenerator(name.split("-")[1])
    if name.startswith("bigvgan"):
        return BigVGAN(name)
    if name.startswith("dac"):
        return Dac(name)
    if name == "melgan":
        return MelGanGenerator()
    if name == "vocos-mel-24khz":
        return Vocos()
    if name == "vocos-encodec-24khz":
        return Vocos.encodec_24khz()
    if name == "encodec-24khz":
        from reference_encodec import EncodecModel

        return EncodecModel()
    raise ValueError(name)


CODE_ROWS = {"encodec-24khz": 8, "vocos-encodec-24khz": 8}  # 6 kbps: the rows benchmarks decode


class AuthorsDecode(nn.Module):
    """What a built-in's authors call to decode its input — ``[B, C, frames]`` (a mel, a latent,
    or integer codes) to ``[B, 1, samples]`` — as one module (traceable to TorchScript)."""

    def __init__(self, name: str, module: nn.Module):
        super().__init__()
        self.name, self.module = name, module

    def forward(self, x):
        if self.name == "encodec-24khz":  # EncodecModel.decode([(codes, None)])
            return self.module.decoder(self.module.quantizer.decode(x.transpose(0, 1)))
        if self.name == "vocos-encodec-24khz":  # 6 kbps: bandwidth_id 2, as Bark's and the README's
            bandwidth = torch.full((x.shape[0],), 2, dtype=torch.long)
            return self.module.decode(self.module.codes_to_features(x.transpose(0, 1)), bandwidth)[:, None]
        if self.name == "vocos-mel-24khz":
            return self.module.decode(x)[:, None]
        if self.name.startswith("dac") and not x.is_floating_point():
            return self.module.decode_codes(x)
        return self.module(x)


def checkpoint_of(name: str, module: nn.Module) -> dict:
    """What the authors' code saves: the layout each built-in reads."""
    if name.startswith(("hifigan", "bigvgan")):
        return {"generator": module.state_dict()}
    if name.startswith("dac"):
        return {"state_dict": module.state_dict(), "metadata": {}}
    return module.state_dict()  # melgan, vocos, encodec: the model's state_dict


def load_checkpoint(name: str, module: nn.Module, path) -> nn.Module:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if name.startswith(("hifigan", "bigvgan")):
        state = state["generator"]
    elif name.startswith("dac"):
        state = state["state_dict"]
    module.load_state_dict(state)
    return module.eval()


# --------------------------------------------------------------------------------------------
# parallel-wavegan's MelGANGenerator, ResidualStack (layers/residual_stack.py) and PQMF (layers/pqmf.py)


class PwgResidualStack(nn.Module):
    def __init__(self, kernel_size=3, channels=32, dilation=1):
        super().__init__()
        self.stack = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d((kernel_size - 1) // 2 * dilation),
            nn.Conv1d(channels, channels, kernel_size, dilation=dilation),
            nn.LeakyReLU(0.2),
            nn.Conv1d(channels, channels, 1),
        )
        self.skip_layer = nn.Conv1d(channels, channels, 1)

    def forward(self, c):
        return self.stack(c) + self.skip_layer(c)


class PwgMelGANGenerator(nn.Module):
    def __init__(self, in_channels=80, out_channels=1, kernel_size=7, channels=512, upsample_scales=(8, 8, 2, 2),
                 stack_kernel_size=3, stacks=3):  # fmt: skip
        super().__init__()
        layers = [nn.ReflectionPad1d((kernel_size - 1) // 2), nn.Conv1d(in_channels, channels, kernel_size)]
        for i, upsample_scale in enumerate(upsample_scales):
            layers += [nn.LeakyReLU(0.2)]
            layers += [
                nn.ConvTranspose1d(
                    channels // (2**i),
                    channels // (2 ** (i + 1)),
                    upsample_scale * 2,
                    stride=upsample_scale,
                    padding=upsample_scale // 2 + upsample_scale % 2,
                    output_padding=upsample_scale % 2,
                )  # fmt: skip
            ]
            for j in range(stacks):
                layers += [PwgResidualStack(stack_kernel_size, channels // (2 ** (i + 1)), stack_kernel_size**j)]
        layers += [nn.LeakyReLU(0.2)]
        layers += [
            nn.ReflectionPad1d((kernel_size - 1) // 2),
            nn.Conv1d(channels // (2 ** (i + 1)), out_channels, kernel_size),
        ]
        layers += [nn.Tanh()]
        self.melgan = nn.Sequential(*layers)

        def _apply_weight_norm(m):
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                weight_norm(m)

        self.apply(_apply_weight_norm)
        self.pqmf = None

    def forward(self, c):
        return self.melgan(c)


def design_prototype_filter(taps=62, cutoff_ratio=0.142, beta=9.0):
    import numpy as np
    from scipy.signal.windows import kaiser

    omega_c = np.pi * cutoff_ratio
    with np.errstate(invalid="ignore"):
        h_i = np.sin(omega_c * (np.arange(taps + 1) - 0.5 * taps)) / (np.pi * (np.arange(taps + 1) - 0.5 * taps))
    h_i[taps // 2] = np.cos(0) * cutoff_ratio
    return h_i * kaiser(taps + 1, beta)


class PQMF(nn.Module):
    def __init__(self, subbands=4, taps=62, cutoff_ratio=0.142, beta=9.0):
        super().__init__()
        import numpy as np

        h_proto = design_prototype_filter(taps, cutoff_ratio, beta)
        h_synthesis = np.zeros((subbands, len(h_proto)))
        for k in range(subbands):
            h_synthesis[k] = (
                2 * h_proto
                * np.cos((2 * k + 1) * (np.pi / (2 * subbands)) * (np.arange(taps + 1) - (taps / 2)) - (-1) ** k * np.pi / 4)
            )  # fmt: skip
        self.register_buffer("synthesis_filter", torch.from_numpy(h_synthesis).float().unsqueeze(0))
        updown_filter = torch.zeros((subbands, subbands, subbands)).float()
        for k in range(subbands):
            updown_filter[k, k, 0] = 1.0
        self.register_buffer("updown_filter", updown_filter)
        self.subbands = subbands
        self.pad_fn = nn.ConstantPad1d(taps // 2, 0.0)

    def synthesis(self, x):
        x = F.conv_transpose1d(x, self.updown_filter * self.subbands, stride=self.subbands)
        return F.conv1d(self.pad_fn(x), self.synthesis_filter)


# --- Vocos (Siuzdak 2023), written from the authors' vocos/modules.py, models.py, heads.py,
# spectral_ops.py, pretrained.py (Vocos.decode, codes_to_features) and feature_extractors.py
class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are rows of embeddings picked by ``cond_embedding_id``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps, self.dim = eps, embedding_dim
        self.scale = nn.Embedding(num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        self.shift = nn.Embedding(num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        torch.nn.init.ones_(self.scale.weight)
        torch.nn.init.zeros_(self.shift.weight)

    def forward(self, x, cond_embedding_id):
        scale = self.scale(cond_embedding_id)
        shift = self.shift(cond_embedding_id)
        x = nn.functional.layer_norm(x, (self.dim,), eps=self.eps)
        return x * scale + shift


class VocosConvNeXtBlock(nn.Module):
    """ConvNeXtBlock: depthwise conv k7, LayerNorm (channels last), Linear, GELU, Linear, gamma, residual."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init_value: float, adanorm_num_embeddings=None):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.adanorm = adanorm_num_embeddings is not None
        if adanorm_num_embeddings:
            self.norm = AdaLayerNorm(adanorm_num_embeddings, dim, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim), requires_grad=True)

    def forward(self, x, cond_embedding_id=None):
        residual = x
        x = self.dwconv(x)
        x = x.transpose(1, 2)
        if self.adanorm:
            x = self.norm(x, cond_embedding_id)
        else:
            x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.transpose(1, 2)
        return residual + x


class VocosBackbone(nn.Module):
    def __init__(self, input_channels, dim, intermediate_dim, num_layers, adanorm_num_embeddings=None):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.adanorm = adanorm_num_embeddings is not None
        if adanorm_num_embeddings:
            self.norm = AdaLayerNorm(adanorm_num_embeddings, dim, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            [
                VocosConvNeXtBlock(dim, intermediate_dim, 1 / num_layers, adanorm_num_embeddings)
                for _ in range(num_layers)
            ]
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x, bandwidth_id=None):
        x = self.embed(x)
        if self.adanorm:
            x = self.norm(x.transpose(1, 2), cond_embedding_id=bandwidth_id)
        else:
            x = self.norm(x.transpose(1, 2))
        x = x.transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond_embedding_id=bandwidth_id)
        return self.final_layer_norm(x.transpose(1, 2))


class VocosISTFT(nn.Module):
    def __init__(self, n_fft: int, hop_length: int, win_length: int, padding: str = "same"):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length, self.padding = n_fft, hop_length, win_length, padding
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, spec):
        if self.padding == "center":  # fallback to pytorch native implementation
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)
        pad = (self.win_length - self.hop_length) // 2
        _, _, frames = spec.shape
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        size = (frames - 1) * self.hop_length + self.win_length
        fold = dict(output_size=(1, size), kernel_size=(1, self.win_length), stride=(1, self.hop_length))
        y = torch.nn.functional.fold(ifft, **fold)[:, 0, 0, pad:-pad]
        window_sq = self.window.square().expand(1, frames, -1).transpose(1, 2)
        envelope = torch.nn.functional.fold(window_sq, **fold).squeeze()[pad:-pad]
        return y / envelope


class VocosISTFTHead(nn.Module):
    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "same"):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = VocosISTFT(n_fft, hop_length, n_fft, padding)

    def forward(self, x):
        x = self.out(x).transpose(1, 2)
        mag, p = x.chunk(2, dim=1)
        mag = torch.clip(torch.exp(mag), max=1e2)
        return self.istft(mag * (torch.cos(p) + 1j * torch.sin(p)))


def melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate):
    """torchaudio.functional.melscale_fbanks, HTK scale, norm None (float32, as torchaudio's)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_min = 2595.0 * math.log10(1.0 + (f_min / 700.0))
    m_max = 2595.0 * math.log10(1.0 + (f_max / 700.0))
    m_pts = torch.linspace(m_min, m_max, n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down_slopes = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up_slopes = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down_slopes, up_slopes))


class MelSpectrogramFeatures(nn.Module):
    """Vocos's feature extractor: torchaudio's MelSpectrogram (the stand-in here is written from
    torchaudio's Spectrogram and MelScale: torch.stft centred with reflect padding, |X|, the HTK
    filterbank) and safe_log, log(clip(x, 1e-7))."""

    def __init__(self, sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft))
        self.register_buffer("fb", melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate))

    def forward(self, audio):  # [B, samples] -> [B, n_mels, frames]
        spec = torch.stft(
            audio, self.n_fft, self.hop_length, self.n_fft, self.window, center=True, pad_mode="reflect",
            normalized=False, onesided=True, return_complex=True,
        ).abs()  # fmt: skip
        mel = torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)
        return torch.log(torch.clip(mel, min=1e-7))


class EncodecFeatures(nn.Module):
    """The decoding half of Vocos's EncodecFeatures: the first codebooks of EnCodec 24 kHz stacked."""

    def __init__(self, num_q: int = 16, bins: int = 1024, dim: int = 128):
        super().__init__()
        self.bins = bins
        self.codebook_weights = nn.Parameter(torch.randn(num_q * bins, dim), requires_grad=False)


class Vocos(nn.Module):
    """Vocos.decode(features[, bandwidth_id]) = head(backbone(features)); a [B, samples] waveform.
    ``vocos-mel-24khz`` (the default arguments: the hub's config.yaml, head padding "center") or,
    with ``encodec=True``, ``vocos-encodec-24khz`` (128-channel EnCodec embeddings, adaptive
    LayerNorm over the 4 bandwidths, n_fft 1280, hop 320, "same")."""

    def __init__(
        self,
        mels=100,
        dim=512,
        intermediate_dim=1536,
        num_layers=8,
        n_fft=1024,
        hop_length=256,
        padding="center",
        adanorm_num_embeddings=None,
        encodec=False,
    ):
        super().__init__()
        if encodec:
            self.feature_extractor = EncodecFeatures()
        self.backbone = VocosBackbone(mels, dim, intermediate_dim, num_layers, adanorm_num_embeddings)
        self.head = VocosISTFTHead(dim, n_fft, hop_length, padding)

    @classmethod
    def encodec_24khz(cls):
        return cls(128, 384, 1152, 8, 1280, 320, "same", 4, encodec=True)

    def decode(self, features, bandwidth_id=None):
        return self.head(self.backbone(features, bandwidth_id=bandwidth_id))

    def codes_to_features(self, codes):
        """(K, L) or (K, B, L) codes → (B, 128, L) features: Σ_k codebook_weights[k·bins + code]."""
        if codes.dim() == 2:
            codes = codes.unsqueeze(1)
        n_bins = self.feature_extractor.bins
        offsets = torch.arange(0, n_bins * len(codes), n_bins, device=codes.device)
        embeddings_idxs = codes + offsets.view(-1, 1, 1)
        features = torch.nn.functional.embedding(embeddings_idxs, self.feature_extractor.codebook_weights).sum(dim=0)
        return features.transpose(1, 2)
