"""The ``gcp-robust`` command line.

Commands live one per module and are imported lazily, so ``gcp-robust --help``
does not pay for importing torch. Library errors (:class:`GcpRobustError`)
become one-line messages: exit code 1 for a failed run, 2 for wrong usage, 130 after
Ctrl-C and 143 after SIGTERM (a stopped run says how far it got; re-running resumes).
"""

from __future__ import annotations

import contextlib
import importlib
import re
import signal
import sys
import threading

import click

from robustbench_gcp import __version__
from robustbench_gcp.engine import stops
from robustbench_gcp.engine.ranks import is_main_process
from robustbench_gcp.errors import GcpRobustError, Interrupted, Terminated, printable, suggest

STORING = ("eval", "compare", "demo", "baseline")  # the commands that commit results to a store
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


#: what a torchrun rank other than 0 runs for a command that computes nothing to share
_NOTHING = click.Command("nothing", callback=lambda: None, add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


def _wrap_at_spaces() -> None:
    """Have click's help wrap lines at spaces only: textwrap breaks after hyphens too, which split
    names a user copies (``[default: gcp-`` / ``robust.db]``, ``--batch-`` / ``size``,
    ``cifar-`` / ``validation``: helper-289). click builds its wrapper from this class at each
    call (``click.formatting.wrap_text``); a word longer than a line is still cut."""
    from click import _textwrap

    wrapper = _textwrap.TextWrapper
    if getattr(wrapper, "at_spaces_only", False):
        return

    class AtSpaces(wrapper):
        at_spaces_only = True

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("break_on_hyphens", False)
            super().__init__(*args, **kwargs)

    _textwrap.TextWrapper = AtSpaces


_wrap_at_spaces()

#: the options of one value whose second value means "several", and what those would be run by;
#: a setting given again (a shell alias's --workers 0, then --workers 4) is taken as click takes it,
#: the last
_REPEAT_HINTS = {"model": " (compare evaluates several models)", "suite": " (compare runs several suites)",
                 "checkpoint": " (compare evaluates several checkpoints: --model NAME=FILE)"}


def _refuse_repeats(ctx: click.Context, command: click.Command, args: list[str]) -> None:
    """Refuse a model, suite or checkpoint given twice with two values (``eval -m demo-gap -m
    demo-isqrt`` evaluated demo-isqrt alone, ``-s imagenet-c -s clean`` the clean suite: click keeps
    the last, silently; helper-289). Lists (:class:`~robustbench_gcp.cli.options.ListOption`) add
    up; other options keep the last value given.

    Raises:
        click.UsageError: naming the option and both values.
    """
    if {"-h", "--help"} & set(args[:args.index("--")] if "--" in args else args):
        return  # the help, whatever else is given
    valued = {}  # option string -> its option, for those that take a value
    for param in command.get_params(ctx):  # (a SuiteCommand adds the suites' flags there)
        if isinstance(param, click.Option) and not param.is_flag and not param.count:
            valued.update({opt: param for opt in (*param.opts, *param.secondary_opts)})
    seen: dict[str, tuple[str, str]] = {}  # the option's name -> how it was first given: (option, value)
    position = 0
    while position < len(args):
        token = args[position]
        position += 1
        if token == "--":
            break
        option, value = token, None
        if token.startswith("--") and "=" in token:
            option, value = token.split("=", 1)
        elif token.startswith("-") and not token.startswith("--") and len(token) > 2 and token[:2] in valued:
            option, value = token[:2], token[2:]  # -mdemo-gap
        param = valued.get(option)
        if param is None:
            continue
        if value is None and position < len(args):
            value = args[position]
            position += 1
        if param.multiple or param.name not in _REPEAT_HINTS or value is None:  # (click says a value lacks)
            continue
        if param.name in seen and seen[param.name][1] != value:
            name = max(param.opts, key=len)
            hint = _REPEAT_HINTS[param.name] if command.name == "eval" else ""  # compare runs eval's work
            first = " ".join(seen[param.name])
            raise click.UsageError(f"{name} is given twice ({first}, then {option} {value}): give it once"
                                   f"{hint}", ctx)
        seen[param.name] = (option, value)


class LazyGroup(click.Group):
    """A click group whose subcommands are ``"module:attribute"`` strings."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in (*STORING, "bench") and not ctx.resilient_parsing:  # the commands that compute
            keep_freed_memory()
        if name in self.lazy_commands:
            module, attribute = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            name, command, rest = super().resolve_command(ctx, args)
            # (a group's subcommands are checked by the group: bench's)
            if command is not None and not isinstance(command, click.Group) and not ctx.resilient_parsing:
                _refuse_repeats(click.Context(command, info_name=name, parent=ctx), command, rest)
            if name not in (*STORING, "bench") and not is_main_process() and _under_torchrun():
                # `report` (models, suites, inspect) under torchrun: rank 0 alone runs it (every rank
                # printed the whole report, and wrote -o at once: helper-264)
                return name, _NOTHING, rest
            return name, command, rest
        except click.UsageError:
            name = args[0] if args else ""
            commands = self.list_commands(ctx)
            if not name or name.startswith("-") or name in commands:
                raise
            # click names an unknown command without the closest one, as the tool does for options
            raise click.UsageError(f"No such command '{name}'.{suggest(name, commands)}", ctx) from None

    def main(self, *args, **kwargs):
        previous, ended = None, None
        try:
            _late_stops.clear()
            # outside a command's own handlers (parsing, the last message), in a program; a caller of
            # main(standalone_mode=False) gets click's Abort, as before
            if kwargs.get("standalone_mode", True):
                previous = _on_signals(_exit_stopped)
            return super().main(*args, **kwargs)
        except SystemExit as leaving:
            ended = leaving.code
            raise
        except OSError as error:
            # click writes --help and --version itself, while parsing (``--help > /dev/full``)
            stream = _from_click_echo(error)
            if isinstance(error, BrokenPipeError) or error.filename is not None or not stream:
                raise
            from robustbench_gcp.cli.output import _discard_stdout

            _discard_stdout()
            click.echo(f"Error: cannot write to {stream}: {error.strerror or error}", err=True)
            sys.exit(1)
        finally:
            if previous is not None:
                _on_signals(previous)
            late = [signum for signum in _late_stops if signum]
            _late_stops.clear()
            if late:  # a stop while the command's last message was written, which it let finish
                if ended not in (130, 143):  # not a stopped run's message: what it wrote is whole
                    _say_output_complete(late[-1])
                raise SystemExit(128 + late[-1])

    def invoke(self, ctx: click.Context):
        previous = _on_signals(stops.stop)
        unraisable = sys.unraisablehook
        sys.unraisablehook = stops.dropped_quietly(unraisable)
        try:
            result = super().invoke(ctx)
            stops.raise_pending()  # a stop whose exception Python dropped after the last batch
            _end_torchrun_rank()
            return result
        except click.UsageError:  # the command line's options, parsed alike by every rank
            # leaving at once, this rank had the launcher stop rank 0 before it said the error, which
            # then said only that it was stopped (helper-264: 4 of 11 runs)
            if not _says_usage_errors() and _stopped_while_local_rank_0_says_it():
                raise SystemExit(2) from None
            raise
        except GcpRobustError as error:
            if _said_by_rank_0(error):
                raise SystemExit(error.exit_code) from None
            # a name, an option or a file (a missing checkpoint: exit 1) before the job met: the same on
            # every rank of a machine, whose first says it (every rank did, or one beside a "stopped
            # by the launcher" of rank 0: helper-264)
            if (error.exit_code == 2 or _before_joining_torchrun()) and not _says_usage_errors() \
                    and _stopped_while_local_rank_0_says_it():
                raise SystemExit(error.exit_code) from None
            # names from files and stores: no escape sequences, and a line break of theirs (not one
            # of the message's own indented lines) does not start a line
            said = re.sub(r"\n(?!  )", r"\\n", printable(error, newlines=True))
            # what the caller added (PEP 678: which of several evaluations failed), indented below
            said += "".join(f"\n  {printable(note)}" for note in getattr(error, "__notes__", ()))
            if error.exit_code == 2:
                raise click.UsageError(said) from None
            failure = click.ClickException(said)
            failure.exit_code = error.exit_code
            raise failure from None
        except OSError as error:  # a path the system refuses (no permission, a name too long ...)
            if error.filename is None or isinstance(error, BrokenPipeError):
                raise
            said = printable(f"cannot use {error.filename}: {error.strerror or error}")
            raise click.ClickException(said) from None
        except Interrupted as stop:  # a run stopped: how far it got
            _second_stops_wait(previous)
            stops.clear()
            if not is_main_process():  # rank 0 says how far the job got
                raise SystemExit(stop.exit_code) from None
            failure = click.ClickException(str(stop))
            failure.exit_code = stop.exit_code
            raise failure from None
        except KeyboardInterrupt as stop:  # stopped before a run started, after it ended, or twice
            _second_stops_wait(previous)
            stops.clear()
            terminated = isinstance(stop, Terminated)
            if not is_main_process():  # a torchrun rank stopped with the job: rank 0 says why
                raise SystemExit(143 if terminated else 130) from None
            what = "terminated" if terminated else "interrupted"
            if terminated and _before_joining_torchrun():
                what = ("stopped by the launcher before this rank joined the job: another rank stopped first "
                        "(its own error says why) or the job was cancelled; nothing was computed")
            elif ctx.invoked_subcommand in STORING:
                what += ": what was committed stays in the store; re-run the same command to resume"
            failure = click.ClickException(what)
            failure.exit_code = 143 if terminated else 130
            raise failure from None
        finally:
            _on_signals(previous)
            sys.unraisablehook = unraisable
            stops.clear()  # handled, or another error won: never the next command's (a notebook)
            _late_stops.append(0)  # the command ran: a stop from here on lets its message be written


def program() -> None:
    """The ``gcp-robust`` program (the console script, ``python -m robustbench_gcp``): :func:`main`,
    with a stopped run's exit status kept. CPython ends a process by SIGINT (status -2, whatever
    status it was asked to exit with) once a KeyboardInterrupt has left code run through
    ``PyRun_String``, as a lazy import's pybind11 ``exec`` in torch or timm is; a Ctrl-C that lands
    there mid-run did so after the message that says how far the run got. A stopped command
    therefore leaves through ``os._exit`` once the exit handlers have run and the output is out
    (what it stored is committed and its store closed by then).

    So does every command that ends with a status: a Ctrl-C or SIGTERM after the command's own
    handlers, while the interpreter tore down torch (about 0.3 s), ended the process by that
    signal (status -2 or -15, no word) after a complete output. Such a stop now exits 130 or 143
    with a note that the output is complete."""
    tolerant_output()
    after: list[int] = []  # stops once the command's own handlers are gone
    _on_signals(lambda signum, frame: after.append(signum))
    try:
        main()
    except SystemExit as leaving:
        code = leaving.code
        if after and code not in (130, 143):
            _say_output_complete(after[-1])
            code = 128 + after[-1]
        if code is None or isinstance(code, int):
            _leave(code or 0)
        raise


#: what a stream that cannot encode a character of the tables writes instead (a cp1252 or
#: Latin-1 stdout: Windows pipes, older locales); rich draws its boxes and bars in ASCII there
STAND_INS = {"Δ": "d", "×": "x", "…": "...", "ε": "eps", "β": "beta", "±": "+/-"}


def tolerant_output() -> None:
    """Have stdout and stderr write :data:`STAND_INS` for what their encoding cannot encode:
    ``report`` and ``compare`` ended in a traceback, their results lost, on the Δ of a table
    header (a ``strict`` stdout; a C locale's ``surrogateescape`` one too), and stderr wrote
    ``\\u2026`` for a progress label's "…", five columns more than the bar had. Other characters
    are as the stream had them: ``?`` (strict), their bytes (surrogateescape's file names),
    backslash escapes (backslashreplace)."""
    import codecs

    def handler(otherwise: str):
        def kept(char: str) -> str:  # what the stream wrote for a character without a stand-in
            escaped = otherwise == "backslashreplace"
            return char.encode("ascii", "backslashreplace").decode() if escaped else "?"

        def stand_in(error: UnicodeError) -> tuple[str | bytes, int]:
            if not isinstance(error, UnicodeEncodeError):
                raise error
            text = error.object[error.start:error.end]
            if otherwise == "surrogateescape" and all(0xDC80 <= ord(char) <= 0xDCFF for char in text):
                return bytes(ord(char) - 0xDC00 for char in text), error.end  # a name's own bytes
            return "".join(STAND_INS.get(char) or kept(char) for char in text), error.end

        return stand_in

    for stream in (sys.stdout, sys.stderr):
        encoding, errors = getattr(stream, "encoding", None), getattr(stream, "errors", None)
        if not encoding or errors not in ("strict", "surrogateescape", "backslashreplace"):
            continue
        try:
            "".join(STAND_INS).encode(encoding)
        except UnicodeEncodeError:
            name = f"gcp-robust-stand-ins-{errors}"
            codecs.register_error(name, handler(errors))
            try:
                stream.reconfigure(errors=name)
            except (AttributeError, ValueError, LookupError):  # not a TextIOWrapper; stays as it was
                pass
        except LookupError:  # an encoding Python does not know: nothing to do
            pass


def _say_output_complete(signum: int) -> None:
    """The note of a stop that came once the command had written its output."""
    with contextlib.suppress(OSError, ValueError):  # a closed stderr: the status says it
        click.echo(f"note: stopped by {signal.Signals(signum).name} after the command finished: its "
                   "output is complete", err=True)


def _leave(code: int) -> None:
    import atexit

    # another Ctrl-C while the exit handlers run leaves at once, as this one would (Python's handler,
    # back by then, printed "Exception ignored in atexit callback" and a traceback)
    _on_signals(lambda signum, frame: _flush_and_exit(code))
    atexit._run_exitfuncs()  # logging, multiprocessing, torch.distributed, weakref finalizers
    _flush_and_exit(code)


def _flush_and_exit(code: int) -> None:
    import os

    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with it closed (>&-)
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream: nothing more can be said
            pass
    os._exit(code)


def _says_usage_errors() -> bool:
    """Whether this process writes a usage error: under torchrun, the first rank of each node
    (LOCAL_RANK 0) says it, not every rank in turn; one on each node, whose files may differ."""
    import os

    return os.environ.get("LOCAL_RANK", "0") == "0"


#: seconds a torchrun rank other than its node's first waits with a usage error for the launcher to
#: stop it (:func:`_stopped_while_local_rank_0_says_it`)
USAGE_ERROR_WAIT = 5.0


def _stopped_while_local_rank_0_says_it() -> bool:
    """Under torchrun, on a rank other than its node's first, with an error of its command line or
    files (exit status 2: an unknown name, a wrong value): the node's first rank has the same one
    and says it, and the launcher then stops this rank. Every rank said it, and rank 0, stopped by
    the launcher before it could, said "terminated ... re-run the same command to resume". Wait
    :data:`USAGE_ERROR_WAIT` seconds for that stop: True when it came (nothing more to say), False
    when it did not (an error of this rank's own, which it then says)."""
    import time

    if not _under_torchrun():  # (no launcher to stop it: a shell with RANK set, ranks started by hand)
        return False
    try:
        time.sleep(USAGE_ERROR_WAIT)
    except (KeyboardInterrupt, GcpRobustError):  # the launcher's SIGTERM: errors.Terminated, or once
        stops.clear()  # the process group is up, a RankFailure (distributed.Distributed._stopped)
        return True
    return False


def _before_joining_torchrun() -> bool:
    """Under torchrun, whether this rank has not joined the job yet: a launcher's SIGTERM then means
    another rank left first (a usage error it said after waiting :data:`USAGE_ERROR_WAIT` seconds
    on a loaded machine), and rank 0 said "terminated: ... re-run the same command to resume" for a
    command that never started (helper-231)."""
    from robustbench_gcp.engine.ranks import launched_by_torchrun

    try:
        if not launched_by_torchrun():
            return False
    except GcpRobustError:  # a torchrun variable that is no number
        return False
    distributed = sys.modules.get("robustbench_gcp.engine.distributed")  # never imported: never joined
    return distributed is None or distributed.Distributed._current is None


def _under_torchrun() -> bool:
    """Whether torchrun's launcher started this process (a variable of its that is no number: not
    said here)."""
    from robustbench_gcp.engine.ranks import under_the_launcher

    try:
        return under_the_launcher()
    except GcpRobustError:
        return False


def _said_by_rank_0(error: GcpRobustError) -> bool:
    """On a torchrun rank other than 0, an error rank 0 says itself (it refused the run)."""
    if is_main_process():
        return False
    from robustbench_gcp.engine.distributed import RankRefused

    return isinstance(error, RankRefused)


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse instead of returning it to the system (Linux).

    glibc gives every block above 32 MB its own ``mmap`` and unmaps it when freed, so a CPU
    forward pass at batch 32 got fresh zero-filled pages for each layer's output: about 7 million
    page faults and 1.4x the wall time on an ImageNet-C run, for the same numbers. Resident
    memory stays at its peak instead (about 240 MB more for a ResNet-18 at batch 32). Set
    ``MALLOC_MMAP_MAX_`` or ``MALLOC_TRIM_THRESHOLD_`` yourself and this leaves glibc alone.
    Returns whether it changed anything.
    """
    import ctypes
    import os
    import sys

    chosen = {"MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ)
    if not sys.platform.startswith("linux") or chosen:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl ...)
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))


def _from_click_echo(error: BaseException) -> str:
    """The stream ("standard output" or "standard error") ``click.echo`` was writing when ``error``
    was raised inside it (help and version text, written while the command line is parsed); ""
    for an error from anywhere else, which keeps its traceback."""
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "echo" and frame.f_globals.get("__name__") == "click.utils":
            return "standard error" if frame.f_locals.get("err") else "standard output"
        tb = tb.tb_next
    return ""


def _end_torchrun_rank() -> None:
    """A torchrun rank whose command succeeded ends here (:func:`~robustbench_gcp.engine.distributed.
    leave_after_success`); nothing happens outside torchrun, and the module is not imported for it."""
    import sys

    module = sys.modules.get("robustbench_gcp.engine.distributed")
    if module is not None:
        module.leave_after_success()


#: 0 once the command has run, then the signals that came after it (:func:`_exit_stopped`)
_late_stops: list[int] = []


def _exit_stopped(signum: int, frame=None) -> None:
    """SIGINT or SIGTERM outside a command's run: while the command line is parsed (and the
    command's module imported), exit 130 or 143 at once; after the command (a second Ctrl-C while
    the first one's message is written), let the message be written, then exit so. Python's own
    handler, there before, ended the process by the signal (status -2) or with click's "Aborted!"
    (exit 1), cutting the message that says how far the run got."""
    if not _late_stops:
        raise SystemExit(128 + signum)
    _late_stops.append(signum)


def _second_stops_wait(previous) -> None:
    """A stop is being reported: a second Ctrl-C or SIGTERM from here on lets its message be written
    (the program's :func:`_exit_stopped`, back in place, records it), where the command's own
    handler raised it into click ("Aborted!", exit 1, the message lost)."""
    _late_stops.append(0)
    _on_signals(previous)


def _on_signals(handlers):
    """Install ``handlers`` (one for both, or the pair ``_on_signals`` returned) for SIGINT and
    SIGTERM, and return the previous pair (main thread only: signal handlers cannot be set
    elsewhere, e.g. under a test runner's thread)."""
    if handlers is None or threading.current_thread() is not threading.main_thread():
        return None
    pair = handlers if isinstance(handlers, tuple) else (handlers, handlers)
    previous = tuple(signal.getsignal(signum) for signum in STOP_SIGNALS)
    for signum, handler, before in zip(STOP_SIGNALS, pair, previous):
        if before is not signal.SIG_IGN:  # a signal ignored by whoever started us stays ignored
            signal.signal(signum, handler)
    return previous


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    lazy_commands={
        "eval": "robustbench_gcp.cli.eval:eval_cmd",
        "models": "robustbench_gcp.cli.models:models_cmd",
        "suites": "robustbench_gcp.cli.suites:suites_cmd",
        "inspect": "robustbench_gcp.cli.inspect:inspect_cmd",
        "bench": "robustbench_gcp.cli.bench:bench",
        "baseline": "robustbench_gcp.cli.baseline:baseline_cmd",
        "compare": "robustbench_gcp.cli.compare:compare_cmd",
        "report": "robustbench_gcp.cli.report:report_cmd",
        "demo": "robustbench_gcp.cli.demo:demo_cmd",
    },
)
@click.version_option(version=__version__, prog_name="gcp-robust")
def main() -> None:
    """Robustness of GAP and global covariance pooling (GCP) classifiers.

    Evaluate checkpoints on ImageNet-C corruptions (computed on the fly or read
    from the released files), ImageNet-P perturbation sequences, adversarial
    attacks and the loss landscape; every result is stored so runs resume, and
    reports come from the store.

    \b
    Example:
      gcp-robust eval --model resnet50-isqrt --checkpoint r50_isqrt.pth \\
          --suite imagenet-c --data /data/imagenet/val
    """
