"""The istft kind against Vocos's ISTFT and ISTFTHead (written from the authors' spectral_ops.py
and heads.py), and torch.istft for ``center``: whole and streamed at any chunk sizes, one frame
included, with the window read from the checkpoint's buffer."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stream import chunk_schedules
from torch import nn

from convt_audio.core.errors import ConfigError
from convt_audio.model.config import parse_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_stack


class ISTFT(nn.Module):
    """Vocos's ISTFT: irfft, window, fold (overlap-add), trim, divide by the folded window²."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, padding: str = "same"):
        super().__init__()
        self.padding, self.n_fft, self.hop_length, self.win_length = padding, n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, spec):
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)
        pad = (self.win_length - self.hop_length) // 2
        _, _, frames = spec.shape
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward")
        ifft = ifft * self.window[None, :, None]
        size = (frames - 1) * self.hop_length + self.win_length
        fold = dict(output_size=(1, size), kernel_size=(1, self.win_length), stride=(1, self.hop_length))
        y = nn.functional.fold(ifft, **fold)[:, 0, 0, pad:-pad]
        window_sq = self.window.square().expand(1, frames, -1).transpose(1, 2)
        envelope = nn.functional.fold(window_sq, **fold).squeeze()[pad:-pad]
        assert (envelope > 1e-11).all()
        return y / envelope


class ISTFTHead(nn.Module):
    """Vocos's head: Linear to n_fft + 2, exp'd magnitude clipped at 100, phase, ISTFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "same"):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, n_fft, padding)

    def forward(self, x):  # [B, frames, dim], channels last as the backbone gives it
        x = self.out(x).transpose(1, 2)
        mag, p = x.chunk(2, dim=1)
        mag = torch.clip(torch.exp(mag), max=1e2)
        return self.istft(mag * (torch.cos(p) + 1j * torch.sin(p)))


def _head_stack(tmp_path, dim, n_fft, hop, padding, seed):
    torch.manual_seed(seed)
    head = ISTFTHead(dim, n_fft, hop, padding).double().eval()
    torch.save({f"head.{k}": v for k, v in head.state_dict().items()}, tmp_path / "vocos.pt")
    config = parse_config(
        {
            "layers": [
                {"type": "linear", "in_features": dim, "out_features": n_fft + 2, "key": "head.out"},
                {"type": "istft", "n_fft": n_fft, "hop_length": hop, "padding": padding, "key": "head.istft"},
            ]
        }
    )
    stack, unused = load_stack(config, tmp_path / "vocos.pt", dtype=torch.float64)
    assert unused == []
    return head, stack


@settings(max_examples=40, deadline=None)
@given(
    n_fft=st.sampled_from([8, 16, 32]),
    hop_divisor=st.sampled_from([2, 4]),
    padding=st.sampled_from(["same", "center"]),
    frames=st.integers(1, 40),
    schedule=chunk_schedules,
    seed=st.integers(0, 99),
)
def test_the_head_equals_vocos_whole_and_streamed(
    tmp_path_factory, n_fft, hop_divisor, padding, frames, schedule, seed
):
    hop = n_fft // hop_divisor
    head, stack = _head_stack(tmp_path_factory.mktemp("istft"), 6, n_fft, hop, padding, seed)
    if stack.output_frames(frames) < 1:
        return  # center trims n_fft/2 from each end: one frame gives nothing (torch.istft refuses it)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(2, 6, frames)))
    with torch.no_grad():
        want = head(x.transpose(1, 2))[:, None, :]
    scale = want.abs().max()
    assert stack.output_frames(frames) == want.shape[-1]
    assert (stack.forward(x) - want).abs().max() / scale < 1e-12
    assert (run_chunked(stack, x, schedule) - want).abs().max() / scale < 1e-12


def test_real_and_imaginary_input_and_the_stored_window(tmp_path):
    """With real_imag input the kind is Vocos's ISTFT alone; the window is the one stored."""
    istft = ISTFT(16, 4, 16).double()
    istft.window.copy_(torch.hann_window(16).double() * 0.9 + 0.05)  # not a Hann: proves it is read
    torch.save({f"head.istft.{k}": v for k, v in istft.state_dict().items()}, tmp_path / "w.pt")
    config = parse_config(
        {"layers": [{"type": "istft", "n_fft": 16, "hop_length": 4, "input": "real_imag", "key": "head.istft"}]}
    )
    stack, _ = load_stack(config, tmp_path / "w.pt", dtype=torch.float64)
    spec = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 18, 25)))
    want = istft(torch.complex(spec[:, :9], spec[:, 9:]))[:, None, :]
    torch.testing.assert_close(stack.forward(spec), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(run_chunked(stack, spec, 1), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"n_fft": 15, "hop_length": 4}, r"n_fft: must be even"),
        ({"n_fft": 16, "hop_length": 5}, r"padding: same needs n_fft − hop_length even"),
        ({"n_fft": 16, "hop_length": 4, "padding": "valid"}, r"padding: 'valid' is not one of"),
        ({"n_fft": 16, "hop_length": 4, "input": "complex"}, r"input: 'complex' is not one of"),
    ],
)
def test_bad_configs_name_the_field(layer, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"layers": [{"type": "istft", **layer}]})


@pytest.mark.parametrize("n_fft, hop", [(16, 4), (1024, 256), (1280, 320), (12, 5)])
def test_the_fft_overlap_add_equals_the_kernel(n_fft, hop):
    """float32/float64 compute the overlap-add by irfft and fold; the window × inverse-DFT kernel
    (what half precisions use) gives the same sums."""
    from convt_audio.kinds import IstftSpec
    from convt_audio.kinds.conv_torch import conv_transpose1d

    spec = IstftSpec(n_fft, hop, padding="center", input="real_imag")
    x = torch.randn(2, n_fft + 2, 9, dtype=torch.float64)
    window = torch.hann_window(n_fft, dtype=torch.float64) + 0.1
    untrimmed = spec.conv().__class__(n_fft + 2, 1, n_fft, stride=hop, bias=False)
    want = conv_transpose1d(x, spec.basis(window), None, untrimmed)
    torch.testing.assert_close(spec.overlap_add(x, window), want, rtol=0, atol=1e-12)


def test_a_matrix_product_stack_gets_blocks_of_256_frames():
    """Vocos's Linear layers run one matrix product per block: 256 rows, not the 64 frames its
    widest activation (1536 channels) alone would give; HiFi-GAN keeps its 64."""
    from convt_audio.model.config import load_config
    from convt_audio.model.engines import build_engine

    for name, frames in (("vocos-mel-24khz", 256), ("hifigan-v1", 64)):
        config = load_config(name)
        params = [{k: v.numpy() for k, v in leaf.init_params().items()} for leaf in config.leaves]
        engine = build_engine(config, params, "cpu", "float32")
        assert engine.preferred_chunk() == frames, name
