"""Errors a user can cause, each with the exit code the command line gives it.

User mistakes raise these; ``assert`` is kept for our own invariants.
"""

from __future__ import annotations


class ConvtAudioError(Exception):
    """Base class: a problem with what the user gave us, told in one line."""

    exit_code = 2


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
