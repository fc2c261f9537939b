"""YAML configs: schema, errors with file and YAML path, naming, channels and rates."""

from pathlib import Path

import pytest
import yaml
from clitools import invoke

from convt_audio.core.errors import AudioError, ConfigError
from convt_audio.kinds import ActivationSpec, Conv1dSpec, ConvTranspose1dSpec, SnakeSpec
from convt_audio.model.config import builtin_configs, channel_plan, load_config, parse_config

UP = {"type": "conv_transpose1d", "in_channels": 1, "out_channels": 2, "kernel_size": 4, "stride": 2}


def write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_full_config_parses(tmp_path):
    path = write(
        tmp_path,
        {
            "name": "dec",
            "description": "a decoder",
            "weights": "w.safetensors",
            "weights_prefix": "generator.",
            "channels": "joint",
            "output_sample_rate": 24000,
            "layers": [
                {**UP, "kernel_size": [4], "padding_mode": "reflect", "key": "ups.0"},
                {"type": "leaky_relu", "negative_slope": 0.1},
                {"type": "snake", "channels": 2},
                {"type": "conv1d", "in_channels": 2, "out_channels": 1, "kernel_size": 7, "padding": 3},
                {"type": "elu", "alpha": 0.5},
                {"type": "tanh"},
            ],
        },
    )
    config = load_config(path)
    assert config.name == "dec" and config.channels == "joint"
    assert config.weights == tmp_path / "w.safetensors"
    assert isinstance(config.layers[0], ConvTranspose1dSpec) and config.layers[0].kernel_size == 4
    assert config.layers[1] == ActivationSpec("leaky_relu", negative_slope=0.1)
    assert isinstance(config.layers[2], SnakeSpec) and isinstance(config.layers[3], Conv1dSpec)
    assert config.tensor_names[0] == {"weight": "generator.ups.0.weight", "bias": "generator.ups.0.bias"}
    assert config.tensor_names[2] == {"alpha": "generator.2.alpha"}
    assert config.tensor_names[3] == {"weight": "generator.3.weight", "bias": "generator.3.bias"}
    assert config.output_rate(12000) == 24000
    assert config.feature_rate() == 12000
    with pytest.raises(
        AudioError,
        match=r"input rate 8000 Hz × 2 = 16000 Hz, but .* declares "
        r"output_sample_rate 24000 Hz",
    ):
        config.output_rate(8000)  # a declared rate is a check, never a silent relabel


@pytest.mark.parametrize(
    "layers,message",
    [
        ([{**UP, "stride": 0}], "layers[0].stride: must be a positive integer, got 0"),
        ([{**UP, "kernal_size": 3}], "layers[0].kernal_size: unknown key for conv_transpose1d"),
        (
            [{"type": "conv_transpose1d", "in_channels": 1, "out_channels": 1}],
            "layers[0].kernel_size: required for conv_transpose1d",
        ),
        (
            [{**UP, "padding_mode": "mirror"}],
            "layers[0].padding_mode: 'mirror' is not one of ['circular', 'reflect', 'replicate', 'zeros']",
        ),
        (
            [UP, {**UP, "in_channels": 3}],
            "layers[1].in_channels: 3 does not match the 2 channels the previous layer produces",
        ),
        ([{"type": "upsample"}], "layers[0].type: 'upsample' is not one of"),
        ([UP, {"type": "relu", "inplace": True}], "layers[1].inplace: unknown key for relu"),
        ([{**UP, "output_padding": 2}], "layers[0].output_padding: must be smaller than stride or dilation"),
        ([UP, {"type": "snake", "channels": 3}], "layers[1].channels: 3 does not match the 2 channels"),
        ([UP, {"type": "leaky_relu", "negative_slope": "big"}], "layers[1].negative_slope: must be a finite number"),
        ([UP, {**UP, "in_channels": 2, "key": "0"}], "layers[1].key: tensor name '0.weight' is also used"),
        ([], "layers: must be a non-empty list"),
        ([{**UP, "padding": "same"}], "layers[0].padding: must be an integer >= 0, got 'same'"),
    ],
)
def test_layer_errors_name_file_and_yaml_path(tmp_path, layers, message):
    path = write(tmp_path, {"layers": layers})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"chanels": "joint"}, "chanels: unknown key"),
        ({"channels": "mono"}, "channels: 'mono' is not one of ['auto', 'joint', 'per_channel']"),
        ({"output_sample_rate": 0}, "output_sample_rate: must be an integer from 1 to 2147483647 Hz or null, got 0"),
        ({"weights_prefix": 3}, "weights_prefix: must be a string, got 3"),
        ({"weights_ignore": "encoder."}, "weights_ignore: must be a list of tensor name prefixes, got 'encoder.'"),
        ({"weights_ignore": [""]}, "weights_ignore: must be a list of tensor name prefixes, got ['']"),
    ],
)
def test_top_level_errors(tmp_path, extra, message):
    path = write(tmp_path, {"layers": [UP], **extra})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_bad_yaml_names_line(tmp_path):
    path = write(tmp_path, "layers:\n  - type: relu\n   bad: [\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        load_config(path)


def test_missing_and_unknown_configs(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="'sinc-x9' is neither a file nor a built-in config"):
        load_config("sinc-x9")


def test_a_config_named_without_its_suffix_is_pointed_to(tmp_path, monkeypatch):
    """`design sinc -o up44` writes up44.yaml; `-c up44` then names the file it meant."""
    monkeypatch.chdir(tmp_path)
    assert invoke("design", "sinc", "--factor", "3", "-o", "up44").exit_code == 0
    result = invoke("run", "in.wav", "-c", "up44")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "convt-audio: error: config 'up44' is neither a file nor a built-in config; did you mean up44.yaml?"
    )


