"""EnCodec 24 kHz (Défossez et al. 2022), written from the authors' ``encodec`` package
(``modules/conv.py``, ``modules/seanet.py``, ``modules/lstm.py``, ``quantization/core_vq.py``,
``model.py``): the causal SEANet encoder and decoder, weight-normed as the released model, and the
residual vector quantizer's encode and decode. Only what decoding and ``encode`` use is here
(no training, no segments: the 24 kHz model has none). Its ``state_dict`` is what
``encodec_24khz-d7cc33bc.th`` holds."""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import weight_norm


def get_extra_padding_for_conv1d(x, kernel_size: int, stride: int, padding_total: int = 0) -> int:
    length = x.shape[-1]
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def pad1d(x, paddings, mode: str = "zero", value: float = 0.0):
    """F.pad that allows reflect padding of small inputs: zeros first, cut off again."""
    length = x.shape[-1]
    padding_left, padding_right = paddings
    if mode == "reflect":
        max_pad = max(padding_left, padding_right)
        extra_pad = 0
        if length <= max_pad:
            extra_pad = max_pad - length + 1
            x = F.pad(x, (0, extra_pad))
        padded = F.pad(x, paddings, mode, value)
        end = padded.shape[-1] - extra_pad
        return padded[..., :end]
    return F.pad(x, paddings, mode, value)


def unpad1d(x, paddings):
    padding_left, padding_right = paddings
    return x[..., padding_left : x.shape[-1] - padding_right]


class NormConv1d(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(*args, **kwargs))
        self.norm = nn.Identity()

    def forward(self, x):
        return self.norm(self.conv(x))


