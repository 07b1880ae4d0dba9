"""Library calls given arguments of the wrong kind: the library's own errors, before any work (a
probe of the documented entry points found raw errors from deep inside)."""

from __future__ import annotations

import pytest

from robustbench_gcp import load_model, plan, run
from robustbench_gcp.errors import ConfigError
from robustbench_gcp.store import Store


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"checkpoint": 3}, "`checkpoint` should be a path. Got 3"),  # a pathlib TypeError
    ({"checkpoint": "w.pth", "sha256": 12345678}, "`sha256` should be text. Got 12345678"),  # taken as text
    ({"ema": "no"}, "`ema` should be True or False. Got 'no'"),  # taken as True
])
def test_load_model_checks_its_options_as_plan_does(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_model("demo-gap", **kwargs)


def test_run_takes_a_plan_and_a_progress_hook_and_creates_nothing_otherwise(demo_val, tmp_path):
    """run("demo-gap") failed on an attribute of a str; run(plan, progress=3) after creating the run."""
    with pytest.raises(TypeError, match=r"`plan` should be a Plan, made by robustbench_gcp.plan\(...\)"):
        run("demo-gap")
    store = tmp_path / "s.db"
    planned = plan("demo-gap", suite="clean", data=str(demo_val), class_order="sorted", limit=2,
                   store=str(store), workers=0)
    with pytest.raises(TypeError, match="`progress` should be a ProgressHook"):
        run(planned, progress=3)
    if store.exists():
        with Store(store, read_only=True) as s:
            assert s.runs() == []


def test_a_preprocess_string_is_refused_as_a_whole(demo_val, tmp_path):
    """"input_size=32" was read letter by letter: "unknown keys ['2', '3', '=', '_', 'e' ..."."""
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
    with pytest.raises(ConfigError, match=r"`preprocess` should be a dict of .* Got 'input_size=32'"):
        plan(net, preprocess="input_size=32", suite="clean", data=str(demo_val), class_order="sorted",
             limit=2, store=str(tmp_path / "s.db"), workers=0)
