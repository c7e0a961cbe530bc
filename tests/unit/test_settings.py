"""The one settings idiom: declared once, parsed by type, every variable documented in the README."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from llmct.supervise import RestartSettings
from services.agent.settings import AgentSettings
from services.auth.settings import AuthSettings
from services.common.settings import Settings, env, from_env, settings_for, settings_from_env, variables
from services.datasets.settings import DatasetSettings
from services.gateway.settings import GatewaySettings
from services.scheduler.settings import FleetSettings, SchedulerSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_CLASSES = [
    Settings,
    AuthSettings,
    SchedulerSettings,
    FleetSettings,
    GatewaySettings,
    DatasetSettings,
    AgentSettings,
    RestartSettings,
]
# Read outside a settings class, each by one function named here.
OTHER_VARIABLES = {"HOST_BASE_PATH", "LOG_BASE_PATH", "HF_CACHE_PATH", "LLMCT_STATE_PATH"}  # storage_from_env


def readme_variables() -> set[str]:
    """Variables named in the first column of the README's settings table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def test_every_variable_is_in_the_readme_settings_table():
    declared = set(OTHER_VARIABLES)
    for cls in SETTINGS_CLASSES:
        declared.update(variables(cls))
    missing = sorted(declared - readme_variables())
    assert not missing, f"add these to the README's settings table: {missing}"


@dataclass(frozen=True, kw_only=True)
class Sample:
    count: int = env("S_COUNT", 3, doc="a number")
    ratio: float = env("S_RATIO", 0.5, doc="a fraction")
    flag: bool = env("S_FLAG", False, doc="a switch")
    path: Path = env("S_PATH", Path("/tmp"), doc="a folder")
    limit: int | None = env("S_LIMIT", None, doc="unset: none")
    hub: Literal["a", "b"] = env("S_HUB", "a", doc="one of two")


def test_fields_are_parsed_by_their_type_and_empty_means_unset():
    sample = from_env(
        Sample, {"S_COUNT": "7", "S_RATIO": "2", "S_FLAG": "yes", "S_PATH": "/x", "S_LIMIT": "", "S_HUB": "b"}
    )
    assert sample == Sample(count=7, ratio=2.0, flag=True, path=Path("/x"), limit=None, hub="b")
    assert from_env(Sample, {}) == Sample()
    assert from_env(Sample, {"S_COUNT": "9"}, count=1).count == 1  # given values win


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"S_COUNT": "many"}, "S_COUNT='many' is not a valid int"),
        ({"S_HUB": "c"}, "S_HUB must be one of a, b, not 'c'"),
    ],
)
def test_a_bad_value_names_its_variable(environ, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        from_env(Sample, environ)


def test_platform_settings_read_only_the_given_environment():
    environ = {"LLMCT_MAX_GPUS_PER_USER": "2", "LLMCT_SCHEDULER_PORT": "9102", "HOST_BASE_PATH": "/srv/llm"}
    settings = settings_for(SchedulerSettings, None, environ)
    assert settings.max_gpus_per_user == 2 and settings.ports["scheduler"] == 9102
    assert settings.storage.base == Path("/srv/llm") and settings.storage.logs == Path("/srv/llm/logs")
    assert settings_for(SchedulerSettings, None, {}).max_gpus_per_user == 8
    shared = settings_from_env(environ)
    assert settings_for(SchedulerSettings, shared, {}).max_gpus_per_user == 8, "a service's own come from environ"
    assert settings_for(SchedulerSettings, settings) is settings
