"""deploy/ as operators expect it (issue 16, item 5), checked without a Docker engine: the compose file's control
plane (restart policies, health checks, the migration first, a 3-node NATS cluster routed to itself, nothing
internal published, secrets outside the file, images pinned), the images' pins, the NATS users file as
`llmct nats users` writes it, and the systemd units (`systemd-analyze verify` where it is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from services.common import nats_auth

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = ("auth", "scheduler", "datasets", "registry", "gateway")
NODES = ("nats-1", "nats-2", "nats-3")
EXACT_TAG = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+(\.\d+)?[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def nats_config(name: str) -> str:
    """A node's config as nats-server reads it: its own file with the includes in place (comments dropped)."""
    text = (DEPLOY / "nats" / name).read_text()
    for included in re.findall(r"^include \./(\S+)$", text, flags=re.M):
        text = text.replace(f"include ./{included}", nats_config(included))
    return "\n".join(line.split("#", 1)[0] if not line.lstrip().startswith('"') else line for line in text.splitlines())


def block(text: str, name: str) -> str:
    """The body of the first `name { ... }` block (balanced braces)."""
    start = re.search(rf"^\s*{name}\s*\{{", text, flags=re.M)
    assert start, f"no {name} block"
    depth, i = 1, start.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start.end() : i - 1]


def test_every_long_running_service_restarts_and_has_a_health_check(compose):
    for name, service in compose["services"].items():
        if name == "migrate":
            continue
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        test = (service.get("healthcheck") or {}).get("test")
        assert test and not service["healthcheck"].get("disable"), f"{name} has no health check"


def test_the_five_services_run_from_one_image_and_ask_their_own_health(compose):
    for name in SERVICES:
        service = compose["services"][name]
        assert service["command"] == ["service", name]
        assert service["environment"]["LLMCT_NATS_REPLICAS"] == "3"
        assert set(service["environment"]["NATS_URL"].split(",")) == {f"tls://{node}:4222" for node in NODES}
        assert service["environment"]["NATS_TLS_CA"].startswith("/run/secrets/")
        assert "/health" in " ".join(service["healthcheck"]["test"])
    assert {compose["services"][name]["environment"]["LLMCT_HEALTH_PORT"] for name in SERVICES} == {
        "8101", "8102", "8103", "8104", "8080"
    }  # fmt: skip


