"""The Suite interface: a new kind is one class and one registration, and every command takes it.

The suite below (grayscale images) is ARCHITECTURE.md's example. Registered here, it runs
through ``eval``, ``report`` and ``compare`` with nothing else changed; its numbers equal an
independent computation with the model and the loader.
"""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.stats import Design
from robustbench_gcp.store import CellKey
from robustbench_gcp.suites import Suite, get_suite, register_suite
from robustbench_gcp.suites.base import classification_entry, per_image_errors
from robustbench_gcp.suites.kinds import unregister_suite
from robustbench_gcp.suites.tasks import ClassifyTask


def to_gray(images: torch.Tensor, seeds) -> torch.Tensor:
    """ITU-R 601 luma, in every channel."""
    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    return luma.unsqueeze(1).expand_as(images).contiguous()


class GrayscaleSuite(Suite):
    kind = "grayscale"
    summary = "top-1 error on grayscale images"
    metric_display = {**Suite.metric_display, "gray_error": ("gray err %", 100.0, ".2f")}

    def tasks(self, selection, inputs):
        return [*super().tasks(selection, inputs),
                ClassifyTask(CellKey(self.kind, "gray"), inputs.clean, to_gray)]

    def sections(self, results, normalizer):
        sections, notes = super().sections(results, normalizer)
        gray = [r for r in results if self.owns(r.key)]
        sections["grayscale"] = classification_entry(gray[0]) if gray else None
        return sections, notes

    def design(self, results, normalizer):
        clean = super().design(results, normalizer)
        gray = [r for r in results if self.owns(r.key)]
        return Design.of([*clean.rows, "gray"], [*clean.values, per_image_errors(gray[0])],
                         {**clean.metrics, "gray_error": lambda m: m["gray"]},
                         {**clean.tests, "gray": gray[0].correct})

    def summary_rows(self, report):
        gray = report.sections["grayscale"]
        return [*super().summary_rows(report), {"metric": "grayscale top-1 error (%)",
                                                "value": 100 * gray["top1_error"]}]

    def long_rows(self, report):
        gray = report.sections["grayscale"]
        return [*super().long_rows(report), {"item": "grayscale", "level": "", **gray}]

    def headline(self, report):
        return {**super().headline(report), "gray_error": report.sections["grayscale"]["top1_error"]}


@pytest.fixture
def grayscale_suite():
    register_suite(GrayscaleSuite)
    yield get_suite("grayscale")
    unregister_suite("grayscale")


@pytest.fixture
def config_with_grayscale(tmp_path):
    from robustbench_gcp.config import default_config_path

    text = default_config_path().read_text(encoding="utf-8")
    text = text.replace("\nsuites:\n", "\nsuites:\n  grayscale:\n    kind: grayscale\n", 1)
    path = tmp_path / "benchmarks.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def independent_gray_errors(demo_val, model_name: str) -> int:
    from robustbench_gcp.config import load_config
    from robustbench_gcp.data.folders import scan_folder
    from robustbench_gcp.data.loader import Preprocess, iterate_batches
    from robustbench_gcp.models import load_model

    spec = load_config().model(model_name)
    net = load_model(spec.arch, spec.checkpoint)
    cfg = net.pretrained_cfg
    images = scan_folder(demo_val, class_order="sorted")
    batches = iterate_batches(images.paths(), Preprocess(cfg.resize_size, cfg.input_size), batch_size=50)
    x = torch.cat([b for b, _ in batches]).float() / 255
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():
        predicted = net((to_gray(x, None) - mean) / std).argmax(1)
    return int((predicted != torch.tensor(images.labels)).sum())


