"""Weights: every format and naming scheme, weight-norm folding, and the failures."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from convt_audio.core.errors import ConfigError, WeightsError
from convt_audio.model.config import parse_config
from convt_audio.model.stack import run_chunked
from convt_audio.model.weights import fold_weight_norm, load_stack, match_tensors, read_tensors, write_tensors

LAYERS = [
    {"type": "conv1d", "in_channels": 1, "out_channels": 8, "kernel_size": 7, "padding": 3},
    {"type": "conv_transpose1d", "in_channels": 8, "out_channels": 4, "kernel_size": 8, "stride": 4, "padding": 2},
    {"type": "leaky_relu", "negative_slope": 0.1},
    {
        "type": "conv_transpose1d",
        "in_channels": 4,
        "out_channels": 2,
        "kernel_size": 4,
        "stride": 2,
        "padding": 1,
        "groups": 2,
    },
    {"type": "conv1d", "in_channels": 2, "out_channels": 1, "kernel_size": 7, "padding": 3},
    {"type": "tanh"},
]


def sequential(weight_norm_old=False):
    from torch.nn.utils import parametrizations

    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv1d(1, 8, 7, padding=3),
        parametrizations.weight_norm(nn.ConvTranspose1d(8, 4, 8, stride=4, padding=2)),
        nn.LeakyReLU(0.1),
        nn.ConvTranspose1d(4, 2, 4, stride=2, padding=1, groups=2),
        nn.Conv1d(2, 1, 7, padding=3),
        nn.Tanh(),
    )
    if weight_norm_old:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seq[4] = nn.utils.weight_norm(seq[4])
    return seq.eval()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".safetensors", ".npz"])
def test_a_real_sequential_loads_in_every_format(tmp_path, suffix):
    seq = sequential(weight_norm_old=True)
    state = {k: v.detach().contiguous() for k, v in seq.state_dict().items()}
    path = tmp_path / f"w{suffix}"
    if suffix in (".pt", ".pth", ".ckpt"):
        torch.save(seq.state_dict(), path)
    else:
        write_tensors(path.with_suffix(".safetensors" if suffix == ".safetensors" else ".npz"), state)
    stack, unused = load_stack(parse_config({"layers": LAYERS}), path)
    assert unused == []
    x = torch.randn(1, 1, 300)
    with torch.no_grad():
        want = seq(x)
    torch.testing.assert_close(stack.forward(x), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(run_chunked(stack, x, [7, 1, 33]), want, rtol=1e-5, atol=1e-6)


def test_hifigan_style_nested_checkpoint_with_keys(tmp_path):
    from torch.nn.utils import parametrizations

    torch.manual_seed(1)
    ups = nn.ModuleList([parametrizations.weight_norm(nn.ConvTranspose1d(4, 2, 4, 2, 1))])
    post = nn.Conv1d(2, 1, 3, padding=1)
    checkpoint = {
        "generator": {
            **{f"ups.{k}": v for k, v in ups.state_dict().items()},
            **{f"conv_post.{k}": v for k, v in post.state_dict().items()},
        },
        "optimizer": {"step": 10},
        "epoch": 3,
    }
    path = tmp_path / "g_00100000"
    path = path.with_suffix(".pt")
    torch.save(checkpoint, path)
    config = parse_config(
        {
            "weights_prefix": "generator.",
            "layers": [
                {
                    "type": "conv_transpose1d",
                    "in_channels": 4,
                    "out_channels": 2,
                    "kernel_size": 4,
                    "stride": 2,
                    "padding": 1,
                    "key": "ups.0",
                },
                {
                    "type": "conv1d",
                    "in_channels": 2,
                    "out_channels": 1,
                    "kernel_size": 3,
                    "padding": 1,
                    "key": "conv_post",
                },
            ],
        }
    )
    stack, unused = load_stack(config, path)
    assert unused == []
    x = torch.randn(1, 4, 20)
    with torch.no_grad():
        want = post(ups[0](x))
    torch.testing.assert_close(stack.forward(x), want, rtol=1e-5, atol=1e-6)


def test_unused_tensors_are_reported(tmp_path):
    seq = sequential()
    state = dict(seq.state_dict())
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    _, unused = load_stack(parse_config({"layers": LAYERS}), path)
    assert unused == ["extra.weight"]


def test_missing_tensor_names_tensor_and_shape(tmp_path):
    seq = sequential()
    state = dict(seq.state_dict())
    del state["4.bias"]
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        load_stack(parse_config({"layers": LAYERS}), path)
    assert str(info.value).startswith(f"{path}: missing tensor '4.bias' for layers[4] (conv1d), expected shape (1,)")


@pytest.mark.parametrize(
    "saved, says",
    [
        (torch.zeros(3), "; the file holds one unnamed tensor, not a state dict of named ones"),
        ({}, "; the file holds no tensors"),
        ({"state_dict": {f"{i}.w": torch.zeros(1) for i in range(3)}}, "; the file holds 3 tensors under 'state_dict'"),
    ],
)
def test_a_file_with_none_of_the_names_says_what_it_holds(tmp_path, saved, says):
    path = tmp_path / "w.pt"
    torch.save(saved, path)
    with pytest.raises(WeightsError) as info:
        load_stack(parse_config({"layers": LAYERS}), path)
    assert (
        str(info.value) == f"{path}: missing tensor '0.weight' for layers[0] (conv1d), expected shape (8, 1, 7){says}"
    )


def test_wrong_shape_names_expected_and_found(tmp_path):
    state = dict(sequential().state_dict())
    state["0.weight"] = torch.zeros(8, 1, 5)
    path = tmp_path / "w.safetensors"
    write_tensors(path, state)
    with pytest.raises(WeightsError) as info:
        load_stack(parse_config({"layers": LAYERS}), path)
    assert str(info.value) == (
        f"{path}: tensor '0.weight' for layers[0] (conv1d) has shape (8, 1, 5), expected (8, 1, 7)"
    )


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"0.weight": torch.zeros(1), "obj": np.float64(1.0).__class__}, path)
    with pytest.raises(WeightsError, match="weights_only=True refuses to unpickle"):
        read_tensors(path)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("w.safetensors", b"not a safetensors file", "cannot read weights"),
        ("w.npz", b"PK junk", "cannot read weights"),
        ("w.pt", b"junk", "cannot load checkpoint"),
        ("w.bin", b"", "unknown weights format '.bin'"),
    ],
)
def test_unreadable_weights(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        read_tensors(path)


def test_missing_weights_file_and_no_weights_at_all(tmp_path):
    config = parse_config({"layers": LAYERS})
    with pytest.raises(WeightsError, match="weights file not found"):
        load_stack(config, tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="no weights: pass weights='WEIGHTS'"):
        load_stack(config)
    only_activations = parse_config({"layers": [{"type": "snake", "channels": 1}]})
    with pytest.raises(ConfigError, match="no weights"):
        load_stack(only_activations)


def test_weight_norm_folding_along_other_dims():
    v = np.random.default_rng(0).standard_normal((4, 3, 5))
    for dim in (0, 1, 2):
        shape = [1, 1, 1]
        shape[dim] = v.shape[dim]
        g = np.random.default_rng(dim).random(shape) + 0.5
        folded, sources = fold_weight_norm({"a.weight_g": g, "a.weight_v": v})
        want = torch._weight_norm(torch.from_numpy(v), torch.from_numpy(g), dim).numpy()
        np.testing.assert_allclose(folded["a.weight"], want, rtol=1e-12)
        assert sources["a.weight"] == ["a.weight_g", "a.weight_v"]
    folded, _ = fold_weight_norm({"a.weight_g": np.array(2.0), "a.weight_v": v})
    np.testing.assert_allclose(folded["a.weight"], v * 2 / np.sqrt((v**2).sum()))


def test_integer_tensors_are_refused():
    config = parse_config({"layers": [LAYERS[0]]})
    with pytest.raises(WeightsError, match="expected floating point"):
        match_tensors(config, {"0.weight": np.zeros((8, 1, 7), dtype=np.int64), "0.bias": np.zeros(8)})


def test_safetensors_and_npz_load_without_torch(tmp_path):
    import subprocess
    import sys

    write_tensors(tmp_path / "w.safetensors", {"0.weight": np.ones((1, 1, 3), dtype=np.float32)})
    write_tensors(tmp_path / "w.npz", {"0.weight": np.ones((1, 1, 3), dtype=np.float32)})
    code = (
        "import sys; from convt_audio.model.config import parse_config; "
        "from convt_audio.model.weights import load_params; "
        "c = parse_config({'layers': [{'type': 'conv_transpose1d', 'in_channels': 1, "
        "'out_channels': 1, 'kernel_size': 3, 'bias': False}]}); "
        f"load_params(c, {str(tmp_path / 'w.safetensors')!r}); load_params(c, {str(tmp_path / 'w.npz')!r}); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_weight_normed_convolutions_fold_into_the_engines_layout_and_release_the_file(tmp_path):
    """A weight-normed conv1d read for a float32 run is folded straight into the frames-last
    order the engine keeps it in (the engine uses that array as it is: no second copy), equal to
    weight_norm's own weight. A mapped source's pages released after folding are read from the
    file again if asked for: the same values."""
    from torch.nn.utils import parametrizations

    from convt_audio.model.engines import TorchEngine
    from convt_audio.model.weights import load_params, open_tensors

    torch.manual_seed(2)
    conv = parametrizations.weight_norm(nn.Conv1d(64, 48, 5, padding=2))
    path = tmp_path / "g.pt"
    torch.save({"c": conv.state_dict()}, path)
    config = parse_config(
        {
            "layers": [
                {"type": "conv1d", "in_channels": 64, "out_channels": 48, "kernel_size": 5, "padding": 2, "key": "c"}
            ]
        }
    )
    params, unused = load_params(config, path, "float32")
    assert unused == []
    weight = params[0]["weight"]
    assert weight.shape == (48, 64, 5) and weight.transpose(0, 2, 1).flags.c_contiguous
    np.testing.assert_allclose(weight, conv.weight.detach().numpy(), rtol=1e-6, atol=1e-7)
    engine = TorchEngine.build(config, params, device="cpu", dtype="float32")
    assert engine.stack.params[0]["weight"].data_ptr() == weight.ctypes.data
    float64, _ = load_params(config, path, "float64")  # every bit of the fold, as stored
    assert float64[0]["weight"].flags.c_contiguous

    tensors = open_tensors(path)
    name = "c.parametrizations.weight.original1"
    before = np.array(tensors[name])
    tensors.release(name)
    np.testing.assert_array_equal(tensors[name], before)
