"""Options shared by several commands, as decorators.

Declaring a command imports nothing heavy: ``gcp-robust --help`` lists every command
without importing torch. What needs the library (the suites' flags, the matrix square
roots) is read when a command parses its arguments or shows its own help.
"""

from __future__ import annotations

import os

import click

from robustbench_gcp.data.datasets import DATASETS
from robustbench_gcp.engine.cpus import default_workers, usable_cpus  # noqa: F401  (the commands' import)
from robustbench_gcp.engine.limits import MAX_COUNT, MAX_NS_ITERS, MAX_SEED, MAX_WORKERS
from robustbench_gcp.engine.ranks import is_main_process
from robustbench_gcp.errors import absent, link_loop, not_utf8, real_path


class SqrtChoice(click.Choice):
    """``--sqrt``'s choices: :data:`robustbench_gcp.models.matrix.SQRT_METHODS`, read when needed."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from robustbench_gcp.models.matrix import SQRT_METHODS

        return SQRT_METHODS

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns it
        pass


device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Torch device: cpu, cuda, cuda:1, mps, or auto (cuda when available, else cpu).",
)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)


class NonEmptyPath(click.Path):
    """click's Path that refuses an empty string (``--data ""`` read the working folder, ``--store ""``
    and ``--config ""`` the path ".", named so in their messages, and ``-o ""`` failed with a
    traceback once the run was done) and expands ``~`` as ``--data`` and ``-o`` did, for every
    path option alike (``--store '~/x.db'`` looked for a folder named ``~``)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("the path is empty: give one", param, ctx)
        if isinstance(value, str):
            value = os.path.expanduser(value)
        _utf8(value, param, ctx)
        return super().convert(value, param, ctx)


class OutputPath(NonEmptyPath):
    """``-o``: checked on rank 0 of a torchrun job alone, which alone writes it (its folder may be
    on rank 0's machine only: the other nodes refused the job before any work)."""

    def convert(self, value, param, ctx):
        return super().convert(value, param, ctx) if is_main_process() else value


def _utf8(value, param, ctx) -> None:
    """A path whose name is not UTF-8 is refused (the store cannot hold it: a traceback once the
    images were scanned)."""
    shown = not_utf8(value)
    if shown is not None:
        raise click.BadParameter(f"{shown} has a name that is not UTF-8: rename it", ctx, param)


def _not_empty(ctx, param, value):
    """A text option that is a path or URL (``--checkpoint``): ``""`` is an error, not "not given"."""
    if isinstance(value, str) and not value.strip():
        raise click.BadParameter("the path is empty: give a path or URL")
    if value is not None:
        _utf8(value, param, ctx)
    return value


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "markdown"]),
    default="table",
    show_default=True,
    help="Output format.",
)


def _output_file(ctx, param, value):
    """Check ``-o FILE`` before any compute: its folder must exist (the file is written last), and
    it must not be a results store (or its ``-wal`` / ``-shm`` file): writing the output there
    would destroy every stored result."""
    if value is None:
        return None
    import os

    path = os.path.expanduser(value)
    if not is_main_process():  # rank 0 writes it (OutputPath)
        return path
    if os.path.normpath(path) in STANDARD_STREAMS or (os.path.exists(path) and not os.path.isfile(path)
                                                      and not os.path.isdir(path)):
        return path  # /dev/stdout, a pipe, a device: written into, whoever owns its folder
    if link_loop(path):  # the file written would replace the link
        raise click.BadParameter(f"{value} {absent(path)}")
    if path.endswith(os.sep):  # `-o out/` wrote a file named out (an existing folder: click says so)
        raise click.BadParameter(f"{value} ends in {os.sep}: give the file to write "
                                 f"(e.g. {os.path.join(value, 'results')})")
    # the folder as the kernel reads the path (abspath drops `missing/..` unread: `-o missing/../s.db`
    # passed, and the file written was the store s.db), named absolute
    raw, folder = os.path.dirname(path) or os.curdir, os.path.dirname(os.path.abspath(path))
    if os.path.exists(raw) and not os.path.isdir(raw):
        raise click.BadParameter(f"{folder} of {value} is a file, not a folder")
    if not os.path.isdir(raw):
        raise click.BadParameter(f"the folder {raw if '..' in raw.split(os.sep) else folder} of {value} "
                                 "does not exist")
    if not os.access(raw, os.W_OK):
        raise click.BadParameter(f"the folder {folder} of {value} is not writable")
    problem = database_target(path)
    if problem:
        raise click.BadParameter(problem)
    failed = _unwritable(path)  # what the folder's mode does not tell (root in /proc): found after the work
    if failed is not None:
        raise click.BadParameter(f"cannot write {value}: {failed.strerror}")
    return path


