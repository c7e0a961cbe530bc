"""Text-only placeholder for torchaudio (LLM-Cloud-Trainer engine venv).

LLaMA-Factory imports torchaudio at module level but only calls it for audio inputs
(``torchaudio.load`` and ``torchaudio.functional.resample`` in ``llamafactory/data/mm_plugin.py``).
The engine trains text models on a CPU torch for which no matching torchaudio wheel exists, so
this package makes the import succeed and fails loudly if audio is ever actually used.
See docs/engine.md in the repository.
"""

from __future__ import annotations

from typing import Any, NoReturn

from . import functional

__version__ = "2.13.0+textonly"
__all__ = ["AudioUnavailableError", "functional", "load"]


class AudioUnavailableError(RuntimeError):
    """Raised by every audio entry point of this placeholder."""


def _unavailable(what: str) -> NoReturn:
    raise AudioUnavailableError(
        f"torchaudio.{what}: audio is not supported by this engine environment "
        "(torchaudio is a text-only placeholder; see docs/engine.md)"
    )


def load(*args: Any, **kwargs: Any) -> NoReturn:
    _unavailable("load")


def info(*args: Any, **kwargs: Any) -> NoReturn:
    _unavailable("info")


def save(*args: Any, **kwargs: Any) -> NoReturn:
    _unavailable("save")
