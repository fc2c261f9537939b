"""YAML configs → validated layer specs, once, at the edge (README.md, "Configs").

Every error names the file and the YAML path of the offending key, e.g.
``up.yaml: layers[3].kernel_size: must be a positive integer, got 0``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import AudioError, ConfigError, UsageError, option
from ..core.options import CHANNEL_MODES
from ..core.shapes import chain, index_paths, input_channels, leaves, rate_of
from ..io.features import MelRecipe
from ..kinds import parse_sequence
from .condition import Condition

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "weights",
    "weights_prefix",
    "weights_ignore",
    "channels",
    "output_sample_rate",
    "features",
    "layouts",
    "condition",
    "layers",
)
DEFAULT_CONFIG = "sinc-x3"


@dataclass(frozen=True)
class Layout:
    """Another trainer's names for the same tensors: ``prefix`` replaces ``weights_prefix`` and
    each ``(pattern, replacement)`` of ``map`` rewrites a default name (without prefix), in order,
    as ``re.sub`` does (the first pattern that matches wins)."""

    name: str
    prefix: str = ""
    map: tuple = ()

    def rename(self, name: str) -> str:
        for pattern, replacement in self.map:
            renamed, count = pattern.subn(replacement, name, count=1)
            if count:
                return self.prefix + renamed
        return self.prefix + name


MAX_PATTERN = 200  # characters of a layouts: pattern


def _layout_rule(pattern: str, replacement: str, where: str) -> tuple:
    """A ``layouts:`` rule, checked when the config is read: a pattern from the subset that
    cannot backtrack without bound (no quantifier inside a quantified group, as in ``(a+)+``,
    and no backreference), and a replacement whose group references the pattern has.

    Tensor names are short, but ``(a+)+$`` against a 40-character name already takes minutes
    (x4 for every 2 more characters): such patterns are refused, not timed out.
    """
    import re

    if len(pattern) > MAX_PATTERN:
        raise ConfigError(f"{where}: the pattern is {len(pattern)} characters; at most {MAX_PATTERN}")
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ConfigError(f"{where}: {pattern!r} is not a regular expression ({exc})") from None
    problem = _backtracking_risk(pattern)
    if problem:
        raise ConfigError(
            f"{where}: {pattern!r} {problem}, which can take exponential time; write the pattern "
            f"without it (tensor names need no more)"
        )
    try:
        compiled.sub(replacement, "")  # the replacement is parsed here, before any name is matched
    except (re.error, IndexError) as exc:
        raise ConfigError(f"{where}: replacement {replacement!r} does not fit {pattern!r} ({exc})") from None
    return compiled, replacement


def _backtracking_risk(pattern: str) -> str | None:
    """What in ``pattern`` can backtrack without bound, or None: a repeat or an alternation
    inside a repeat, or a backreference (Python's ``re`` has no time limit, so the subset is the
    guard; ``(a|b)`` and ``\\d+`` stay allowed, ``(a|b)+`` and ``(a+)+`` do not)."""
    try:
        from re import _parser as sre_parse  # Python 3.11+
    except ImportError:  # pragma: no cover - 3.10
        import sre_parse  # type: ignore[no-redef]

    repeats = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None)}

    def walk(items, inside_repeat: bool) -> str | None:
        for op, value in items:
            if op in repeats:
                low, high, sub = value
                if inside_repeat and high != 1:
                    return "nests a repeat inside a repeat"
                found = walk(sub, inside_repeat or high > 1)
            elif op == sre_parse.SUBPATTERN:
                found = walk(value[-1], inside_repeat)
            elif op == sre_parse.BRANCH:
                if inside_repeat:  # (a|a)+: overlapping branches backtrack as nested repeats do
                    return "repeats an alternation"
                found = next((f for f in (walk(b, inside_repeat) for b in value[1]) if f), None)
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                found = walk(value[1], inside_repeat)
            elif op in (sre_parse.GROUPREF, sre_parse.GROUPREF_EXISTS):
                return "has a backreference"
            else:
                found = None
            if found:
                return found
        return None

    return walk(sre_parse.parse(pattern), False)


def _parse_layouts(data: Any) -> tuple:
    if not isinstance(data, list):
        raise ConfigError(f"layouts: must be a list of {{name, prefix, map}}, got {data!r}")
    layouts = []
    for i, entry in enumerate(data):
        where = f"layouts[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: must be a mapping with a name, got {entry!r}")
        for key in entry:
            if key not in ("name", "prefix", "map"):
                raise ConfigError(f"{where}.{key}: unknown key (allowed: ['map', 'name', 'prefix'])")
        prefix = entry.get("prefix") or ""
        if not isinstance(prefix, str):
            raise ConfigError(f"{where}.prefix: must be a string, got {prefix!r}")
        rules = []
        rule_list = entry.get("map") or []
        if not isinstance(rule_list, list):
            raise ConfigError(f"{where}.map: must be a list of [pattern, replacement], got {rule_list!r}")
        for j, rule in enumerate(rule_list):
            if not (isinstance(rule, list) and len(rule) == 2 and all(isinstance(r, str) for r in rule)):
                raise ConfigError(f"{where}.map[{j}]: must be [pattern, replacement], got {rule!r}")
            rules.append(_layout_rule(rule[0], rule[1], f"{where}.map[{j}]"))
        layouts.append(Layout(entry["name"], prefix, tuple(rules)))
    return tuple(layouts)


@dataclass(frozen=True)
class Config:
    """A parsed config: layer specs plus how to find their tensors and map channels."""

    name: str
    description: str
    layers: tuple
    tensor_names: tuple  # per leaf layer, depth first: {"weight": "<prefix><key>.weight", ...}
    weights: Path | None = None
    weights_prefix: str = ""
    weights_ignore: tuple = ()  # name prefixes of a checkpoint's other parts, left unread unremarked
    channels: str = "auto"
    output_sample_rate: int | None = None
    source: str = "<config>"
    features: MelRecipe | None = None  # how the features this stack decodes are made (vocoders)
    layouts: tuple = ()  # other checkpoint layouts: Layout(name, prefix, map), tried after the default
    condition: Condition | None = None  # a choice made when the stack is built (Vocos's bandwidth)

    def with_condition(self, value=None) -> Config:
        """The config with its condition chosen (``value``, else its default): each conditioned
        layer told its row. A config without a condition takes no value."""
        if self.condition is None:
            if value is not None:
                raise UsageError(f"{option('condition')}: {self.name} has no condition to choose")
            return self
        return replace(self, layers=self.condition.apply(self.layers, value))

    @property
    def in_channels(self) -> int:
        return input_channels(self.layers)

    @property
    def latent_channels(self) -> int | None:
        """The channels of a latent the first layer also takes in place of codes (DAC), if any."""
        return self.layers[0].latent_input_channels()

    @property
    def is_builtin(self) -> bool:
        """True for the configs that ship with the package."""
        return any(str(path) == self.source for path in builtin_configs().values())

    @property
    def label(self) -> str:
        """The config as messages name it: a built-in's name (``hifigan-v1``, not the path it
        was installed at), else its path."""
        return Path(self.source).stem if self.is_builtin else self.source

    def names_in(self, layout: Layout | None) -> tuple:
        """``tensor_names`` as ``layout`` spells them (None: the config's own names)."""
        if layout is None:
            return self.tensor_names
        strip = len(self.weights_prefix)
        return tuple({k: layout.rename(v[strip:]) for k, v in names.items()} for names in self.tensor_names)

    def bases_in(self, layout: Layout | None) -> tuple:
        """Each leaf's name stem (:func:`tensor_bases`) as ``layout`` spells it: where the tensors
        a kind computes instead of reading (:meth:`~convt_audio.kinds.base.Kind.computed_tensors`) sit."""
        bases = tensor_bases(self.layers, self.weights_prefix)
        if layout is None:
            return bases
        strip = len(self.weights_prefix)
        return tuple(layout.rename(base[strip:]) for base in bases)

    @property
    def leaves(self) -> list:
        """The leaf layers, depth first through blocks: ``tensor_names[i]`` is ``leaves[i]``'s."""
        return list(leaves(self.layers))

    def rate_factor(self) -> Fraction:
        return rate_of(self.layers)

    def feature_rate(self) -> Fraction | None:
        """The frame rate of inputs that carry no rate of their own (``.npy`` features).

        ``output_sample_rate / rate factor`` (22050/256 for HiFi-GAN V1), or None when the
        config sets no ``output_sample_rate``.
        """
        if self.output_sample_rate is None:
            return None
        return Fraction(self.output_sample_rate) / self.rate_factor()

    def output_rate(self, input_rate) -> int:
        """Output sample rate for an input rate (int or Fraction), or an error if fractional.

        With ``output_sample_rate`` set, the input rate must give it (within 0.1 %, so that a
        rounded ``--input-rate`` such as 86.13 passes); that declared rate is the output's.
        """
        rate = Fraction(input_rate) * self.rate_factor()
        if self.output_sample_rate is not None:
            if abs(rate - self.output_sample_rate) > Fraction(self.output_sample_rate, 1000):
                raise AudioError(
                    f"input rate {float(input_rate):g} Hz × {self.rate_factor()} = {float(rate):g} Hz, "
                    f"but {self.label} declares output_sample_rate {self.output_sample_rate} Hz"
                )
            return self.output_sample_rate
        if rate.denominator != 1:
            raise AudioError(
                f"output sample rate {input_rate} × {self.rate_factor()} = {float(rate):g} Hz is not "
                f"an integer; set output_sample_rate in {self.source}"
            )
        if rate > MAX_RATE:
            raise AudioError(
                f"output sample rate {input_rate} × {self.rate_factor()} = {rate} Hz is more than "
                f"an audio file can hold (at most {MAX_RATE} Hz)"
            )
        return int(rate)


MAX_RATE = (1 << 31) - 1  # Hz: the largest sample rate an audio file (libsndfile's int) can hold


def parse_rate(text, what: str = "input_rate") -> Fraction:
    """A sample or frame rate in Hz: ``24000``, ``86.1328125``, ``22050/256`` exactly, or in kHz
    as sox writes it: ``48k``, ``44.1k``."""
    body = str(text).strip()
    scale = 1000 if body[-1:] in ("k", "K") else 1
    try:
        rate = Fraction(body[:-1] if scale != 1 else body) * scale
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ConfigError(
            f"{option(what)}: {text!r} is not a rate in Hz (e.g. 24000, 48k, 86.1328125 or 22050/256)"
        ) from None
    if rate <= 0:
        raise ConfigError(f"{option(what)}: must be positive, got {text!r}")
    if rate > MAX_RATE:
        raise ConfigError(f"{option(what)}: at most {MAX_RATE} Hz (what an audio file can hold), got {text!r}")
    return rate


def whole_rate(text, what: str = "target_rate", noun: str = "an output rate") -> int:
    """A sample rate that must be a whole number of Hz (``48000``, ``48k``), as :func:`parse_rate`
    reads it."""
    rate = parse_rate(text, what)
    if rate.denominator != 1:
        raise ConfigError(f"{option(what)}: {noun} is a whole number of Hz, got {text!r}")
    return int(rate)


def builtin_configs() -> dict[str, Path]:
    """Built-in config names → their YAML files (installed with the package)."""
    try:
        folder = resources.files("convt_audio.configs")
    except ModuleNotFoundError:
        # the source tree imported as it is (PYTHONPATH=checkout, or python -c in it): the
        # configs/ folder that installs as convt_audio.configs lies beside the package
        folder = Path(__file__).resolve().parents[2] / "configs"
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
    beside = [f"{name_or_path}{suffix}" for suffix in (".yaml", ".yml") if Path(f"{name_or_path}{suffix}").is_file()]
    if beside:  # `design ... -o NAME` writes NAME.yaml
        raise ConfigError(
            f"config {str(name_or_path)!r} is neither a file nor a built-in config; did you mean {beside[0]}?"
        )
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither a file nor a built-in config (built-in: {', '.join(builtins)})"
    )