def _unwritable(path: str) -> OSError | None:
    """Why no output can be written to ``path`` as ``cli.output.write_output`` writes it, or None:
    staged beside the file a link names, else that file written in place. Nothing is left behind."""
    target = str(real_path(path)) if os.path.isfile(path) or not os.path.exists(path) else path
    staged = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{os.getpid()}.probe")
    failed = None
    for probe in (staged, target):
        try:
            if probe == target and os.path.exists(target):
                open(target, "ab").close()  # nothing written
            else:  # made, then removed
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                os.unlink(probe)
            return None
        except OSError as error:
            failed = error
    return failed


#: ``-o`` paths that name this process's stdout / stderr: written through the open stream (opening
#: /dev/stdout again resolved a pipe to a missing file, and replaced or truncated a `>> file`)
STANDARD_STREAMS = {"-": 1, "/dev/stdout": 1, "/dev/fd/1": 1, "/proc/self/fd/1": 1,
                    "/dev/stderr": 2, "/dev/fd/2": 2, "/proc/self/fd/2": 2}


def database_target(path: str) -> str | None:
    """Why the output must not go to ``path`` (an SQLite database, such as a results store, or its
    ``-wal`` / ``-shm`` / ``-journal`` file: writing there would destroy every stored result), or None."""
    from robustbench_gcp.store.sqlite_file import companion_of, is_database

    part = "part of " if companion_of(path) is not None else ""
    if not part and not is_database(path):  # a pipe, a terminal, /dev/stdout, another file: no store
        return None
    return (f"{path} is {part}an SQLite database (a results store?): writing the output there would "
            "destroy it; give another file")


def check_output_not_store(output: str | None, store) -> None:
    """``-o`` naming the ``--store`` file (or its -wal / -shm / -journal), refused before any compute:
    a store this run creates is no database yet when ``-o`` is first checked, so the run ended refused."""
    import os

    from robustbench_gcp.store.sqlite_file import COMPANIONS

    if output is None or store is None:
        return
    out, db = (os.path.realpath(os.path.expanduser(str(p))) for p in (output, store))
    if out == db or out in (f"{db}{suffix}" for suffix in COMPANIONS):
        raise click.BadParameter(f"{output} is the results store (--store {store}) or part of it: writing "
                                 "the output there would destroy it; give another file",
                                 param_hint="'-o' / '--output'")


output_option = click.option(
    "-o",
    "--output",
    type=OutputPath(dir_okay=False, writable=True),
    callback=_output_file,
    default=None,
    help="Write the output to this file instead of stdout (-: stdout).",
)


def int_list(ctx, param, value, bounds: tuple[int, int] | None = None):
    """Click callback: ``1,3,5`` -> [1, 3, 5] (None stays None); with ``bounds`` (low, high), every
    value must lie within them (``functools.partial(int_list, bounds=(1, 100))``)."""
    if value is None:
        return None
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 1,3,5. Got {value!r}") from None
    if bounds is not None and any(not bounds[0] <= v <= bounds[1] for v in items):
        raise click.BadParameter(f"should be integers {bounds[0]}..{bounds[1]}. Got {value!r}")
    return items


def _compose(*decorators):
    """Several option decorators as one."""
    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


