"""YAML configs → validated layer specs, once, at the edge (SPEC §3).

Every error names the file and the YAML path of the offending key, e.g.
``up.yaml: layers[3].kernel_size: must be a positive integer, got 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import AudioError, ConfigError
from .specs import (
    ACTIVATIONS,
    CONV_TYPES,
    ActivationSpec,
    LayerSpec,
    SnakeSpec,
    chain_channels,
    input_channels,
    spec_fields,
)

CHANNEL_MODES = ("auto", "joint", "per_channel")
TOP_LEVEL_KEYS = ("name", "description", "weights", "weights_prefix", "channels",
                  "output_sample_rate", "layers")
DEFAULT_CONFIG = "sinc-x3"
_ACTIVATION_FIELDS = {"leaky_relu": "negative_slope", "elu": "alpha"}


@dataclass(frozen=True)
class Config:
    """A parsed config: layer specs plus how to find their tensors and map channels."""

    name: str
    description: str
    layers: tuple
    tensor_names: tuple  # per layer: {"weight": "<prefix><key>.weight", ...}
    weights: Path | None = None
    weights_prefix: str = ""
    channels: str = "auto"
    output_sample_rate: int | None = None
    source: str = "<config>"

    @property
    def in_channels(self) -> int:
        return input_channels(self.layers)

    def rate_factor(self) -> Fraction:
        factor = Fraction(1)
        for spec in self.layers:
            if hasattr(spec, "rate_factor"):
                up, down = spec.rate_factor()
                factor *= Fraction(up, down)
        return factor

    def output_rate(self, input_rate: int) -> int:
        """Output sample rate for an input rate (the override wins), or an error if fractional."""
        if self.output_sample_rate is not None:
            return self.output_sample_rate
        rate = input_rate * self.rate_factor()
        if rate.denominator != 1:
            raise AudioError(
                f"output sample rate {input_rate} × {self.rate_factor()} = {float(rate):g} Hz is not "
                f"an integer; set output_sample_rate in {self.source}"
            )
        return int(rate)


def builtin_configs() -> dict[str, Path]:
    """Built-in config names → their YAML files (installed with the package)."""
    folder = resources.files("convt_audio.configs")
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            found[entry.name[: -len(".yaml")]] = Path(str(entry))
    return dict(sorted(found.items()))


def resolve_config(name_or_path: str | Path | None) -> Path:
    """A path to a YAML config, or the file of a built-in config name (None → the default)."""
    if name_or_path is None:
        name_or_path = DEFAULT_CONFIG
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists() or "/" in str(name_or_path):
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    builtins = builtin_configs()
    if str(name_or_path) in builtins:
        return builtins[str(name_or_path)]
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither a file nor a built-in config "
        f"(built-in: {', '.join(builtins)})"
    )


def load_config(name_or_path: str | Path | None = None) -> Config:
    """Read and validate a config file or built-in config."""
    path = resolve_config(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{line}: {problem}") from None
    return parse_config(data, source=str(path), base_dir=path.parent, default_name=path.stem)


def _scalar_int(value: Any) -> Any:
    """PyTorch's ``int or tuple``: ``3`` or ``[3]``."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return value[0]
    return value


def _parse_layer(index: int, entry: Any, prefix: str) -> tuple[LayerSpec, dict[str, str]]:
    where = f"layers[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be a mapping with a 'type', got {entry!r}")
    entry = dict(entry)
    kind = entry.pop("type", None)
    allowed_types = sorted([*CONV_TYPES, *ACTIVATIONS, "snake"])
    if kind is None:
        raise ConfigError(f"{where}.type: required (one of {allowed_types})")
    key = entry.pop("key", None)
    if key is not None and (not isinstance(key, (str, int)) or isinstance(key, bool) or key == ""):
        raise ConfigError(f"{where}.key: must be a non-empty string, got {key!r}")
    key = str(index) if key is None else str(key)

    if kind in CONV_TYPES:
        cls = CONV_TYPES[kind]
        allowed = [f for f in spec_fields(cls) if f != "key"]
        required = ("in_channels", "out_channels", "kernel_size")
    elif kind in ACTIVATIONS:
        allowed = [_ACTIVATION_FIELDS[kind]] if kind in _ACTIVATION_FIELDS else []
        required = ()
    elif kind == "snake":
        allowed, required = ["channels"], ("channels",)
    else:
        raise ConfigError(f"{where}.type: {kind!r} is not one of {allowed_types}")
    for name in entry:
        if name not in allowed:
            raise ConfigError(
                f"{where}.{name}: unknown key for {kind} (allowed: {sorted([*allowed, 'key', 'type'])})"
            )
    for name in required:
        if name not in entry:
            raise ConfigError(f"{where}.{name}: required for {kind}")

    if kind in CONV_TYPES:
        values = {name: _scalar_int(value) for name, value in entry.items()}
        if "padding" in values and isinstance(values["padding"], str):
            raise ConfigError(f"{where}.padding: must be an integer >= 0, got {values['padding']!r}")
        spec = cls(**values, key=key, index=index)
    elif kind == "snake":
        spec = SnakeSpec(channels=_scalar_int(entry["channels"]), index=index)
    else:
        spec = ActivationSpec(kind, entry.get(_ACTIVATION_FIELDS.get(kind, ""), None), index=index)
    spec.validate()
    names = {tensor: f"{prefix}{key}.{tensor}" for tensor in spec.tensor_shapes()}
    return spec, names


