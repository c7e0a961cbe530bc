"""Freezing a job's stages: the stored YAML and stage rows come from one dump of each stage's config (the dump is
the largest CPU cost of a submit), and say the same as the two ways of reading them apart."""

from __future__ import annotations

import copy

import pytest

from services.scheduler.rendering import common
from services.scheduler.rendering.common import Rendered, Stage, deep_merge, plain_copy, stage_row

pytestmark = pytest.mark.unit


def two_stages() -> Rendered:
    return Rendered(
        stages=[
            Stage(name="merge", command=("llamafactory-cli", "export"), config={"a": 1, "b": [1, {"c": "d"}]}),
            Stage(
                name="export",
                command=("llamafactory-cli", "export"),
                config={"model_name_or_path": "m", "x": None, "y": 1.5},
                hub="modelscope",
            ),
        ]
    )


def test_frozen_dumps_each_stage_once(monkeypatch):
    calls = []
    real = common.to_yaml
    monkeypatch.setattr(common, "to_yaml", lambda config: calls.append(config) or real(config))
    rendered = two_stages()
    rendered.frozen()
    assert len(calls) == len(rendered.stages)


def test_frozen_says_what_yaml_text_and_each_stage_say():
    rendered = two_stages()
    text, rows = rendered.frozen()
    assert text == rendered.yaml_text()
    assert text.startswith("# stage 1 of 2: merge\n") and "---\n# stage 2 of 2: export\n# model hub: modelscope" in text
    assert rows == [stage_row(s.to_engine()) for s in rendered.stages]
    one = Rendered(stages=rendered.stages[:1])
    assert one.frozen() == (one.stages[0].yaml(), [stage_row(one.stages[0].to_engine())])


def test_plain_copy_is_a_deep_copy():
    value = {"a": [1, {"b": [2.5, None, True]}], "c": {"d": "e"}, "t": (1, [2])}
    copied = plain_copy(value)
    assert copied == copy.deepcopy(value)
    copied["a"][1]["b"].append(3)
    copied["c"]["d"] = "f"
    copied["t"][1].append(3)
    assert value == {"a": [1, {"b": [2.5, None, True]}], "c": {"d": "e"}, "t": (1, [2])}


def test_deep_merge_changes_neither_input():
    base, extra = {"a": {"b": [1]}, "k": 1}, {"a": {"c": {"d": [2]}}}
    merged = deep_merge(base, extra)
    assert merged == {"a": {"b": [1], "c": {"d": [2]}}, "k": 1}
    merged["a"]["b"].append(9)
    merged["a"]["c"]["d"].append(9)
    assert base == {"a": {"b": [1]}, "k": 1} and extra == {"a": {"c": {"d": [2]}}}