def test_builtin_configs_load_by_name():
    names = builtin_configs()
    assert {"sinc-x2", "sinc-x3", "sinc-x4"} <= set(names)
    config = load_config("sinc-x3")
    assert config.rate_factor() == 3 and config.weights.is_file()
    assert load_config(None).name == "sinc-x3"  # the default


def test_output_rate_rules():
    config = parse_config(
        {"layers": [UP, {"type": "conv1d", "in_channels": 2, "out_channels": 1, "kernel_size": 1, "stride": 3}]}
    )
    assert config.output_rate(48000) == 32000
    with pytest.raises(AudioError, match=r"output sample rate 44101 × 2/3 .* is not an integer"):
        config.output_rate(44101)


def test_channel_plans():
    mono_in = parse_config({"layers": [UP]})
    assert channel_plan(mono_in, 1) == "joint"
    assert channel_plan(mono_in, 2) == "per_channel"
    stereo_in = parse_config({"layers": [{**UP, "in_channels": 2}]})
    assert channel_plan(stereo_in, 2) == "joint"
    with pytest.raises(AudioError, match="the file has 3 channels but layers\\[0\\].in_channels is 2"):
        channel_plan(stereo_in, 3)
    with pytest.raises(AudioError, match="per_channel needs layers\\[0\\].in_channels = 1"):
        channel_plan(stereo_in, 2, "per_channel")
    with pytest.raises(AudioError, match="joint needs the file's 2 channels"):
        channel_plan(mono_in, 2, "joint")
    # a leading activation does not hide the first convolution's channels
    activation_first = parse_config({"layers": [{"type": "tanh"}, {**UP, "in_channels": 2}]})
    assert activation_first.in_channels == 2 and channel_plan(activation_first, 2) == "joint"


def test_every_config_in_the_repo_ships_and_loads():
    root = Path(__file__).resolve().parents[1] / "configs"
    assert sorted(builtin_configs()) == sorted(p.stem for p in root.glob("*.yaml"))
    for name in builtin_configs():
        config = load_config(name)
        assert config.name == name and config.layers
        if config.weights is not None:  # the interpolators ship their taps beside them
            assert config.weights.is_file() and config.weights.parent == builtin_configs()[name].parent


ADA = {"type": "layer_norm", "channels": 1, "conditions": 2}
CONDITION = {"name": "bandwidth", "unit": "kbps", "values": [1.5, 3.0]}


@pytest.mark.parametrize(
    "condition, layers, message",
    [
        ({**CONDITION, "values": []}, [ADA], "condition.values: must be a non-empty list of numbers"),
        ({**CONDITION, "values": [1.5, 1.5]}, [ADA], "condition.values: each value once"),
        ({**CONDITION, "default": 6}, [ADA], "condition.default: 6 is not one of the values [1.5, 3.0]"),
        ({**CONDITION, "colour": 1}, [ADA], "condition.colour: unknown key"),
        (CONDITION, [UP], "condition: no layer is conditioned"),
        ({**CONDITION, "values": [1, 2, 3]}, [ADA], "layers[0].conditions: 2 rows, but condition.values has 3"),
        ({**CONDITION, "codebooks": [2, 4]}, [ADA], "condition.codebooks: needs a first layer of codebooks"),
        ({**CONDITION, "codebooks": [2]}, [ADA], "condition.codebooks: one whole number >= 1 per value"),
    ],
)
def test_condition_errors_name_the_field(tmp_path, condition, layers, message):
    path = write(tmp_path, {"layers": layers, "condition": condition})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_a_condition_picks_each_adaptive_rows_and_its_default(tmp_path):
    import torch

    from convt_audio.core.errors import UsageError
    from convt_audio.model.stack import Stack

    body = {"type": "residual", "layers": [{**ADA, "key": "inner"}]}
    path = write(tmp_path, {"layers": [{**ADA, "key": "outer"}, body], "condition": {**CONDITION, "default": 3.0}})
    config = load_config(path)
    assert [leaf.row for leaf in config.with_condition().leaves] == [1, 1]
    assert [leaf.row for leaf in config.with_condition("1.5").leaves] == [0, 0]
    with pytest.raises(UsageError, match="'2' is not a bandwidth: 1.5 or 3 kbps"):
        config.with_condition("2")
    chosen = config.with_condition(1.5)
    scale = torch.tensor([[2.0], [5.0]], dtype=torch.float64)
    params = [{"scale.weight": scale, "shift.weight": torch.tensor([[1.0], [-1.0]], dtype=torch.float64)}] * 2
    x = torch.tensor([[[0.5, -2.0]]], dtype=torch.float64)  # one channel: layer_norm gives 0, then the shift
    stack = Stack(chosen.layers, params)
    assert stack.forward(x).tolist() == [[[2.0, 2.0]]]  # outer: 0·2 + 1; inner: x + (0·2 + 1)