def load_config(name_or_path: str | Path | None = None) -> Config:
    """Read and validate a config file or built-in config."""
    path = resolve_config(name_or_path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    import yaml  # here: a resampler built from rates reads no YAML, and importing it costs ~12 ms

    loader = _config_loader()
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader, bounded
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested deeper than {loader.max_depth} levels") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{line}: {problem}") from None
    return parse_config(data, source=str(path), base_dir=path.parent, default_name=path.stem)


MAX_CONFIG_BYTES = 4 << 20  # HiFi-GAN V1, 150 layers in blocks, is 20 kB


@functools.cache
def _config_loader() -> type:
    """YAML's safe loader, bounded (built on first use, as yaml is imported then)."""
    import yaml

    class _ConfigLoader(yaml.SafeLoader):
        """YAML's safe loader, bounded: no aliases (a few hundred bytes of ``*a`` can expand to
        gigabytes), at most ``max_nodes`` nodes and ``max_depth`` levels of nesting."""

        max_nodes = 200_000
        max_depth = 64

        def __init__(self, stream) -> None:
            super().__init__(stream)
            self._nodes = 0
            self._depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ConfigError(
                    f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                    f"allowed in a config; write the value out"
                )
            self._nodes += 1
            if self._nodes > self.max_nodes:
                raise ConfigError(f"more than {self.max_nodes:,} YAML nodes; a config is small")
            self._depth += 1
            if self._depth > self.max_depth:
                mark = self.peek_event().start_mark
                raise ConfigError(f"line {mark.line + 1}: nested deeper than {self.max_depth} levels")
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    # YAML 1.2's floats without a dot (1e-6, 3E5), which PyYAML's 1.1 rules read as strings
    _ConfigLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return _ConfigLoader


