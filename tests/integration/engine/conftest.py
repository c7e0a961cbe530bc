"""Fixtures of the engine tests: the tiny model and datasets, built by the engine's own interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import ENGINE_TOOLS, ROOT, engine_bin, run_engine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model (built by the engine's interpreter, as a file path) and datasets (as a module)."""
    bin_dir = engine_bin()
    base = tmp_path_factory.mktemp("tiny")
    model, data = base / "model", base / "data"
    run_engine([str(bin_dir / "python"), str(ENGINE_TOOLS / "make_model.py"), "--out", str(model)], ROOT, 300)
    run_engine([str(bin_dir / "python"), "-m", "llmct.tiny.data", "--out", str(data)], ROOT, 60)
    return model, data