def parse_config(
    data: Any, source: str = "<config>", base_dir: Path | None = None, default_name: str = ""
) -> Config:
    """Validate a config mapping (as loaded from YAML) into a :class:`Config`."""
    try:
        return _parse_config(data, source, base_dir, default_name)
    except ConfigError as exc:
        if str(exc).startswith(source):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def _parse_config(data: Any, source: str, base_dir: Path | None, default_name: str) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"must be a mapping with a 'layers' list, got {type(data).__name__}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{key}: unknown key (allowed: {sorted(TOP_LEVEL_KEYS)})")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError("layers: must be a non-empty list of layers")
    prefix = data.get("weights_prefix") or ""
    if not isinstance(prefix, str):
        raise ConfigError(f"weights_prefix: must be a string, got {prefix!r}")
    specs, names = [], []
    for index, entry in enumerate(layers):
        spec, tensor_names = _parse_layer(index, entry, prefix)
        specs.append(spec)
        names.append(tensor_names)
    if not any(hasattr(s, "in_channels") for s in specs) and not isinstance(specs[0], SnakeSpec):
        raise ConfigError("layers: needs at least one conv1d or conv_transpose1d layer")
    chain_channels(specs)
    seen: dict[str, int] = {}
    for spec, tensor_names in zip(specs, names):
        for full in tensor_names.values():
            if full in seen:
                raise ConfigError(
                    f"layers[{spec.index}].key: tensor name {full!r} is also used by layers[{seen[full]}]"
                )
            seen[full] = spec.index

    channels = data.get("channels", "auto") or "auto"
    if channels not in CHANNEL_MODES:
        raise ConfigError(f"channels: {channels!r} is not one of {sorted(CHANNEL_MODES)}")
    rate = data.get("output_sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
        raise ConfigError(f"output_sample_rate: must be a positive integer or null, got {rate!r}")
    weights = data.get("weights")
    if weights is not None:
        if not isinstance(weights, str) or not weights:
            raise ConfigError(f"weights: must be a file name, got {weights!r}")
        weights = (base_dir or Path(".")) / weights
    for key in ("name", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ConfigError(f"{key}: must be a string, got {data[key]!r}")
    config = Config(
        name=data.get("name") or default_name or "config",
        description=data.get("description") or "",
        layers=tuple(specs),
        tensor_names=tuple(names),
        weights=weights,
        weights_prefix=prefix,
        channels=channels,
        output_sample_rate=rate,
        source=source,
    )
    return config


def channel_plan(config: Config, file_channels: int, mode: str | None = None) -> str:
    """Decide ``joint`` or ``per_channel`` for a file, per SPEC §3 (``mode`` overrides the config)."""
    mode = mode or config.channels
    first = config.in_channels
    if mode == "auto":
        if file_channels == first:
            return "joint"
        if first == 1:
            return "per_channel"
        raise AudioError(
            f"the file has {file_channels} channels but layers[0].in_channels is {first} "
            f"(channels: auto needs them equal, or in_channels 1 to run each channel on its own)"
        )
    if mode == "joint" and file_channels != first:
        raise AudioError(
            f"channels: joint needs the file's {file_channels} channels to equal "
            f"layers[0].in_channels = {first}"
        )
    if mode == "per_channel" and first != 1:
        raise AudioError(f"channels: per_channel needs layers[0].in_channels = 1, got {first}")
    return mode

