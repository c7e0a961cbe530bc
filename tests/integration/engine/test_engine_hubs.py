"""The real engine and the hub variables the agent gives it (services/agent/hubs.py).

No hub is reachable from this machine, so nothing is downloaded: each run fails at the network, and the test
reads where it went. A ModelScope model is asked of modelscope.cn and never of Hugging Face; the same YAML
without the variable is asked of Hugging Face; an engine without the `modelscope` package stops naming it
(missing_dependency), never falling back to Hugging Face. Needs engine/install.sh, like test_engine.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from llmct.tiny.data import write_tiny_datasets
from services.agent import failures
from services.agent.hubs import hub_environment
from services.agent.runtimes.base import ExitInfo

from .helpers import engine_bin, engine_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL_ID = "Qwen/Qwen2.5-0.5B-Instruct"  # on both hubs; only the variable decides which one is asked
# One try each: the default retries spend ~20 s more on a host that cannot resolve modelscope.cn.
FAST_FAIL = {"MODELSCOPE_API_MAX_RETRIES": "1", "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": "1"}
# An engine without the package: what `pip uninstall modelscope` would leave, without touching the shared venv.
WITHOUT_MODELSCOPE = """
import importlib.metadata as metadata, sys
sys.modules["modelscope"] = None
found = metadata.version
def version(name):
    if name.lower().startswith("modelscope"):
        raise metadata.PackageNotFoundError(name)
    return found(name)
metadata.version = version
sys.argv = ["llamafactory-cli", *sys.argv[1:]]
from llamafactory.cli import main
main()
"""


def sft_config(work: Path, model: str, data: Path, dataset: str = "tiny_sft") -> Path:
    config = {
        "model_name_or_path": model,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "dataset_dir": str(data),
        "dataset": dataset,
        "template": "default",
        "cutoff_len": 64,
        "output_dir": str(work / "out"),
        "max_steps": 1,
        "report_to": "none",
        "trust_remote_code": False,
    }
    path = work / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_failing(args: list[str], cwd: Path, hub: str | None, cache: Path) -> str:
    """Run the engine as the agent would for a stage of `hub`; it must fail (nothing is reachable): its output."""
    env = {**engine_env(), **FAST_FAIL, "DISABLE_VERSION_CHECK": "1", **hub_environment(hub, cache)}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"a download cannot succeed offline:\n{output[-3000:]}"
    return output


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    write_tiny_datasets(folder)
    return folder


def test_a_modelscope_model_is_asked_of_modelscope_and_never_of_hugging_face(tmp_path, data):
    cli = str(engine_bin() / "llamafactory-cli")
    config = sft_config(tmp_path, MODEL_ID, data)
    output = run_failing([cli, "train", str(config)], tmp_path, "modelscope", tmp_path / "hf")
    assert "modelscope.cn" in output and "huggingface.co" not in output, output[-3000:]
    assert (tmp_path / "hf" / "modelscope" / "models").is_dir(), "downloads go to the shared cache"

    output = run_failing([cli, "train", str(config)], tmp_path, None, tmp_path / "hf")
    assert "huggingface.co" in output and "modelscope" not in output.lower(), output[-3000:]


def test_without_the_modelscope_package_it_fails_naming_it(tmp_path, data):
    shim = tmp_path / "engine_without_modelscope.py"
    shim.write_text(WITHOUT_MODELSCOPE)
    config = sft_config(tmp_path, MODEL_ID, data)
    output = run_failing(
        [str(engine_bin() / "python"), str(shim), "train", str(config)], tmp_path, "modelscope", tmp_path / "hf"
    )
    assert "huggingface.co" not in output and "modelscope.cn" not in output, "neither hub: it stops first"
    reason, message = failures.classify(ExitInfo(exit_code=1), output.splitlines()[-40:])
    assert reason == "missing_dependency" and "'modelscope>=1.14.0'" in message, message


def test_a_dataset_registered_from_modelscope_is_asked_of_modelscope_whatever_the_models_hub(tmp_path, tiny):
    """A ModelScope dataset's entry names only `ms_hub_url` (services/datasets/register.py): the engine loads it
    from ModelScope without USE_MODELSCOPE_HUB. This engine lacks modelscope's `datasets` extra, so the job stops
    naming it; an engine with the extra would stop at the network instead. Never Hugging Face."""
    model, data = tiny
    info = json.loads((data / "dataset_info.json").read_text())
    info["ms_only"] = {"ms_hub_url": "llamafactory/alpaca_en", "formatting": "alpaca"}
    own = tmp_path / "data"
    own.mkdir()
    (own / "dataset_info.json").write_text(json.dumps(info))
    config = sft_config(tmp_path, str(model), own, dataset="ms_only")
    output = run_failing(
        [str(engine_bin() / "llamafactory-cli"), "train", str(config)], tmp_path, None, tmp_path / "hf"
    )
    assert "Loading dataset llamafactory/alpaca_en" in output and "huggingface.co" not in output, output[-3000:]
    reason, message = failures.classify(ExitInfo(exit_code=1), output.splitlines()[-40:])
    assert (reason == "missing_dependency" and "'modelscope[datasets]'" in message) or "modelscope.cn" in output, (
        reason,
        message,
        output[-3000:],
    )