def tensor_bases(specs, prefix: str = "") -> tuple:
    """Per leaf (depth first), the stem of its tensors' names: ``<prefix><key>.``, where the key
    is the leaf's ``key:`` or its index path (``i``, ``i.j`` in a residual, ``i.b.j`` in a parallel)."""
    return tuple(
        f"{prefix}{getattr(leaf, 'key', None) or path}." for leaf, path in zip(leaves(specs), index_paths(specs))
    )


def tensor_names(specs, prefix: str = "") -> tuple:
    """Per leaf (depth first), its tensors' names: ``<stem><tensor>`` (:func:`tensor_bases`)."""
    return tuple(
        {tensor: base + tensor for tensor in leaf.tensor_shapes()}
        for leaf, base in zip(leaves(specs), tensor_bases(specs, prefix))
    )


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None, default_name: str = "") -> Config:
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
    ignore = data.get("weights_ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(x, str) and x for x in ignore):
        raise ConfigError(f"weights_ignore: must be a list of tensor name prefixes, got {ignore!r}")
    specs = parse_sequence(layers, "layers")
    names = tensor_names(specs, prefix)
    input_channels(specs)  # a stack of activations alone has no channel count
    chain(specs)
    seen: dict[str, str] = {}
    for spec, names_of_leaf in zip(leaves(specs), names):
        for full in names_of_leaf.values():
            if full in seen:
                raise ConfigError(f"{spec.where}.key: tensor name {full!r} is also used by {seen[full]}")
            seen[full] = spec.where

    channels = data.get("channels", "auto") or "auto"
    if channels not in CHANNEL_MODES:
        raise ConfigError(f"channels: {channels!r} is not one of {sorted(CHANNEL_MODES)}")
    rate = data.get("output_sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= MAX_RATE):
        raise ConfigError(f"output_sample_rate: must be an integer from 1 to {MAX_RATE} Hz or null, got {rate!r}")
    weights = data.get("weights")
    if weights is not None:
        if not isinstance(weights, str) or not weights:
            raise ConfigError(f"weights: must be a file name, got {weights!r}")
        weights = (base_dir or Path(".")) / weights
    for key in ("name", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ConfigError(f"{key}: must be a string, got {data[key]!r}")
    features = None
    if data.get("features") is not None:
        features = MelRecipe.from_config(data["features"], base_dir)
        if features.n_mels != input_channels(specs):
            raise ConfigError(
                f"features.n_mels: {features.n_mels} bands, but layers take {input_channels(specs)} channels"
            )
        made = Fraction(features.sample_rate, features.hop_length) * rate_of(specs)
        if made != rate:
            raise ConfigError(
                f"features: {features.sample_rate} Hz / hop {features.hop_length} × the layers' "
                f"{rate_of(specs)} is {float(made):g} Hz; output_sample_rate must be set to it "
                f"(got {rate})"
            )
    config = Config(
        name=data.get("name") or default_name or "config",
        description=data.get("description") or "",
        layers=tuple(specs),
        tensor_names=names,
        weights=weights,
        weights_prefix=prefix,
        weights_ignore=tuple(ignore),
        channels=channels,
        output_sample_rate=rate,
        source=source,
        features=features,
        layouts=_parse_layouts(data["layouts"]) if data.get("layouts") is not None else (),
        condition=Condition.from_config(data["condition"], specs) if data.get("condition") is not None else None,
    )
    for i, layout in enumerate(config.layouts):  # a rename that gives two layers one tensor
        owners: dict[str, str] = {}
        for leaf, names in zip(config.leaves, config.names_in(layout)):
            for full in names.values():
                if full in owners and owners[full] != leaf.where:
                    raise ConfigError(
                        f"layouts[{i}] ({layout.name}): {owners[full]} and {leaf.where} would both read "
                        f"tensor {full!r}; each layer needs its own"
                    )
                owners[full] = leaf.where
    return config


def channel_plan(config: Config, file_channels: int, mode: str | None = None) -> str:
    """Decide ``joint`` or ``per_channel`` for a file, as README.md's "Configs" defines it (``mode`` overrides the config)."""
    mode = mode or config.channels
    first = config.in_channels
    if file_channels == config.latent_channels and mode in ("auto", "joint"):
        return "joint"  # a codec's latent, where its codes are the first layer's input
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
            f"channels: joint needs the file's {file_channels} channels to equal layers[0].in_channels = {first}"
        )
    if mode == "per_channel" and first != 1:
        raise AudioError(f"channels: per_channel needs layers[0].in_channels = 1, got {first}")
    return mode