config_option = click.option(
    "--config",
    type=NonEmptyPath(dir_okay=False),
    default=None,
    help="benchmarks.yaml to use (models, suites, baselines). Default: the shipped one.",
)


def _store_option(help_text: str):
    return click.option("--store", type=NonEmptyPath(dir_okay=False), default="gcp-robust.db",
                        show_default=True, help=help_text)


store_option = _store_option("SQLite results store; finished shards in it are reused.")
report_store_option = _store_option("SQLite results store to report (opened read-only; nothing is "
                                    "computed).")


def given(name: str) -> bool:
    """Whether the option ``name`` (its parameter name) was given on the command line."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) is ParameterSource.COMMANDLINE


def given_options(*names: str) -> list[str]:
    """Those of the options ``names`` (parameter names) given on the command line, as ``--flag``
    texts: for refusing options that the rest of the command line leaves unused."""
    params = {p.name: p for p in click.get_current_context().command.params}
    return [max(params[n].opts, key=len) for n in names if given(n)]


def check_layout(fmt: str) -> None:
    """``--layout`` given with another ``--format`` than csv does nothing: a usage error."""
    if given("layout") and fmt != "csv":
        raise click.UsageError("--layout chooses the CSV layout; give it with --format csv "
                               f"(got --format {fmt})")


def check_baseline_applies(*suites) -> None:
    """``--baseline`` given where no suite's metrics are normalized by a baseline: a usage error."""
    from robustbench_gcp.pipeline.planning import baseline_unused

    if given("baseline") and not any(suite.uses_baseline for suite in suites):
        raise click.UsageError(f"--baseline {baseline_unused(suites)}")


def _preprocess(ctx, param, value):
    """``--preprocess resize_size=342,input_size=299,...`` as the library's ``preprocess`` dict."""
    if value is None:
        return None
    given = {}
    for item in value.split(","):
        key, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not key or not text:
            raise click.BadParameter(f"expected key=value items separated by commas. Got {item!r}")
        if key in given:
            raise click.BadParameter(f"{key} is given twice")
        if key in ("input_size", "resize_size"):
            if not text.isdigit():
                raise click.BadParameter(f"`{key}` should be an integer >= 32. Got {text!r}")
            given[key] = int(text)
        elif key in ("mean", "std"):
            try:
                given[key] = tuple(float(v) for v in text.split(":"))
            except ValueError:
                raise click.BadParameter(f"`{key}` should be three numbers R:G:B. Got {text!r}") from None
        elif key == "interpolation":
            given[key] = text
        else:
            from robustbench_gcp.errors import suggest

            keys = ("resize_size", "input_size", "interpolation", "mean", "std")
            raise click.BadParameter(f"unknown key {key!r}.{suggest(key, keys)}")
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.models.preprocessing import check_preprocess_values

    try:  # each value as the library checks it, named as given here (not `preprocess['std']`)
        return check_preprocess_values(given, str)
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None


#: --preprocess of eval, baseline and compare (there: of every model brought)
preprocess_option = click.option(
    "--preprocess", callback=_preprocess, default=None, metavar="KEY=VALUE,...",
    help="Preprocessing of a model you bring (torchvision:<name>, package.module:callable; compare: "
         "of each): some of resize_size, input_size, interpolation (bilinear, bicubic, nearest...), "
         "mean and std (R:G:B), e.g. resize_size=342,input_size=299. Default: the module's "
         "own pretrained_cfg; for torchvision:<name> its published weights' where they all "
         "share one (inception_v3 342/299, efficientnet_b4 384/380 bicubic); else ImageNet's "
         "(resize 256, crop 224, bilinear); the keys not given keep those.")