class NormConvTranspose1d(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.convtr = weight_norm(nn.ConvTranspose1d(*args, **kwargs))
        self.norm = nn.Identity()

    def forward(self, x):
        return self.norm(self.convtr(x))


class SConv1d(nn.Module):
    """Causal Conv1d: all padding on the left, in reflect mode (the released model's)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, causal=True, pad_mode="reflect"):
        super().__init__()
        self.conv = NormConv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        self.causal, self.pad_mode = causal, pad_mode

    def forward(self, x):
        kernel_size = self.conv.conv.kernel_size[0]
        stride = self.conv.conv.stride[0]
        dilation = self.conv.conv.dilation[0]
        padding_total = (kernel_size - 1) * dilation - (stride - 1)
        extra_padding = get_extra_padding_for_conv1d(x, kernel_size, stride, padding_total)
        if self.causal:
            x = pad1d(x, (padding_total, extra_padding), mode=self.pad_mode)
        else:
            padding_right = padding_total // 2
            padding_left = padding_total - padding_right
            x = pad1d(x, (padding_left, padding_right + extra_padding), mode=self.pad_mode)
        return self.conv(x)


class SConvTranspose1d(nn.Module):
    """Causal ConvTranspose1d: trim_right_ratio 1, all of K − stride cut on the right."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, trim_right_ratio=1.0):
        super().__init__()
        self.convtr = NormConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        self.trim_right_ratio = trim_right_ratio

    def forward(self, x):
        kernel_size = self.convtr.convtr.kernel_size[0]
        stride = self.convtr.convtr.stride[0]
        padding_total = kernel_size - stride
        y = self.convtr(x)
        padding_right = math.ceil(padding_total * self.trim_right_ratio)
        padding_left = padding_total - padding_right
        return unpad1d(y, (padding_left, padding_right))


class SLSTM(nn.Module):
    def __init__(self, dimension: int, num_layers: int = 2, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x):
        x = x.permute(2, 0, 1)
        y, _ = self.lstm(x)
        if self.skip:
            y = y + x
        return y.permute(1, 2, 0)


class SEANetResnetBlock(nn.Module):
    def __init__(self, dim, kernel_sizes=(3, 1), dilations=(1, 1), compress=2, true_skip=False):
        super().__init__()
        hidden = dim // compress
        block = []
        for i, (kernel_size, dilation) in enumerate(zip(kernel_sizes, dilations)):
            in_chs = dim if i == 0 else hidden
            out_chs = dim if i == len(kernel_sizes) - 1 else hidden
            block += [nn.ELU(alpha=1.0), SConv1d(in_chs, out_chs, kernel_size=kernel_size, dilation=dilation)]
        self.block = nn.Sequential(*block)
        self.shortcut = nn.Identity() if true_skip else SConv1d(dim, dim, kernel_size=1)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class SEANetEncoder(nn.Module):
    def __init__(self, channels=1, dimension=128, n_filters=32, ratios=(8, 5, 4, 2), lstm=2):
        super().__init__()
        self.ratios = list(reversed(ratios))
        mult = 1
        model = [SConv1d(channels, mult * n_filters, 7)]
        for ratio in self.ratios:
            model += [SEANetResnetBlock(mult * n_filters, dilations=[1, 1])]
            model += [nn.ELU(alpha=1.0), SConv1d(mult * n_filters, mult * n_filters * 2, ratio * 2, stride=ratio)]
            mult *= 2
        model += [SLSTM(mult * n_filters, num_layers=lstm)]
        model += [nn.ELU(alpha=1.0), SConv1d(mult * n_filters, dimension, 7)]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class SEANetDecoder(nn.Module):
    def __init__(self, channels=1, dimension=128, n_filters=32, ratios=(8, 5, 4, 2), lstm=2):
        super().__init__()
        mult = int(2 ** len(ratios))
        model = [SConv1d(dimension, mult * n_filters, 7), SLSTM(mult * n_filters, num_layers=lstm)]
        for ratio in ratios:
            model += [nn.ELU(alpha=1.0), SConvTranspose1d(mult * n_filters, mult * n_filters // 2, ratio * 2, ratio)]
            model += [SEANetResnetBlock(mult * n_filters // 2, dilations=[1, 1])]
            mult //= 2
        model += [nn.ELU(alpha=1.0), SConv1d(n_filters, channels, 7)]
        self.model = nn.Sequential(*model)

    def forward(self, z):
        return self.model(z)


class EuclideanCodebook(nn.Module):
    def __init__(self, dim: int, codebook_size: int):
        super().__init__()
        embed = nn.init.kaiming_uniform_(torch.empty(codebook_size, dim))
        self.register_buffer("inited", torch.Tensor([True]))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def encode(self, x):  # [B, T, D] -> [B, T]
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        embed = self.embed.t()
        dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True))
        return dist.max(dim=-1).indices.view(*shape[:-1])

    def decode(self, embed_ind):
        return F.embedding(embed_ind, self.embed)


class VectorQuantization(nn.Module):
    def __init__(self, dim: int, codebook_size: int):
        super().__init__()
        self.project_in = nn.Identity()
        self.project_out = nn.Identity()
        self._codebook = EuclideanCodebook(dim, codebook_size)

    def encode(self, x):  # [B, D, T]
        return self._codebook.encode(self.project_in(x.transpose(1, 2)))

    def decode(self, embed_ind):
        return self.project_out(self._codebook.decode(embed_ind)).transpose(1, 2)


class ResidualVectorQuantization(nn.Module):
    def __init__(self, num_quantizers: int, dim: int, codebook_size: int):
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantization(dim, codebook_size) for _ in range(num_quantizers)])

    def encode(self, x, n_q=None):
        residual, all_indices = x, []
        for layer in self.layers[: n_q or len(self.layers)]:
            indices = layer.encode(residual)
            residual = residual - layer.decode(indices)
            all_indices.append(indices)
        return torch.stack(all_indices)

    def decode(self, q_indices):
        quantized_out = torch.tensor(0.0, device=q_indices.device)
        for i, indices in enumerate(q_indices):
            quantized_out = quantized_out + self.layers[i].decode(indices)
        return quantized_out


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, dimension=128, n_q=32, bins=1024):
        super().__init__()
        self.n_q, self.bins = n_q, bins
        self.vq = ResidualVectorQuantization(n_q, dimension, bins)

    def get_num_quantizers_for_bandwidth(self, frame_rate, bandwidth=None) -> int:
        bw_per_q = math.log2(self.bins) * frame_rate / 1000
        return int(max(1, math.floor(bandwidth / bw_per_q))) if bandwidth and bandwidth > 0.0 else self.n_q

    def encode(self, x, frame_rate, bandwidth=None):
        return self.vq.encode(x, n_q=self.get_num_quantizers_for_bandwidth(frame_rate, bandwidth))

    def decode(self, codes):
        return self.vq.decode(codes)


class EncodecModel(nn.Module):
    """encodec_model_24khz: causal, weight_norm, 1.5–24 kbps (2–32 codebooks of 1024), 75 Hz."""

    target_bandwidths = [1.5, 3.0, 6.0, 12.0, 24.0]

    def __init__(self):
        super().__init__()
        self.encoder = SEANetEncoder()
        self.decoder = SEANetDecoder()
        self.sample_rate = 24000
        self.frame_rate = math.ceil(self.sample_rate / 320)
        n_q = int(1000 * self.target_bandwidths[-1] // (self.frame_rate * 10))
        self.quantizer = ResidualVectorQuantizer(128, n_q, 1024)
        self.bandwidth = None

    def set_target_bandwidth(self, bandwidth: float):
        if bandwidth not in self.target_bandwidths:
            raise ValueError(bandwidth)
        self.bandwidth = bandwidth

    def encode(self, x):
        """``[B, 1, samples]`` → ``[(codes [B, n_q, frames], None)]`` (one frame: no segments)."""
        codes = self.quantizer.encode(self.encoder(x), self.frame_rate, self.bandwidth)
        return [(codes.transpose(0, 1), None)]

    def decode(self, encoded_frames):
        ((codes, scale),) = encoded_frames
        return self.decoder(self.quantizer.decode(codes.transpose(0, 1)))
