"""Rules of the test suite itself, read from the source with `ast` (nothing here imports a test module):

- every tests/**/test_*.py declares its tier in a module-level `pytestmark`: exactly one of the tier markers, the
  one of its folder (tests/unit -> unit, tests/integration -> integration, tests/e2e -> e2e, tests/docker -> docker,
  tests/hosts -> hosts),
  and no test or class in it names a tier marker of its own;
- no module under tests/ imports a test module: what tests share lives in the folder's helpers.py (functions and
  constants) or conftest.py (fixtures, which a test just names).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
TIERS = {"unit", "integration", "e2e", "docker", "hosts", "gpu"}
FOLDER_TIER = {"unit": "unit", "integration": "integration", "e2e": "e2e", "docker": "docker", "hosts": "hosts"}
TEST_FILES = sorted(TESTS.rglob("test_*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(TESTS.parent))


def _tier_markers(node: ast.AST) -> list[str]:
    """Names of the tier markers written as `pytest.mark.<tier>` (called or not) anywhere in `node`."""
    return [
        n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute)
        and n.attr in TIERS
        and isinstance(n.value, ast.Attribute)
        and n.value.attr == "mark"
        and isinstance(n.value.value, ast.Name)
        and n.value.value.id == "pytest"
    ]


def _pytestmark(tree: ast.Module) -> ast.expr | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return node.value
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "pytestmark":
            return node.value
    return None


def tier_problems(path: Path, source: str) -> list[str]:
    """What is wrong with the tier marking of the test module at `path` (relative to tests/)."""
    tree = ast.parse(source, str(path))
    mark = _pytestmark(tree)
    if mark is None:
        return ["no module-level pytestmark"]
    problems = []
    tiers = _tier_markers(mark)
    if len(tiers) != 1:
        problems.append(f"pytestmark must hold exactly one tier marker of {sorted(TIERS)}, it holds {tiers}")
    want = FOLDER_TIER.get(path.parts[0]) if len(path.parts) > 1 else None
    if want is None:
        problems.append(f"tests/{path.parts[0]} is no tier's folder ({sorted(FOLDER_TIER)})")
    elif tiers and tiers != [want]:
        problems.append(f"a test under tests/{path.parts[0]} is marked {want}, not {tiers}")
    elsewhere = len(_tier_markers(tree)) - len(tiers)
    if elsewhere:
        problems.append(f"{elsewhere} tier marker(s) outside pytestmark: a module has one tier, its folder's")
    return problems


def _is_test_module(dotted: str | None) -> bool:
    return bool(dotted) and dotted.split(".")[-1].startswith("test_")


def imported_test_modules(source: str, filename: str = "<test>") -> list[str]:
    """The imports of test modules in `source`, as written."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if any(p.startswith("test_") for p in a.name.split("."))]
        elif isinstance(node, ast.ImportFrom):
            where = "." * node.level + (node.module or "")
            if node.module and any(p.startswith("test_") for p in node.module.split(".")):
                found.append(f"from {where} import {', '.join(a.name for a in node.names)}")
            else:  # from . import test_x, from tests.unit import test_x
                found += [f"from {where} import {a.name}" for a in node.names if _is_test_module(a.name)]
    return found


def test_the_test_files_are_found():
    folders = {path.relative_to(TESTS).parts[0] for path in TEST_FILES}
    assert set(FOLDER_TIER) <= folders, folders
    assert Path(__file__) in TEST_FILES


@pytest.mark.parametrize("path", TEST_FILES, ids=_name)
def test_every_test_module_carries_its_folders_tier(path: Path):
    problems = tier_problems(path.relative_to(TESTS), path.read_text(encoding="utf-8"))
    assert not problems, f"{_name(path)}: " + "; ".join(problems)


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=_name)
def test_no_module_imports_a_test_module(path: Path):
    imports = imported_test_modules(path.read_text(encoding="utf-8"), str(path))
    assert not imports, (
        f"{_name(path)} imports a test module ({'; '.join(imports)}): move what is shared to the "
        "folder's helpers.py (functions, constants) or conftest.py (fixtures)"
    )


# --- the checks check what they should ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, problem",
    [
        ("import pytest\n", "no module-level pytestmark"),
        ("def f():\n    pytestmark = pytest.mark.unit\n", "no module-level pytestmark"),
        ("pytestmark = pytest.mark.slow\n", "exactly one tier marker"),
        ("pytestmark = [pytest.mark.unit, pytest.mark.integration]\n", "exactly one tier marker"),
        ("pytestmark = [pytest.mark.integration, pytest.mark.slow]\n", "is marked unit, not ['integration']"),
        ("pytestmark = pytest.mark.unit\n\n@pytest.mark.integration\ndef test_x():\n    pass\n", "outside pytestmark"),
        ("pytestmark = pytest.mark.unit\n\nclass TestX:\n    pytestmark = pytest.mark.e2e\n", "outside pytestmark"),
    ],
)
def test_a_wrong_tier_is_named(source, problem):
    problems = tier_problems(Path("unit/test_x.py"), source)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "path, source",
    [
        ("unit/test_x.py", "pytestmark = pytest.mark.unit\n"),
        ("unit/test_x.py", "pytestmark: list = [pytest.mark.unit, pytest.mark.slow]\n"),
        ("docker/test_x.py", "pytestmark = [pytest.mark.docker, pytest.mark.slow]\n"),
        ("integration/scheduler/test_x.py", "pytestmark = pytest.mark.integration\n"),
    ],
)
def test_a_right_tier_passes(path, source):
    assert tier_problems(Path(path), source) == []


def test_a_test_file_outside_the_tier_folders_is_named():
    assert any("no tier's folder" in p for p in tier_problems(Path("test_x.py"), "pytestmark = pytest.mark.unit\n"))
    assert any(
        "no tier's folder" in p for p in tier_problems(Path("misc/test_x.py"), "pytestmark = pytest.mark.unit\n")
    )


@pytest.mark.parametrize(
    "source",
    [
        "from .test_training import TRAIN\n",
        "from ..test_fleet import job_row\n",
        "from tests.e2e.test_training import TRAIN\n",
        "import tests.unit.test_job_events\n",
        "import tests.unit.test_job_events as events\n",
        "from . import test_training\n",
        "from tests.e2e import test_training\n",
        "def f():\n    from .test_training import TRAIN\n",
    ],
)
def test_an_import_of_a_test_module_is_named(source):
    assert imported_test_modules(source)


@pytest.mark.parametrize(
    "source",
    [
        "from .helpers import TRAIN, unique\n",
        "from tests.helpers import eventually\n",
        "from tests.e2e.conftest import E2E_AGENT\n",
        "from services.common import contracts\n",
        "from .testing_tools import x\n",
        "import pytest\n",
    ],
)
def test_other_imports_pass(source):
    assert imported_test_modules(source) == []
