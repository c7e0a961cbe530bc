"""The override allow-list is the pinned engine's: the checked-in engine_args.json is what engine/engine_args.py
dumps from the installed LLaMA-Factory's argument classes. Needs engine/install.sh, like test_engine.py."""

from __future__ import annotations

import json

import pytest

from services.scheduler.rendering import overrides

from .helpers import ROOT, engine_bin, run_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_checked_in_engine_args_match_the_installed_engine():
    dumped = run_engine([str(engine_bin() / "python"), str(ROOT / "engine" / "engine_args.py"), "--stdout"], ROOT, 120)
    checked_in = overrides.ENGINE_ARGS_FILE.read_text()
    assert json.loads(dumped.stdout) == json.loads(checked_in), (
        f"{overrides.ENGINE_ARGS_FILE.relative_to(ROOT)} is stale for the installed engine: run "
        "`.venv-engine/bin/python engine/engine_args.py` and review the new keys against the policy in "
        "services/scheduler/rendering/overrides.py"
    )
    assert dumped.stdout == checked_in  # byte for byte, so a regenerated file shows no noise in a diff