def test_a_registered_suite_runs_through_every_command(grayscale_suite, config_with_grayscale, demo_val,
                                                       tmp_path):
    store = str(tmp_path / "s.db")
    common = ["--config", str(config_with_grayscale), "--data", str(demo_val), "--class-order", "sorted",
              "--store", store, "--workers", "0", "--batch-size", "64"]
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--suite", "grayscale", *common,
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "grayscale" and report["grayscale"]["n"] == 100
    assert report["grayscale"]["top1_error"] == independent_gray_errors(demo_val, "demo-gap") / 100
    assert "cells" not in report and "metrics" not in report  # only its own sections

    compare = CliRunner().invoke(main, ["compare", "--model", "demo-gap", "--model", "demo-isqrt", "--suite",
                                        "grayscale", *common, "--format", "json", "--resamples", "200"])
    assert compare.exit_code == 0, compare.output
    (comparison,) = json.loads(compare.stdout)["comparisons"]
    isqrt = comparison["models"][1]
    assert set(isqrt["metrics"]) == {"clean_error", "gray_error"} and "gray" in isqrt["tests"]
    gray_errors = independent_gray_errors(demo_val, "demo-isqrt") / 100
    assert isqrt["metrics"]["gray_error"]["estimate"] == pytest.approx(gray_errors)

    table = CliRunner().invoke(main, ["report", "--store", store, "--config", str(config_with_grayscale),
                                      "--resamples", "200"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "gray err %" in table.stdout
    long = CliRunner().invoke(main, ["report", "--store", store, "--format", "csv", "--no-intervals"])
    rows = list(csv.DictReader(io.StringIO(long.stdout)))
    assert {(r["model"], r["item"]) for r in rows} >= {("demo-gap", "grayscale"), ("demo-isqrt", "clean")}


def test_registration_rules(grayscale_suite):
    with pytest.raises(ValueError, match="already registered"):
        register_suite(GrayscaleSuite)

    class Nameless(Suite):
        pass

    with pytest.raises(ValueError, match="no `kind`"):
        register_suite(Nameless)


def test_levels_are_taken_as_the_command_line_takes_them():
    """The library's ``severities=`` / ``difficulties=`` take a level, a list, or the command
    line's text ("1,3"); anything else is named in the error."""
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.suites.flag_values import resolve_levels

    valid = (1, 2, 3, 4, 5)
    for given in ("3", 3, [3], ["3"], " 3 ", [np.int64(3)]):
        assert resolve_levels(given, valid, "--severities", valid) == (3,)
    assert resolve_levels("3,1", valid, "--severities", valid) == (1, 3)
    assert resolve_levels(None, (2,), "--severities", valid) == (2,)
    for given, shown in (("1;3", "'1;3'"), ("7", "7"), ([True], "True"), ([2.5], "2.5"), ([3.0], "3.0"),
                         ("x", "'x'")):
        with pytest.raises(ConfigError, match=re.escape(f"`--severities` should be 1..5. Got {shown}")):
            resolve_levels(given, valid, "--severities", valid)
    with pytest.raises(ConfigError, match="at least one level"):
        resolve_levels([], valid, "--severities", valid)
    for given, shown in ((2.0, "2.0"), (np.int64(9), "9")):  # one level, not a list: a TypeError deep inside
        with pytest.raises(ConfigError, match=re.escape(f"`--severities` should be 1..5. Got {shown}")):
            resolve_levels(given, valid, "--severities", valid)


def test_names_and_epsilons_of_the_wrong_type_are_named():
    """corruptions=3, attacks=[None] or epsilons=0.01 (a number, not a list) gave a TypeError or an
    AttributeError deep inside the library."""
    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.suites import get_suite
    from robustbench_gcp.suites.flag_values import resolve_names

    for given in (3, [None], ["fog", 2]):
        with pytest.raises(ConfigError, match=re.escape("`--corruptions` should be corruption names, as text "
                                                        f"(a,b) or a list of them. Got {given!r}")):
            resolve_names(given, (), {"all": ("fog",)}, "corruption", "--corruptions")
    adversarial = load_config().suite("adversarial")
    suite = get_suite("adversarial")
    selection = suite.select(adversarial, {"attacks": "fgsm", "epsilons": 0.01})  # one budget, as a number
    assert [a.epsilons for a in selection.attacks] == [(0.01,)]
