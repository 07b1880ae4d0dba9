"""The library as a notebook calls it: in the caller's grad mode and default dtype, after a ``%cd``,
with a hand-written progress hook and Python's own Ctrl-C handler (helper-241's probe)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from robustbench_gcp import ProgressHook, evaluate, load_config, load_model, plan, run
from robustbench_gcp.engine import stops
from robustbench_gcp.errors import ConfigError, Interrupted, ModelCodeError
from robustbench_gcp.store import Store


def demo_checkpoint(name: str) -> str:
    return str(load_config().model(name).checkpoint)


@pytest.fixture
def common(demo_val) -> dict:
    return {"data": str(demo_val), "class_order": "sorted", "limit": 3, "device": "cpu", "workers": 0}


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_a_gradient_suite_runs_inside_the_callers_no_grad(mode, common, tmp_path):
    """Under no_grad the attack failed, the model's code blamed ("its forward runs under
    torch.no_grad()"); under inference_mode the landscape too. The results are those outside it."""
    kwargs = {**common, "checkpoint": demo_checkpoint("demo-gap"), "suite": "adversarial",
              "attacks": "fgsm"}
    outside = evaluate("demo-gap", store=str(tmp_path / "outside.db"), **kwargs)
    with mode():
        inside = evaluate("demo-gap", store=str(tmp_path / "inside.db"), **kwargs)
        evaluate("demo-gap", store=str(tmp_path / "landscape.db"), **{**kwargs, "suite": "landscape",
                                                                       "attacks": None})
        assert not torch.is_grad_enabled()  # the caller's mode, as it was
    assert inside.sections["attacks"] == outside.sections["attacks"]
    assert inside.sections["clean"] == outside.sections["clean"]


def test_a_float64_default_dtype_loads_float32_and_plan_refuses_a_float64_module(common, tmp_path):
    """load_model built float64 layers under a float64 default, and plan's test forward (zeros in the
    default dtype) passed them, for run to fail on the float32 images, the model's code blamed."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        net = load_model("demo-gap", demo_checkpoint("demo-gap"))
        assert {p.dtype for p in net.parameters()} == {torch.float32}
        with pytest.raises(ConfigError, match=r"its weights are torch\.float64, the images float32"):
            plan(net.double(), name="mine", suite="clean", store=str(tmp_path / "s.db"), **common)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(default)


def test_load_model_with_a_checkpoint_leaves_the_global_random_state_as_it_was():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_model("demo-gap", demo_checkpoint("demo-gap"))
    assert torch.equal(torch.rand(3), expected)


def test_a_plan_run_from_another_folder_is_refused_before_anything_is_written(common, tmp_path, monkeypatch):
    """A %cd between plan() and run() created a new store in the new folder and read no image."""
    monkeypatch.chdir(tmp_path)
    planned = plan("demo-gap", checkpoint=demo_checkpoint("demo-gap"), suite="clean", store="s.db",
                   **common)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(ConfigError, match=rf"made in the folder {tmp_path}, and the working folder is now "
                                          rf"{tmp_path / 'sub'}: its relative paths \(store s\.db\)"):
        run(planned)
    assert os.listdir(tmp_path / "sub") == []
    monkeypatch.chdir(tmp_path)
    assert run(planned).sections["clean"]["n"] == 3  # back in its folder, it runs


def test_a_progress_hook_missing_methods_is_refused_by_name(common, tmp_path):
    """An object with `say` alone passed, then failed deep inside on `plan` after the run was made."""

    class SaysOnly:
        def say(self, text):
            pass

    store = tmp_path / "s.db"
    planned = plan("demo-gap", checkpoint=demo_checkpoint("demo-gap"), suite="clean", store=str(store),
                   **common)
    with pytest.raises(TypeError, match=r"has no plan, cell_start, advance, cell_done methods\. Subclass "
                                        r"robustbench_gcp\.ProgressHook"):
        run(planned, progress=SaysOnly())
    assert not store.exists()

    class Counts(ProgressHook):  # the documented way: the rest do nothing
        images = 0

        def advance(self, n_images):
            Counts.images += n_images

    run(planned, progress=Counts())
    assert Counts.images == 3

    class OneArgument(ProgressHook):  # failed mid-run: "plan() takes 2 positional arguments but 4 were given"
        def plan(self, total):
            pass

    with pytest.raises(TypeError, match=r"^`progress`: its plan\(total\) cannot take the engine's 3 "
                                        r"arguments: plan\(total_images, units, finished_units\)$"):
        run(planned, progress=OneArgument())

    class NoCount(ProgressHook):  # the optional one, called once another process stores shards
        def advance_total(self):
            pass

    with pytest.raises(TypeError, match=r"its advance_total\(\) cannot take the engine's 1 argument"):
        run(planned, progress=NoCount())


def test_a_ctrl_c_that_python_drops_still_stops_a_library_run(common, tmp_path):
    """Python drops a KeyboardInterrupt raised in an at-fork hook (each loader start): outside the
    command line it was lost, and the run went on to its end (2 of 16 tries with workers). The
    dropped stop is made here by a hook that swallows its own Ctrl-C."""

    class Swallows(ProgressHook):
        batches = 0

        def advance(self, n_images):
            Swallows.batches += 1
            if Swallows.batches == 1:
                assert signal.getsignal(signal.SIGINT) is stops.stop  # the run's, while it runs
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.05)  # (the handler runs at the next bytecode)
                except KeyboardInterrupt:
                    pass  # dropped, as Python drops it where it cannot raise

    store = tmp_path / "s.db"
    planned = plan("demo-gap", checkpoint=demo_checkpoint("demo-gap"), suite="imagenet-c",
                   corruptions="fog", severities="1,2", shard_size=1, batch_size=1, store=str(store),
                   **common)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(Interrupted, match=r"interrupted after 1 of 9 shards"):
        run(planned, progress=Swallows())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the caller's, back
    assert stops.pending() is None
    with Store(store, read_only=True) as s:
        assert len(s.runs()) == 1


def test_a_stop_dropped_after_the_last_batch_is_said_as_a_stop_of_the_run(common, tmp_path):
    """Raised on the way out of the run it left the finished report behind as a bare, empty
    KeyboardInterrupt (helper-242): it is the run's Interrupted, every shard stored."""

    class LateStop(ProgressHook):
        def cell_done(self, label):
            stops._pending.append(signal.SIGINT)  # as stops.stop records one that Python drops

    planned = plan("demo-gap", checkpoint=demo_checkpoint("demo-gap"), suite="clean",
                   store=str(tmp_path / "s.db"), **common)
    with pytest.raises(Interrupted, match=r"^interrupted after 1 of 1 shards; re-run"):
        run(planned, progress=LateStop())
    assert stops.pending() is None
    assert run(planned).computed["computed"] == 0  # everything was stored


