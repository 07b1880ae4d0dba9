"""Every command and subcommand explains itself."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from robustbench_gcp.cli import main


def all_commands():
    ctx = click.Context(main)
    out = []
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        out.append(([name], command))
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command)
            out += [([name, sub], command.get_command(sub_ctx, sub))
                    for sub in command.list_commands(sub_ctx)]
    return out


COMMANDS = all_commands()


def test_the_expected_commands_exist():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"eval", "compare", "report", "demo", "baseline", "models", "suites", "inspect", "bench"} <= names
    assert {"bench corruptions", "bench fidelity", "bench heads", "bench attack", "bench perturbations",
            "bench scaling", "bench landscape", "bench pipeline", "bench jpeg"} <= names


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help(path, command):
    assert command is not None and (command.help or "").strip(), f"{path} has no help text"
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="gcp-robust")
    assert result.exit_code == 0, result.output
    assert "Usage: gcp-robust " + " ".join(path) in result.output
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no help text"
    # lines wrap at spaces: "[default: gcp-" / "robust.db]" split a name a user copies (helper-289)
    narrow = CliRunner().invoke(main, [*path, "--help"], prog_name="gcp-robust", terminal_width=60,
                                env={"COLUMNS": "60"})
    split = re.findall(r"\w-\n\s*\w+", narrow.output)
    assert not split, split


def test_models_and_suites_list(tmp_path):
    models = CliRunner().invoke(main, ["models"])
    assert models.exit_code == 0 and "resnet50-isqrt" in models.stdout and "56,929,832" in models.stdout
    suites = CliRunner().invoke(main, ["suites", "--json"])
    assert suites.exit_code == 0 and '"kind": "imagenet-p"' in suites.stdout
    # the landscape's steps as --etas takes them, not 0.000390625 to 0.292969
    table = CliRunner().invoke(main, ["suites"], env={"COLUMNS": "300"})
    assert "50 steps 0.1/256 to 75/256" in table.stdout
    # each attack's budget beside its name, as benchmarks.yaml gives it (FGSM has none)
    assert "fgsm, pgd-linf (steps=10, rel_stepsize=0.25, random_start=true)" in table.stdout
    assert "cw-l2 (steps=100, binary_search_steps=5)" in table.stdout


@pytest.mark.parametrize("width", ["40", "80", "100", "300"])
def test_suites_table_shows_every_name_at_any_width(width):
    table = CliRunner().invoke(main, ["suites"], env={"COLUMNS": width})
    assert table.exit_code == 0
    for name in ("imagenet-c-extra", "imagenet-p", "adversarial", "pgd-linf eps", "contents", "levels"):
        assert name in table.stdout, (width, table.stdout)


def test_public_api_names_are_the_functions():
    """``from robustbench_gcp import evaluate`` is the function, also after its module is imported."""
    import robustbench_gcp
    import robustbench_gcp.pipeline  # noqa: F401
    from robustbench_gcp import evaluate, flip_stats, list_models, load_model

    for item in (evaluate, flip_stats, list_models, load_model, robustbench_gcp.evaluate):
        assert callable(item) and not isinstance(item, type(robustbench_gcp))


def run_fresh_python(script: str) -> None:
    """Run ``script`` in a new interpreter (nothing imported yet) and require it to succeed."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_listing_commands_and_their_help_does_not_import_torch():
    """``gcp-robust --help`` and the help of commands without suite flags stay instant: declaring a
    command imports neither torch nor the suites (their flags are added when a command needs them)."""
    run_fresh_python(
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from robustbench_gcp.cli import main\n"
        "for args in (['--help'], ['report', '--help'], ['suites', '--help'], ['models', '--help'],\n"
        "             ['inspect', '--help'], ['demo', '--help'], ['bench', '--help']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
        "    assert 'torch' not in sys.modules, args\n"
    )


def test_commands_that_read_the_registry_do_not_import_torchvision():
    """``suites``, the registry's names and benchmarks.yaml (whose models are checked against the
    registry) leave torchvision unimported (1.5 s of start-up); building a model imports it, and
    the model has torchvision's layers, key for key."""
    run_fresh_python(
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from robustbench_gcp.cli import main\n"
        "from robustbench_gcp.config import load_config\n"
        "from robustbench_gcp.models import list_models\n"
        "result = CliRunner().invoke(main, ['suites'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'alexnet' in list_models() and load_config(None).models\n"
        "assert 'torchvision' not in sys.modules\n"
        "from robustbench_gcp.models import create_model\n"
        "import torch\n"
        "with torch.device('meta'):\n"
        "    model = create_model('shufflenetv2-gap')\n"
        "import torchvision\n"
        "with torch.device('meta'):\n"
        "    reference = torchvision.models.shufflenet_v2_x1_0()\n"
        "assert list(model.state_dict()) == list(reference.state_dict())\n"
    )