model_options = _compose(
    click.option("--checkpoint", default=None, metavar="PATH|URL", callback=_not_empty,
                 help="Weights to load (every published layout; read with weights_only=True). Default: "
                      "the model's file in benchmarks.yaml, where it names one."),
    click.option("--sha256", default=None,
                 help="Expected sha256 of the checkpoint file (whole, or its first 8+ hex digits)."),
    click.option("--random-weights", is_flag=True,
                 help="Seeded random weights instead of any checkpoint (benchmarks.yaml's too): a "
                      "pipeline check, not a result. Without it, a model with no checkpoint is an error."),
    click.option("--sqrt", type=SqrtChoice(), default=None,
                 help="Swap the matrix square root of a GCP model (default: the model's own)."),
    click.option("--ns-iters", type=click.IntRange(1, MAX_NS_ITERS), default=None,
                 help=f"Newton-Schulz iterations, 1 to {MAX_NS_ITERS} (iSQRT-COV checkpoints were trained "
                      "with 5; on their rank-deficient covariances the iteration diverges past about 25)."),
    click.option("--ema/--no-ema", default=True, show_default=True,
                 help="Of a training file with EMA weights (state_dict_ema, e.g. DeiT + DropCov), "
                      "evaluate those, as the original evaluation does; --no-ema takes the raw ones."),
    preprocess_option,
)


#: the --model help of eval and baseline
class _Bounded(click.IntRange):
    """An IntRange whose help names its lower bound only where the upper one only stops overflows
    (``shown=True``: both, where the upper one is a limit a user may meet)."""

    def __init__(self, *args, shown: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.shown = shown

    def _describe_range(self) -> str:
        return f"{self.min}<=x<={self.max}" if self.shown else f"x>={self.min}"

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)  # an integer, or its error
        if number > self.max:
            self.fail(f"{number} is above {self.max}, the largest this takes.", param, ctx)
        return super().convert(number, param, ctx)


#: --batch-size and --shard-size up to 2**31 - 1 (larger ones overflowed SQLite's and islice's
#: integers with a traceback); --seed up to 2**64 - 1 (torch's); --workers up to 64
COUNT = _Bounded(min=1, max=MAX_COUNT)
SEED = _Bounded(min=0, max=MAX_SEED)
WORKERS = _Bounded(min=0, max=MAX_WORKERS, shown=True)


MODEL_HELP = ("A model of benchmarks.yaml, a registry name (see `gcp-robust models`), "
              "torchvision:<name> (any torchvision classifier) or package.module:callable (a "
              "callable returning your nn.Module; --checkpoint is loaded into it strictly).")

class_order_option = click.option(
    "--class-order", type=click.Choice(["imagenet", "sorted"]), default=None,
    help="Labels of the class folders of --data: imagenet (wnid folders get their ImageNet-1k indices) "
         "or sorted (folders numbered in sorted name order, like torchvision's ImageFolder; any names). "
         "Default: the dataset's (imagenet for ImageNet, sorted for CIFAR and Tiny-ImageNet).")

data_options = _compose(
    click.option("--data", type=NonEmptyPath(), default=None, metavar="DIR",
                 help="Clean images: <DIR>/<wnid>/*.JPEG, or a flat folder with --labels; CIFAR "
                      "pickles (cifar-10-batches-py, cifar-100-python); Tiny-ImageNet-200. Default: "
                      "the dataset's entry in the datasets: section of benchmarks.yaml."),
    click.option("--dataset", type=click.Choice(list(DATASETS)),
                 default=None, help="The dataset of the images, which sets how they are read and "
                 "the corruption parameters (preset). Default: the suite's, else found from --data."),
    click.option("--labels", type=NonEmptyPath(), default=None, metavar="FILE",
                 help="Ground truth for a flat val folder: LOC_val_solution.csv or '<file> <index>' lines."),
    class_order_option,
    click.option("--limit", type=COUNT, default=None, metavar="N",
                 help="Evaluate a deterministic, class-balanced subset of N images. Default: every "
                      "image."),
)


def _workers_said(ctx, param, value):
    """--workers beyond the CPUs, said once (torch warned at every shard's loader)."""
    cpus = usable_cpus()
    if value is not None and value > cpus and not ctx.resilient_parsing and is_main_process():
        click.echo(f"note: --workers {value} is more than the {cpus} CPUs this process may use: the loader "
                   "processes share them", err=True)
    return value