def test_a_model_made_inside_inference_mode_is_refused_by_the_gradient_suites(common, tmp_path):
    """Its weights are inference tensors: autograd failed with a raw error from frozen_weights, the
    module's weights left frozen (helper-242). The clean suite needs no gradient and runs it."""
    with torch.inference_mode():
        net = load_model("demo-gap", demo_checkpoint("demo-gap"))
    before = [p.requires_grad for p in net.parameters()]
    store = tmp_path / "s.db"
    with pytest.raises(ModelCodeError, match=r"its weights were made under torch\.inference_mode\(\) "
                                             r"\(inference tensors\), through which the adversarial suite's"):
        evaluate(net, name="mine", suite="adversarial", attacks="fgsm", store=str(store), **common)
    assert [p.requires_grad for p in net.parameters()] == before and not store.exists()
    assert evaluate(net, name="mine", suite="clean", store=str(store), **common).sections["clean"]["n"] == 3


def test_a_hook_without_advance_total_takes_shards_another_process_stored():
    """advance_total is optional (HOOK_METHODS): the lease of a shard another process stored
    meanwhile called it unconditionally (helper-242)."""
    from robustbench_gcp.engine.runner import ExecutionStats, Leasing, Load
    from robustbench_gcp.store.leases import Claim

    class Stored:
        def claim(self, shard, groups):
            return [Claim.DONE for _ in groups]

    class Task:
        keys = ("cell",)

    class Hook:  # the five methods, no advance_total
        def plan(self, *a): ...
        def cell_start(self, *a): ...
        def advance(self, *a): ...
        def cell_done(self, *a): ...
        def say(self, *a): ...

    stats = ExecutionStats()
    leasing = Leasing(Stored(), [Task()], {"cell": 1}, [range(4)], stats, Hook())
    assert leasing(Load(0, 0, (0,))) is None and stats.units_skipped == 1


def test_a_report_gives_the_commands_markdown_csv_and_tables(common, tmp_path):
    """A notebook had to dig out reports.one_report for what `eval --format markdown / csv` writes
    (helper-293): the package exports those functions, which give the same text, and the tables."""
    import io
    import json

    import rich.console
    from click.testing import CliRunner

    from robustbench_gcp import render_table, to_long_csv, to_report_markdown
    from robustbench_gcp.cli import main

    store = str(tmp_path / "s.db")
    report = evaluate("demo-gap", suite="imagenet-c", corruptions="fog", severities=[1], store=store,
                      **common)
    args = ["eval", "--model", "demo-gap", "--suite", "imagenet-c", "--corruptions", "fog", "--severities",
            "1", "--store", store, "--data", common["data"], "--class-order", "sorted", "--limit", "3",
            "--workers", "0"]
    for kind, text in (("markdown", to_report_markdown(report)), ("csv", to_long_csv(report))):
        said = CliRunner().invoke(main, [*args, "--format", kind])
        assert said.exit_code == 0, said.output
        assert said.stdout.strip() == text.strip() and "fog" in text, kind
    assert json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)["metrics"] == (
        report.to_json()["metrics"])
    shown = io.StringIO()
    rich.console.Console(file=shown, width=200).print(render_table(report))
    assert "clean top-1 error (%)" in shown.getvalue() and "fog" in shown.getvalue()
