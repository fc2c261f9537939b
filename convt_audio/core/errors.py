"""Errors a user can cause, each with the exit code the command line gives it.

User mistakes raise these; ``assert`` is kept for our own invariants.
"""

from __future__ import annotations

import re
from typing import Mapping

_OPTION = re.compile(r"\{opt:([a-z_]+)(?: ([^}]*))?\}")


def option(name: str, value=None) -> str:
    """A parameter (and value) named in an error message, spelt by whoever shows the message:
    the library says ``factor`` or ``clip='rescale'``, the command line ``--factor`` or
    ``--clip rescale`` (:meth:`ConvtAudioError.render`)."""
    return "{opt:%s%s}" % (name, "" if value is None else f" {value}")


LIBRARY_NAMES = {"target_rate": "rate"}  # where the library's parameter differs from the name used inside


def render(text: str, spelling: Mapping[str, str] | None = None) -> str:
    """Spell the :func:`option` marks in ``text``: as parameters, or with ``spelling``'s flags."""

    def spell(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if spelling is not None and name in spelling:
            return spelling[name] if value is None else f"{spelling[name]} {value}"
        name = LIBRARY_NAMES.get(name, name)
        return name if value is None else f"{name}={value!r}"

    return _OPTION.sub(spell, text)


class ConvtAudioError(Exception):
    """Base class: a problem with what the user gave us, told in one line.

    Messages name parameters with :func:`option`; ``str()`` spells them as the library's
    parameters, :meth:`render` as a front end's flags.
    """

    exit_code = 2

    def render(self, spelling: Mapping[str, str] | None = None) -> str:
        return render(super().__str__(), spelling)

    def __str__(self) -> str:
        return self.render()


class ConfigError(ConvtAudioError, ValueError):
    """A config file or layer spec is invalid (names the config key)."""


class WeightsError(ConvtAudioError, ValueError):
    """A weights file is unreadable, or a tensor is missing or misshaped."""


class DeviceError(ConvtAudioError, ValueError):
    """The requested device or dtype cannot be used here."""


class AudioError(ConvtAudioError, ValueError):
    """One input or output file failed; the rest of a batch goes on."""

    exit_code = 1


class InputTooShortError(AudioError):
    """The input has too few frames for some layer to produce one frame."""


class ClippingError(AudioError):
    """An integer output would clip and the user asked to refuse that."""


class UsageError(ConvtAudioError, ValueError):
    """Options that contradict each other or name nothing usable."""


def one_line(text: str) -> str:
    """Escape control characters (a newline in a file name, say) so that a message is one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def unpickling_failure(exc: BaseException) -> str:
    """torch.load's failure in our words: a refused pickle of code is said as such (torch's own
    text advises weights_only=False, which would run the file's code)."""
    text = str(exc).strip()
    if "weights_only" in text or "Unsupported global" in text or "Unsupported operand" in text:
        return "it holds Python objects that weights_only=True refuses to unpickle (no code is run)"
    return text.splitlines()[0][:200] if text else type(exc).__name__