workers_option = click.option(
    "--workers", type=WORKERS, default=None, callback=_workers_said,
    help="Data loader processes (at most as many as a shard has batches). Default: min(8, CPUs this "
         "process may use).")

engine_options = _compose(
    device_option,
    click.option("--amp", is_flag=True, help="Mixed precision (float16 on CUDA, bfloat16 on CPU and MPS; "
                 "the matrix functions stay float32): a run of its own in the store."),
    click.option("--channels-last", is_flag=True, help="Channels-last memory format (faster on GPUs): a "
                 "run of its own in the store."),
    click.option("--batch-size", type=COUNT, default=32, show_default=True,
                 help="Images per forward pass; not part of a run (the random draws do not depend on it; "
                 "logits and attack results can differ with it in the last float digits, which may "
                 "flip a near-tie)."),
    workers_option,
    click.option("--seed", type=SEED, default=0, show_default=True,
                 help="Randomness depends only on (seed, cell, image index); another seed is a run of "
                 "its own."),
    click.option("--shard-size", type=COUNT, default=500, show_default=True,
                 help="Images per stored shard: a crash loses at most one shard per cell; a shard and the "
                 "next are held decoded in memory; another size is a run of its own."),
    store_option,
)


def _one_suite(ctx, param, value):
    if value is not None and "," in value:
        raise click.BadParameter(f"{ctx.command.name} runs one suite (`gcp-robust compare --suite {value}` "
                                 "runs several)", ctx, param)
    return value


suite_option = click.option("--suite", "-s", default="clean", show_default=True, metavar="NAME",
                            callback=_one_suite, help="A suite of benchmarks.yaml (see `gcp-robust suites`).")


class ListOption(click.Option):
    """A comma-list option that adds to itself when repeated (``--corruptions fog --corruptions
    snow`` names both; click alone kept the last silently). Its value is one comma list, or
    ``default`` (text) when not given, handed to ``callback`` as a plain option's would be."""

    def __init__(self, *args, default: str | None = None, **kwargs):
        if default is not None:
            kwargs.setdefault("show_default", True)
        super().__init__(*args, multiple=True, default=None if default is None else (default,), **kwargs)

    def type_cast_value(self, ctx: click.Context, value):
        items = super().type_cast_value(ctx, value)
        return ",".join(items) if items else None


def list_option(*decls: str, **kwargs):
    """``click.option`` of a :class:`ListOption`."""
    return click.option(*decls, cls=ListOption, **kwargs)


def _flag_option(flag, kinds: list[str] | None = None) -> click.Option:
    """The click option of a suite's flag (:class:`robustbench_gcp.suites.Flag`); unset is None.
    ``kinds``: the suite kinds that take it, where several do, which its help ends by naming
    (landscape's --corruptions and --severities were said of ImageNet-C alone: helper-289)."""
    text = flag.help + (f" Suite kinds: {', '.join(kinds)}." if kinds and len(kinds) > 1 else "")
    if flag.kind == "switch":
        name = flag.option.removeprefix("--")
        return click.Option([f"{flag.option}/--no-{name}", flag.name], default=None, help=text)
    if flag.kind in ("list", "int_list"):  # text: the suite checks the items, one wording
        return ListOption([flag.option, flag.name], metavar=flag.metavar, help=text)
    types = {
        "text": {},
        "path": {"type": NonEmptyPath()},
        "int": {"type": click.IntRange(min=1)},
        "choice": {"type": click.Choice(flag.choices)},
    }
    return click.Option([flag.option, flag.name], default=None, metavar=flag.metavar, help=text,
                        **types[flag.kind])