def test_suite_flags_and_kinds_appear_in_the_help_of_the_commands_that_take_them():
    for command in ("eval", "compare", "baseline"):
        result = CliRunner().invoke(main, [command, "--help"], prog_name="gcp-robust")
        assert result.exit_code == 0, result.output
        for flag in ("--corruptions", "--severities", "--backend", "--perturbations", "--corrupted-dir",
                     "--storage-roundtrip / --no-storage-roundtrip"):
            assert flag in result.output, (command, flag)
        every = command != "baseline"  # a baseline serves imagenet-c and imagenet-p alone
        assert all((flag in result.output) == every for flag in ("--attacks", "--epsilons")), command
        kinds = "Suite kinds: clean (" if every else "Suite kinds: imagenet-c ("
        assert kinds in " ".join(result.output.split())
    bad = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--sqrt", "eigh"])
    assert bad.exit_code == 2 and "'eigh' is not one of 'newton-schulz', 'eig', 'svd'" in bad.output
    # a flag of a suite baseline does not run is named as such (it was click's "No such option")
    for given, kind in ((["--attacks", "fgsm"], "adversarial"), (["--epsilons=1/255"], "adversarial"),
                        (["--landscape-at", "pixels"], "landscape")):
        other = CliRunner().invoke(main, ["baseline", "--model", "alexnet", *given])
        assert other.exit_code == 2, other.output
        option = given[0].split("=")[0]
        assert f"Error: `{option}` applies to the {kind} suite, which `baseline` does not run (it runs " \
               "imagenet-c and imagenet-p)" in other.output, other.output
    typo = CliRunner().invoke(main, ["baseline", "--corruptoins", "fog"])
    assert typo.exit_code == 2 and "Did you mean one of: '--corrupted-dir', '--corruptions'?" in typo.output


def test_version_is_the_package_version():
    """--version says the code's version, also where an editable install's metadata is older."""
    import re
    from pathlib import Path

    from robustbench_gcp import __version__

    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1) == __version__
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"gcp-robust, version {__version__}"


def test_a_mistyped_command_gets_the_closest_one():
    for args, said in ((["evl"], "No such command 'evl'. Did you mean 'eval'?"),
                       (["bench", "pipelin"], "No such command 'pipelin'. Did you mean 'pipeline'?")):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1] == f"Error: {said}"


def test_a_long_note_does_not_widen_the_tables_beside_it():
    """Tables too wide for the terminal are printed at the width they need; a note's long path (text,
    which wraps) widened every table of the report, each row then wrapped by the terminal."""
    import io

    from rich.console import Console, Group
    from rich.text import Text

    from robustbench_gcp.reports.tables import Column, print_whole, rich_table

    table = rich_table([{"model": "demo-gap", "mCE": 12.5}], [Column("model", justify="left"), Column("mCE")])
    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_whole(console, Group(table, Text("note: released files read from /" + "x" * 150)))
    assert max(len(line) for line in console.file.getvalue().splitlines()) <= 80


@pytest.mark.parametrize(("command", "own"), [("eval", set()), ("compare", set()), ("baseline", {"suite"})])
def test_the_commands_defaults_are_the_librarys(command, own):
    """An option of a command that runs evaluations defaults to what ``evaluate()`` does without it
    (``--workers``: the machine's, where the library's is 0), so that a CLI run and a library run of
    the same options are the same run; ``own``: a default the command has for its purpose
    (``baseline``'s suite, ImageNet-P)."""
    import dataclasses

    from robustbench_gcp.pipeline.planning import EvalOptions

    library = {f.name: f.default for f in dataclasses.fields(EvalOptions)
               if f.default is not dataclasses.MISSING}
    cli = next(c for path, c in COMMANDS if path == [command])
    ctx = click.Context(cli)
    left = {"workers", *own}
    shared = {p.name: p.get_default(ctx) for p in cli.params if p.name in library and p.name not in left}
    assert len(shared) >= 5, shared  # the command takes the evaluation's options
    assert shared == {name: library[name] for name in shared}


@pytest.mark.parametrize(("args", "said"), [
    (["eval", "-m", "demo-gap", "-m", "demo-isqrt"],
     "--model is given twice (-m demo-gap, then -m demo-isqrt): give it once (compare evaluates several "
     "models)"),
    (["eval", "-m", "demo-gap", "-s", "imagenet-c", "--suite=clean"],
     "--suite is given twice (-s imagenet-c, then --suite clean): give it once (compare runs several "
     "suites)"),
    (["baseline", "-mdemo-gap", "--model", "demo-isqrt"], "--model is given twice (-m demo-gap, then"),
    (["eval", "-m", "resnet18-gap", "--checkpoint", "a.pth", "--checkpoint=b.pth"],
     "--checkpoint is given twice (--checkpoint a.pth, then --checkpoint b.pth): give it once (compare "
     "evaluates several checkpoints: --model NAME=FILE)"),
])
def test_an_option_of_one_value_given_twice_is_refused(args, said):
    """click kept the last value, silently: `eval -m demo-gap -m demo-isqrt` evaluated demo-isqrt
    alone, `baseline` stored it (helper-289). Lists add up; a value after -- is no option."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and said in " ".join(result.stderr.split()), result.output
    assert f"Usage: main {args[0]}" in result.stderr  # (CliRunner names the program main)
    assert ("compare" in result.stderr) == (args[0] == "eval")  # baseline stores one run: no compare
    shown = CliRunner().invoke(main, [*args, "--help"])  # the help, whatever else is given
    assert shown.exit_code == 0 and "Usage: main" in shown.stdout


def test_lists_add_up_and_settings_keep_the_last():
    """A setting given again is a shell alias's default overridden (--workers 0, then --workers 4):
    click's last value stands; so does the same model twice."""
    from robustbench_gcp.cli import _refuse_repeats
    from robustbench_gcp.cli.eval import eval_cmd

    ctx = click.Context(eval_cmd, info_name="eval")
    _refuse_repeats(ctx, eval_cmd, ["--corruptions", "fog", "--corruptions", "snow", "--amp", "--amp",
                                    "--workers", "0", "--workers", "4", "--store", "a.db", "--store=b.db",
                                    "-m", "demo-gap", "--model", "demo-gap", "--", "--model", "x"])
