"""A config's ``condition``: one choice made when the stack is built, such as Vocos's bandwidth,
which picks a row of every adaptive ``layer_norm``'s embeddings (``AdaLayerNorm(bandwidth_id)``)
and the rows of codes that bandwidth decodes::

    condition:
      name: bandwidth            # what the choice is called in messages and docs
      unit: kbps
      values: [1.5, 3.0, 6.0, 12.0]   # row i of each conditioned layer is values[i]
      codebooks: [2, 4, 8, 16]   # optional: the rows of codes each value decodes (checked)
      default: null              # null: the run must choose (--condition, condition=)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from ..core.errors import ConfigError, UsageError, option
from ..core.shapes import leaves, map_leaves

KEYS = ("name", "unit", "values", "codebooks", "default")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Condition:
    name: str
    values: tuple
    unit: str = ""
    codebooks: tuple | None = None
    default: float | None = None

    @classmethod
    def from_config(cls, data: Any, specs: Sequence) -> Condition:
        if not isinstance(data, Mapping):
            raise ConfigError(f"condition: must be a mapping with {list(KEYS)}, got {data!r}")
        for key in data:
            if key not in KEYS:
                raise ConfigError(f"condition.{key}: unknown key (allowed: {sorted(KEYS)})")
        name, unit = data.get("name"), data.get("unit") or ""
        if not isinstance(name, str) or not name or not isinstance(unit, str):
            raise ConfigError(f"condition.name: must be a word naming the choice, got {name!r}")
        values = data.get("values")
        if not isinstance(values, list) or not values or not all(_number(v) for v in values):
            raise ConfigError(f"condition.values: must be a non-empty list of numbers, got {values!r}")
        if len(set(values)) != len(values):
            raise ConfigError(f"condition.values: each value once, got {values!r}")
        codebooks = data.get("codebooks")
        if codebooks is not None and (
            not isinstance(codebooks, list)
            or len(codebooks) != len(values)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in codebooks)
        ):
            raise ConfigError(f"condition.codebooks: one whole number >= 1 per value, got {codebooks!r}")
        default = data.get("default")
        if default is not None and default not in values:
            raise ConfigError(f"condition.default: {default!r} is not one of the values {values}")
        condition = cls(name, tuple(values), unit, None if codebooks is None else tuple(codebooks), default)
        rows = [spec for spec in leaves(specs) if getattr(spec, "conditions", None) is not None]
        if not rows:
            raise ConfigError("condition: no layer is conditioned (a layer_norm with conditions: N)")
        for spec in rows:
            if spec.conditions != len(values):
                raise ConfigError(
                    f"{spec.where}.conditions: {spec.conditions} rows, but condition.values has {len(values)}"
                )
        if codebooks is not None:
            first = specs[0]
            if getattr(first, "takes_codes", False) is not True or max(codebooks) > first.codebooks:
                raise ConfigError(
                    f"condition.codebooks: needs a first layer of codebooks holding at least {max(codebooks)} of them"
                )
        return condition

    def describe(self) -> str:
        """``bandwidth: 1.5, 3, 6 or 12 kbps (codes of 2, 4, 8, 16 rows)``."""
        shown = [f"{v:g}" for v in self.values]
        text = f"{self.name}: {', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else f"{self.name}: {shown[0]}"
        text += f" {self.unit}" if self.unit else ""
        if self.codebooks:
            text += f" (codes of {', '.join(str(c) for c in self.codebooks)} rows)"
        return text

    def row_of(self, value) -> int:
        """The row of ``value`` (a number, or its text as typed)."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        for row, candidate in enumerate(self.values):
            if number is not None and float(candidate) == number:
                return row
        raise UsageError(f"{option('condition')}: {value!r} is not a {self.describe()}")

    def apply(self, specs: Sequence, value) -> tuple:
        """``specs`` with ``value`` chosen (None: the default, else an error saying what to give)."""
        if value is None:
            value = self.default
        if value is None:
            raise UsageError(f"this config needs {option('condition', 'VALUE')}: its {self.describe()}")
        row = self.row_of(value)

        def choose(spec):
            if getattr(spec, "conditions", None) is not None:
                return replace(spec, row=row)
            if self.codebooks and getattr(spec, "takes_codes", False):
                return replace(spec, rows=self.codebooks[row])
            return spec

        return map_leaves(specs, choose)