class SuiteCommand(click.Command):
    """A command that takes the suites' own flags (``--corruptions``, ``--attacks`` ...).

    The suites declare their flags (:func:`robustbench_gcp.suites.all_flags`); they are added
    after the option named ``flags_after`` when the command first parses or shows its help, and
    the help ends with the suite kinds and what each measures. ``suites``, a predicate of a
    :class:`~robustbench_gcp.suites.Suite`, keeps the flags and kinds to the suites the command
    can run (``baseline``: those a stored run normalizes).
    """

    def __init__(self, *args, flags_after: str = "suite", suites=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.flags_after = flags_after
        self.suites = suites
        self._flags_added = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._flags_added:
            from robustbench_gcp.suites import all_flags, flag_suites, get_suite

            def kinds(flag) -> list[str]:  # of the suites this command runs
                return [k for k in flag_suites(flag.name) if self.suites is None or self.suites(get_suite(k))]

            at = next(i for i, p in enumerate(self.params) if p.name == self.flags_after) + 1
            self.params[at:at] = [_flag_option(flag, kinds(flag)) for flag in all_flags(self.suites)]
            self._flags_added = True
        return super().get_params(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:  # a flag of a suite this command leaves out: say so
            from robustbench_gcp.suites import all_flags, flag_suites, suite_kinds

            flag = next((f for f in all_flags() if f.option == error.option_name), None)
            if self.suites is None or flag is None:
                raise
            kinds = flag_suites(flag.name)
            theirs = f"the {' and '.join(kinds)} suite{'s' if len(kinds) > 1 else ''}"
            raise click.UsageError(f"`{flag.option}` applies to {theirs}, which `{self.name}` does not run "
                                   f"(it runs {' and '.join(suite_kinds(self.suites))})", ctx) from None

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from robustbench_gcp.suites.kinds import kinds_help

        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(kinds_help(self.suites))


def baseline_option(func):
    """``--baseline NAME``: the normalizer of CE (benchmarks.yaml) and FR (a stored run)."""
    from robustbench_gcp.metrics import DEFAULT_BASELINE

    return click.option(
        "--baseline", default=DEFAULT_BASELINE, show_default=True, metavar="NAME[,NAME]",
        help="Normalizer: a baseline of benchmarks.yaml (ImageNet-C) or one stored with "
             "`gcp-robust baseline` (ImageNet-P; CE on CIFAR and Tiny-ImageNet). Several, comma-"
             "separated: each suite takes the first that normalizes it (alexnet,demo-gap: "
             "AlexNet's published errors for ImageNet-C, the stored demo-gap for ImageNet-P).")(func)


def statistics_options(func):
    """``--reference``, ``--resamples`` and ``--plot`` of the commands that compare models."""
    func = click.option("--reference", default=None, metavar="MODEL",
                        help="Model the others are compared with (default: the first of each suite); "
                             "of runs labelled apart, give the label (demo-gap[seed=1]).")(func)
    # (at most 100,000: the resampled means are held, cells x resamples, and a typo of many zeros
    # filled the memory before anything was said)
    func = click.option("--resamples", type=click.IntRange(min=100, max=100_000), default=1000,
                        show_default=True, help="Bootstrap resamples for the 95 % intervals.")(func)
    func = click.option("--plot", "plot_dir", type=NonEmptyPath(file_okay=False), default=None,
                        callback=_plot_folder, metavar="DIR",
                        help="Also write PNG figures into DIR (made if missing).")(func)
    return func


def check_no_intervals(no_intervals: bool) -> None:
    """``--reference`` / ``--resamples`` choose the comparisons that ``--no-intervals`` skips."""
    unused = given_options("reference", "resamples") if no_intervals else []
    if unused:
        verb = "choose" if len(unused) > 1 else "chooses"
        raise click.UsageError(f"{' and '.join(unused)} {verb} the intervals and tests, which "
                               "--no-intervals skips: drop one or the other")


def _plot_folder(ctx, param, value):
    """Check ``--plot DIR`` before any compute (figures are written last): a file must be creatable
    in DIR. The folders the check makes are removed again (the figures make them when written)."""
    if value is None or ctx.resilient_parsing:  # shell completion: check nothing, make nothing
        return value
    import os
    import tempfile

    folder = os.path.expanduser(value)
    if os.path.islink(folder) and not os.path.exists(folder):  # makedirs said "File exists"
        said = absent(folder)
        raise click.BadParameter(f"{folder} {said}" + (": make that folder, or give another"
                                                       if "which does not exist" in said else ""))
    parts = folder.split(os.sep)
    for i in range(1, len(parts)):  # the kernel goes up with `..` only out of a folder that exists
        above = os.sep.join(parts[:i]) or os.sep
        if parts[i] == ".." and not os.path.isdir(above):
            said = "is not a folder" if os.path.exists(above) else absent(above)
            raise click.BadParameter(f"{above} of {value} {said} (the path goes up out of it with ..)")
    # the folders to make, as the kernel reads the path (abspath drops `link/..` unread), without
    # a trailing / and the `.` / `..` names (no folders of their own: removing one failed, and the
    # cleanup stopped before the folders above it)
    made, probe = [], folder.rstrip(os.sep) or os.sep
    while probe and not os.path.exists(probe) and os.path.dirname(probe) != probe:
        if os.path.basename(probe) not in (os.curdir, os.pardir):
            made.append(probe)
        probe = os.path.dirname(probe)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".gcp-robust-check-"):
            pass
    except OSError as error:
        raise click.BadParameter(f"cannot write figures into {folder}: {error.strerror or error}") from None
    finally:
        for path in made:  # deepest first
            try:
                os.rmdir(path)
            except OSError:  # not empty (made meanwhile by another), or not made here
                continue
    return folder


#: the weights of a `bench` command's model
bench_weights_options = _compose(
    click.option("--checkpoint", default=None, callback=_not_empty,
                 help="Weights (default: the model's in benchmarks.yaml)."),
    click.option("--random-weights", is_flag=True,
                 help="Use the registry architecture with seeded random weights (no checkpoint needed)."),
)

#: the model of a `bench` command that runs one (attack, landscape), with its weights and device
bench_model_options = _compose(
    config_option,
    click.option("--model", default="demo-gap", show_default=True, metavar="NAME",
                 help=MODEL_HELP),
    bench_weights_options,
    device_option,
)


def bench_model(config, model, checkpoint, random_weights, device):
    """The model of ``bench attack`` / ``bench landscape`` on its device, and what the table's
    title and the JSON document say of it: ``{"model", "weights", "device"}`` (``weights``:
    the checkpoint file, or ``"random (seed 0)"``)."""
    from robustbench_gcp.config import load_config
    from robustbench_gcp.engine.device import resolve_device
    from robustbench_gcp.pipeline.weights import choose_model, load_chosen

    dev = resolve_device(device)
    choice = choose_model(load_config(config), model, checkpoint=checkpoint, random_weights=random_weights,
                          seed=0)
    net = load_chosen(choice, dev)
    return net, dev, {"model": choice.label, "weights": weights_described(choice), "device": str(dev)}


#: what a bench's JSON says of seeded random weights, and of a module's own (one you bring, built
#: with its weights)
RANDOM_WEIGHTS = "random (seed 0)"
OWN_WEIGHTS = "the module's own"


def weights_described(choice) -> str:
    """A bench model's weights as its JSON says them: the checkpoint file, :data:`RANDOM_WEIGHTS`, or
    :data:`OWN_WEIGHTS` for a module you bring that comes with its weights (as eval says them)."""
    if choice.checkpoint is not None:
        return str(choice.checkpoint)
    external = getattr(choice, "external", None)
    return RANDOM_WEIGHTS if external is None or external.random_init else OWN_WEIGHTS


def bench_model_words(described: dict) -> str:
    """``resnet50-isqrt (random weights) on cpu``: the model part of a bench table's title."""
    weights = {RANDOM_WEIGHTS: "random weights", OWN_WEIGHTS: "its own weights"}.get(described["weights"],
                                                                                 described["weights"])
    return f"{described['model']} ({weights}) on {described['device']}"
