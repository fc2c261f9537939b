"""The codebooks kind against residual-VQ decodes written from EnCodec's (core_vq.py) and DAC's
(dac/nn/quantize.py) code: integer codes in, the summed latent out, whole and streamed; fewer
codebook rows than the model has (a lower bitrate); bad codes named by row and frame."""

import numpy as np
import pytest
import soundfile as sf
import torch
from clitools import cli, one_error_line
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stream import chunk_schedules
from torch import nn
from torch.nn.utils import weight_norm

import convt_audio
from convt_audio.model.config import parse_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import load_stack

N_Q, BINS, DIM = 6, 16, 5


def encodec_decode(codes, embeds):
    """EnCodec's ResidualVectorQuantization.decode: Σ over the codebooks given of embed[code]."""
    out = 0.0
    for i, indices in enumerate(codes):  # codes: (n_q, B, T)
        out = out + nn.functional.embedding(indices, embeds[i]).transpose(1, 2)
    return out


class DacQuantizer(nn.Module):
    """DAC's ResidualVectorQuantize.from_codes: per codebook, embedding then the weight-normed out_proj, summed."""

    def __init__(self, n_q: int, bins: int, dim: int, latent: int):
        super().__init__()
        self.quantizers = nn.ModuleList()
        for _ in range(n_q):
            q = nn.Module()
            q.codebook = nn.Embedding(bins, dim)
            q.out_proj = weight_norm(nn.Conv1d(dim, latent, 1))
            self.quantizers.append(q)

    def from_codes(self, codes):  # codes: (B, n_q, T)
        z_q = 0.0
        for i in range(codes.shape[1]):
            z_p = self.quantizers[i].codebook(codes[:, i, :]).transpose(1, 2)
            z_q = z_q + self.quantizers[i].out_proj(z_p)
        return z_q


