"""Placeholder for ``torchaudio.functional``: every call raises (see ``torchaudio.__init__``)."""

from __future__ import annotations

from typing import Any, NoReturn


def resample(*args: Any, **kwargs: Any) -> NoReturn:
    from .. import AudioUnavailableError

    raise AudioUnavailableError(
        "torchaudio.functional.resample: audio is not supported by this engine environment "
        "(torchaudio is a text-only placeholder; see docs/engine.md)"
    )
