"""Stop requests (Ctrl-C, SIGTERM) that are not lost where Python drops exceptions.

The command line's signal handlers raise ``KeyboardInterrupt`` (:class:`~robustbench_gcp.errors.
Terminated` for SIGTERM) in the main thread, so that a run stops where it is and says how far it
got. Python runs a handler at the next bytecode of the main thread, and an exception raised
inside an at-fork hook (each DataLoader start forks its workers: logging's ``_releaseLock`` runs
in the parent) or a finalizer (``__del__``) is reported as "ignored" and dropped: the run then
went on to its end and exited 0, a scheduler's SIGTERM unheeded. So :func:`stop` also records
the request, and the engine calls :func:`raise_pending` between batches: a stop whose exception
was dropped is raised there. A library caller's :func:`~robustbench_gcp.pipeline.run` on the main
thread, with Python's own Ctrl-C handler in place (a script, a Jupyter kernel), gets the same for
SIGINT while it runs (:func:`for_a_library_run`): its Ctrl-C was lost in 2 of 16 tries with loader
workers, the run going on to its end (helper-241). SIGTERM stays the caller's (by default it ends the
process).

A process forked during a run (a DataLoader worker) leaves stops to the run, which ends it: a
Ctrl-C that reached it before torch's worker loop raised there, and multiprocessing printed
that worker's traceback beneath the run's one-line message.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from robustbench_gcp.errors import Terminated

_pending: list[int] = []  # the signals whose stop has not reached the command line yet
_errors: dict[int, BaseException] = {}  # a signal's own error, where another handler raised it (record)


def stop(signum: int, frame=None) -> None:
    """The signal handler of SIGINT and SIGTERM: record the request, then raise it, unless a stop
    is on its way out already (its KeyboardInterrupt, or the run's Interrupted, is being handled
    where the signal lands: an ``except`` or ``finally`` block, a context manager's exit): a second
    Ctrl-C while the first unwound (through the store's and the progress display's closing)
    replaced it with a bare KeyboardInterrupt, losing the message that says how far the run got. A
    stop whose exception was dropped is not on its way out: the next one raises."""
    _pending.append(signum)
    if not isinstance(sys.exc_info()[1], KeyboardInterrupt):  # (errors.Interrupted is one)
        raise _exception(signum)


def raise_pending() -> None:
    """Raise a recorded stop (once) whose exception was dropped; nothing when there is none."""
    if _pending:
        signum = _pending[-1]
        _pending.clear()
        raise _exception(signum)


def pending() -> BaseException | None:
    """The exception of a recorded stop not yet handled (kept recorded), or None: a
    KeyboardInterrupt, or the error another handler raised (:func:`record`)."""
    return _exception(_pending[-1]) if _pending else None


def clear() -> None:
    """The stop reached whoever handles it (the command line's report of it)."""
    _pending.clear()
    _errors.clear()


def record(signum: int, error: BaseException) -> BaseException:
    """``error``, which a handler of signal ``signum`` other than :func:`stop` raises (a torchrun
    rank's stop by its launcher), recorded as :func:`stop` records its own: where Python drops it
    (an at-fork hook ...) the stop is raised between batches still, and not printed. It was lost,
    the rank computing on, and printed as "Exception ignored" with a traceback (helper-229)."""
    _pending.append(signum)
    _errors[signum] = error
    return error


def dropped_quietly(hook):
    """``hook`` (a ``sys.unraisablehook``), silent on a stop that Python drops where it cannot raise
    it (an at-fork hook, a finalizer, a generator closed while the first stop unwinds: a second
    Ctrl-C that cut the wait for a decode under way short): it is recorded (:func:`stop`), and
    raised between batches or stopping the run already. Python printed "Exception ignored in
    <generator object compute ...>" with a traceback, beneath or before the run's message."""

    def quiet(unraisable) -> None:
        error = unraisable.exc_value
        stopping = isinstance(error, KeyboardInterrupt) or any(error is e for e in _errors.values())
        if not (_pending and stopping):
            hook(unraisable)

    return quiet


@contextlib.contextmanager
def for_a_library_run():
    """Inside, Ctrl-C is handled by :func:`stop` (and dropped stops are not printed) where the caller
    left Python's own SIGINT handler on the main thread; elsewhere (the command line's handlers,
    a caller's own, another thread) nothing changes. The run raises a stop dropped after its last
    batch (as :class:`~robustbench_gcp.errors.Interrupted`, saying how far it got), this one a stop
    dropped later still (a KeyboardInterrupt: the report was being made); nothing is left recorded."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    unraisable = sys.unraisablehook
    signal.signal(signal.SIGINT, stop)
    sys.unraisablehook = dropped_quietly(unraisable)
    try:
        yield
        raise_pending()  # one dropped after the run's own last look (its report, the store's closing)
    finally:
        if signal.getsignal(signal.SIGINT) is stop:  # (a handler the caller's code set meanwhile stays)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = unraisable
        clear()


def _exception(signum: int) -> BaseException:
    if signum in _errors:
        return _errors[signum]
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _leave_stops_to_the_run() -> None:
    """In a child forked while :func:`stop` handles the signals: SIGINT ignored (the run stops
    it), SIGTERM the system's default (the run's shutdown of its workers terminates them)."""
    clear()
    for signum, instead in ((signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, signal.SIG_DFL)):
        try:
            if signal.getsignal(signum) is stop:
                signal.signal(signum, instead)
        except ValueError:  # not the main thread of the main interpreter: nothing to change
            pass


os.register_at_fork(after_in_child=_leave_stops_to_the_run)