def _encodec_stack(tmp_path, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeds = [torch.randn(BINS, DIM, generator=generator, dtype=torch.float64) for _ in range(N_Q)]
    torch.save({f"quantizer.vq.layers.{i}._codebook.embed": e for i, e in enumerate(embeds)}, tmp_path / "q.pt")
    config = parse_config(
        {"layers": [{"type": "codebooks", "codebooks": N_Q, "bins": BINS, "dim": DIM, "key": "quantizer.vq"}]}
    )
    stack, unused = load_stack(config, tmp_path / "q.pt", dtype=torch.float64)
    assert unused == []
    return embeds, stack


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, N_Q), frames=st.integers(1, 60), schedule=chunk_schedules, seed=st.integers(0, 99))
def test_encodec_codes_decode_to_the_summed_embeddings(tmp_path_factory, rows, frames, schedule, seed):
    embeds, stack = _encodec_stack(tmp_path_factory.mktemp("q"), seed)
    codes = torch.from_numpy(np.random.default_rng(seed).integers(0, BINS, (rows, 1, frames)))
    want = encodec_decode(codes, embeds)
    x = torch.full((1, N_Q, frames), float(convt_audio.kinds.codebooks.ABSENT), dtype=torch.float64)
    x[0, :rows] = codes[:, 0].double()  # the rows a lower bitrate lacks are absent
    torch.testing.assert_close(stack.forward(x), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(run_chunked(stack, x, schedule), want, rtol=0, atol=1e-12)


def test_dac_codes_go_through_each_codebooks_weight_normed_projection(tmp_path):
    torch.manual_seed(0)
    quantizer = DacQuantizer(N_Q, BINS, 4, 7).double()
    torch.save({f"quantizer.{k}": v for k, v in quantizer.state_dict().items()}, tmp_path / "dac.pt")
    config = parse_config(
        {
            "layers": [
                {"type": "codebooks", "codebooks": N_Q, "bins": BINS, "dim": 4, "projection": 7, "layout": "dac",
                 "key": "quantizer"}
            ]
        }
    )  # fmt: skip
    stack, unused = load_stack(config, tmp_path / "dac.pt", dtype=torch.float64)
    assert unused == []
    codes = torch.from_numpy(np.random.default_rng(3).integers(0, BINS, (2, N_Q, 33)))
    with torch.no_grad():
        want = quantizer.from_codes(codes)
    torch.testing.assert_close(stack.forward(codes.double()), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(run_chunked(stack, codes.double(), 5), want, rtol=0, atol=1e-12)


def _codes_config(tmp_path):
    embeds, _ = _encodec_stack(tmp_path)
    (tmp_path / "c.yaml").write_text(
        "output_sample_rate: 16000\nlayers:\n"
        f"  - {{type: codebooks, codebooks: {N_Q}, bins: {BINS}, dim: {DIM}, key: quantizer.vq}}\n"
        f"  - {{type: conv_transpose1d, in_channels: {DIM}, out_channels: 1, kernel_size: 4, stride: 4, bias: false}}\n"
    )
    state = torch.load(tmp_path / "q.pt")
    state["1.weight"] = torch.ones(DIM, 1, 4, dtype=torch.float64) * 0.01
    torch.save(state, tmp_path / "q.pt")
    return embeds


def test_integer_code_files_run_from_the_command_line_and_the_api(tmp_path):
    embeds = _codes_config(tmp_path)
    codes = np.random.default_rng(0).integers(0, BINS, (4, 50))  # 4 of the 6 codebooks: a lower bitrate
    np.save(tmp_path / "codes.npy", codes)
    done = cli("run", "codes.npy", "-c", "c.yaml", "-w", "q.pt", "-o", "out.wav", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = sf.read(str(tmp_path / "out.wav"), dtype="float64")[0]
    latent = encodec_decode(torch.from_numpy(codes)[:, None], embeds)
    want = torch.nn.functional.conv_transpose1d(latent, torch.ones(DIM, 1, 4, dtype=torch.float64) * 0.01, stride=4)
    assert got.shape == (200,) and np.abs(got - want.numpy()[0, 0]).max() < 1e-6
    torch.save(torch.from_numpy(codes), tmp_path / "codes.pt")  # as an encoder returns them
    assert cli("run", "codes.pt", "-c", "c.yaml", "-w", "q.pt", "-o", "pt.wav", cwd=tmp_path).returncode == 0
    model = convt_audio.load(str(tmp_path / "c.yaml"), str(tmp_path / "q.pt"), dtype="float64", device="cpu")
    assert np.abs(model(codes)[0] - want.numpy()[0, 0]).max() < 1e-12  # integer codes are not PCM to scale


@pytest.mark.parametrize(
    "codes, message",
    [
        (lambda c: c.__setitem__((2, 5), BINS), f"codes row 2, frame 5: {BINS} is outside [0, {BINS})"),
        (lambda c: c.__setitem__((1, 40), -3), "codes row 1, frame 40: -3 is outside"),
    ],
)
def test_bad_codes_fail_the_file_naming_row_and_frame(tmp_path, codes, message):
    _codes_config(tmp_path)
    array = np.random.default_rng(0).integers(0, BINS, (N_Q, 50))
    codes(array)
    np.save(tmp_path / "bad.npy", array)
    done = cli("run", "bad.npy", "-c", "c.yaml", "-w", "q.pt", "-o", "out.wav", "--chunk", "7", cwd=tmp_path)
    assert done.returncode == 1
    one_error_line(done.stderr, message)
    assert not (tmp_path / "out.wav").exists()


def test_more_codebook_rows_than_the_model_has_fail_the_file(tmp_path):
    _codes_config(tmp_path)
    np.save(tmp_path / "many.npy", np.zeros((N_Q + 2, 10), dtype=np.int64))
    done = cli("run", "many.npy", "-c", "c.yaml", "-w", "q.pt", "-o", "out.wav", cwd=tmp_path)
    assert done.returncode == 1
    one_error_line(done.stderr, f"holds {N_Q + 2} codebook rows; the model has {N_Q} codebooks")