def test_the_migration_runs_once_before_anything_that_uses_the_database(compose):
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "on-failure"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in [*SERVICES, *(f"{node}-users" for node in NODES)]:
        assert compose["services"][name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    for name in SERVICES:
        deps = compose["services"][name]["depends_on"]
        assert all(deps[node]["condition"] == "service_healthy" for node in NODES), name
    assert compose["services"]["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for node in NODES:
        assert "/healthz" in " ".join(compose["services"][node]["healthcheck"]["test"])


def test_the_nats_nodes_route_to_each_other_over_verified_tls():
    names = set()
    for node in NODES:
        text = nats_config(f"{node}.conf")
        names.add(re.search(r"^server_name:\s*(\S+)", text, flags=re.M).group(1))
        cluster = block(text, "cluster")
        assert set(re.findall(r"nats-route://([\w-]+):6222", cluster)) == set(NODES)
        assert "@" not in cluster, "a route's password in a URL: routes authenticate by certificate"
        route_tls = block(cluster, "tls")
        assert re.search(r"verify:\s*true", route_tls) and "ca_file" in route_tls
        assert "ca_file" in block(text, "tls"), "clients need TLS"
        assert re.search(r"^http:\s*127\.0\.0\.1:8222", text, flags=re.M), "the monitor stays on loopback"
        assert "store_dir" in block(text, "jetstream")
        assert re.search(r"^\s*\"?authorization\"?\s*:", text, flags=re.M), "auth.conf is included"
    assert names == set(NODES)


def with_defaults(text: str) -> str:
    """Compose's `${NAME:-default}` as it reads with nothing set in the environment."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def test_nothing_internal_is_published_and_the_rest_only_on_loopback_by_default(compose):
    published = {
        name: [with_defaults(str(p)) for p in service.get("ports", [])] for name, service in compose["services"].items()
    }
    for name, ports in published.items():
        for port in ports:
            assert not re.search(r"\b(5432|8222|6222)\b", str(port)), f"{name} publishes {port}"
            host = str(port).split(":")[0]
            assert host == "127.0.0.1", f"{name} publishes {port} beyond loopback by default"
    assert published["postgres"] == []
    assert published["control-plane"] == ["127.0.0.1:8080:8080"]
    assert {port for node in NODES for port in published[node]} == {f"127.0.0.1:{p}:4222" for p in (4222, 4223, 4224)}


def test_secrets_stay_out_of_the_compose_file(compose):
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY$", key):
                assert key.endswith("_FILE"), f"{name}: {key} inline; use env_file or secrets"
            assert not re.search(r"://[^/@]+:[^/@]+@", str(value)), f"{name}: credentials in {key}"
    assert all(str(item["file"]).startswith(("./secrets/", "./tls/")) for item in compose["secrets"].values())
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert {"/control-plane.env", "/secrets/", "/tls/"} <= set(ignored)


def test_images_are_pinned(compose):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in compose["services"].items():
        image = service["image"]
        assert EXACT_TAG.match(image) and ":" in image and not image.endswith(":latest"), f"{name}: {image}"
        if image.startswith("llmct-"):
            assert image.endswith(f":{version}"), f"{name}: {image} is not this release"
    for dockerfile in (DEPLOY / "images").glob("*.Dockerfile"):
        text = dockerfile.read_text()
        for base in re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, flags=re.M):
            assert EXACT_TAG.match(base) and not base.endswith(":latest"), f"{dockerfile.name}: {base}"
        for install in re.findall(r"pip install[^\n]*", text):
            assert "--constraint" in install, f"{dockerfile.name}: {install}"


def test_the_constraints_pin_what_pyproject_pins():
    pins = dict(
        line.split("==") for line in (DEPLOY / "images" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    normal = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, version = re.sub(r"\[.*\]", "", requirement).split("==")
        assert normal.get(re.sub(r"[-_.]+", "-", name).lower()) == version, requirement
    assert "psutil" in normal


def test_every_engine_variant_has_psutil():
    text = (DEPLOY / "images" / "engine.Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert [stage.split()[2] for stage in stages] == ["base", "bnb", "gptq"]
    assert "psutil==" in stages[0] and all("import psutil" in stage or "psutil" in stage for stage in stages)
    assert "bitsandbytes==" in stages[1] and "gptqmodel==" in stages[2] and "optimum==" in stages[2]


def test_the_users_file_is_what_llmct_nats_users_writes():
    text = "".join(line for line in (DEPLOY / "nats" / "auth.conf").open() if not line.lstrip().startswith("#"))
    agents = {agent: f"CHANGE-ME-{agent}-password" for agent in ("gpu-01", "gpu-02")}
    assert json.loads("{" + text + "}") == nats_auth.authorization("CHANGE-ME-services-password", agents)


UNITS = ("llmct-nats.service", "llmct-nats-users.service", "llmct-migrate.service", "llmct@.service",
         "llmct-agent.service")  # fmt: skip


def unit_settings(name: str) -> dict[str, str]:
    lines = (DEPLOY / "systemd" / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize("name", UNITS)
def test_a_unit_restarts_with_a_limit_and_is_hardened(name):
    settings = unit_settings(name)
    assert settings.get("User") in ("llmct", "nats")
    assert settings.get("NoNewPrivileges") == "yes" and settings.get("ProtectSystem") == "strict"
    assert settings.get("PrivateTmp") == "yes" and settings.get("CapabilityBoundingSet") == ""
    if settings.get("Type") == "oneshot":
        return
    assert settings.get("Restart") == "on-failure" and float(settings["RestartSec"]) > 0
    assert int(settings["StartLimitBurst"]) > 0 and int(settings["StartLimitIntervalSec"]) > 0


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed: the structural test above is what checks the units")
    venv_bin = Path(nats_auth.__file__).parents[2] / ".venv" / "bin"
    binaries = venv_bin if (venv_bin / "llmct").exists() else Path(shutil.which("llmct") or "/usr/bin").parent
    for name in UNITS:  # the executables where the units say they are installed, so verify can check them
        text = (DEPLOY / "systemd" / name).read_text().replace("/opt/llmct/bin/", f"{binaries}/")
        (tmp_path / name).write_text(text)
    (tmp_path / "llmct@gateway.service").symlink_to("llmct@.service")
    names = [name for name in UNITS if name != "llmct@.service"] + ["llmct@gateway.service"]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr
