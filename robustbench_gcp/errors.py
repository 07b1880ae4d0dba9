"""The project's exceptions.

Library code raises these; the CLI turns them into one-line messages and exit
codes (``click.ClickException`` -> exit 1, ``click.UsageError`` -> exit 2).
"""

from __future__ import annotations

import copy
import difflib
import numbers
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


class GcpRobustError(Exception):
    """Base class of every error the library raises on purpose."""

    #: exit code the CLI uses (1 = the run failed, 2 = the command was used wrongly)
    exit_code = 1


class ConfigError(GcpRobustError, ValueError):
    """benchmarks.yaml or a command-line option is invalid."""

    exit_code = 2


class UnknownNameError(ConfigError, KeyError):
    """A model, suite, corruption, attack ... name that does not exist."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], listing: str | None = None,
                 known_as: str = ""):
        """``listing`` says where to see the choices, a sentence (``"See list_models()"``), said
        when there are too many to name and none is close; ``known_as``, what the name is instead
        (``"an ImageNet-P perturbation"``), said in place of a suggestion."""
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        hint = f" '{name}' is {known_as}, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}." if known_as \
            else suggest(name, self.choices)
        if not hint and listing:
            hint = f" {listing}."
        super().__init__(f"unknown {kind} '{name}'.{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(GcpRobustError):
    """A data folder, image or label file cannot be used.

    ``gone``: where the file at fault was in a folder that is gone (moved or renamed while a run
    read it, or a file put in its place), what :func:`gone_said` says of it where the file was read
    (on that torchrun rank's machine), for the advice to put it back; else None."""

    gone: str | None = None


def gone_said(path: str | os.PathLike, *, folder: bool = True) -> str | None:
    """``the folder X is gone (moved or renamed?)`` (``... is a file now``, ``the link X -> Y points
    to nothing now``) for the outermost folder of ``path`` that is gone; None where none is, or where
    the file system cannot tell (a folder one may not search, a stale network handle).

    ``folder``: ``path`` itself was a folder (an image's folder, the released files'); else only its
    absence counts (a data root, which may be a file: CIFAR's batch file)."""
    start = path = Path(path)
    try:
        if path.is_dir() or (not folder and path.exists()):
            return None
        while path.parent != path and not path.parent.is_dir():
            path = path.parent
        if path.is_symlink():
            target = os.path.normpath(path.parent / os.readlink(path))
            return (f"the link {path} -> {target} points to "
                    f"{'a file now' if path.exists() else 'nothing now (moved or renamed?)'}")
        noun = "folder" if folder or path != start else "file or folder"
        return f"the {noun} {path} is {'a file now' if path.exists() else 'gone (moved or renamed?)'}"
    except OSError:
        return None


@dataclass(frozen=True)
class FitHint:
    """The registered model that a checkpoint fits, where it does not fit the one asked for.

    Phrased for the command line (``use --model X``) or, where the model came from a
    benchmarks.yaml entry, for that entry (``set models.NAME.arch to X``): see
    :meth:`CheckpointError.from_entry`.
    """

    model: str
    #: what the file holds, e.g. ``"d=256, 1000 classes"`` ("" when unknown)
    dims: str = ""
    #: the square root asked for, kept with a model whose default differs (``--sqrt eig``)
    sqrt: str | None = None
    #: a square root was asked for but the fitting model has none (DropCov)
    no_sqrt: bool = False

    def phrase(self, entry: str | None = None) -> str:
        action = f"set {entry}.arch to {self.model}" if entry else f"use --model {self.model}"
        if self.sqrt:
            joint = ", and pass " if entry else " "
            action += f"{joint}--sqrt {self.sqrt} to evaluate it with the {self.sqrt} square root"
        elif self.no_sqrt:
            action += f", without --sqrt ({self.model} has no matrix square root)"
        return f"It fits '{self.model}'" + (f" ({self.dims})" if self.dims else "") + f": {action}."


class CheckpointError(GcpRobustError):
    """A checkpoint file cannot be read or does not fit the architecture.

    ``fit`` names the registered model that the file fits instead: the message ends with it.
    """

    def __init__(self, message: str, fit: FitHint | None = None):
        super().__init__(message)
        self.fit = fit
        self.entry: str | None = None  # the benchmarks.yaml entry that gave the file
        self.source: str | None = None  # where the file was named, ending the message

    def __str__(self) -> str:
        text = str(self.args[0])
        if self.fit is not None:
            text += f"\n  {self.fit.phrase(self.entry)}"
        return text if self.source is None else f"{text} [{self.source}]"

    def from_entry(self, entry: str, source: str) -> CheckpointError:
        """This error for a file that benchmarks.yaml's ``entry`` (``models.NAME``) gave: the
        entry's arch is what to change, not ``--model``; ``source`` ends the message."""
        error = copy.copy(self)
        error.entry, error.source = entry, source
        return error


class StoreError(GcpRobustError):
    """The results store cannot be opened or is inconsistent."""


class OutputError(GcpRobustError):
    """An output file or folder (a figure, the demo's folder) cannot be written."""


class FiguresNotWritten(OutputError):
    """Some figures of a report cannot be written; ``written`` holds the paths of those that were."""

    def __init__(self, message: str, written: list) -> None:
        super().__init__(message)
        self.written = written


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (exit 130) or SIGTERM (exit 143); what was committed stays. A
    KeyboardInterrupt still, not an Exception, so that a caller's ``except Exception`` (a notebook
    looping over models) does not swallow the Ctrl-C."""

    def __init__(self, message: str, *, terminated: bool = False):
        super().__init__(message)
        self.exit_code = 143 if terminated else 130


class NonFiniteError(GcpRobustError):
    """A model gave NaN or infinite outputs: no number computed from them is stored."""


class DeviceMemoryError(GcpRobustError):
    """A batch needed more memory than the device has: the message says to lower --batch-size."""


class ModelCodeError(GcpRobustError):
    """The forward pass of a model you brought raised (its exception is the ``__cause__``)."""


def not_utf8(path: object) -> str | None:
    """``path`` shown with its odd bytes escaped when its name is not UTF-8 (Python's lone
    surrogates, from an old archive or a Windows zip; neither the store nor a fingerprint can
    encode it), else None."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


#: C0 controls (but tab), DEL and C1 controls: a terminal acts on them (ESC [2J clears the screen,
#: ESC ] sets the window title), and a newline forges a line. Also the bidirectional controls
#: (U+202E shows ``evil\u202egnp.pth`` as ``evilhtp.png``) and the line and paragraph separators
#: (a line break to some terminals and viewers).
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: object, newlines: bool = False) -> str:
    """``text`` with its control characters as backslash escapes (``\x1b``, ``\n``): names that come
    from files, folders, stores or downloads, shown in a terminal. ``newlines`` keeps line breaks
    (a message's own indented lines)."""
    text = str(text)
    if not _CONTROLS.search(text):
        return text

    def escaped(match: re.Match) -> str:
        char = match.group(0)
        if newlines and char == "\n":
            return char
        if ord(char) > 0xFF:
            return f"\\u{ord(char):04x}"
        return {"\n": "\\n", "\r": "\\r"}.get(char, f"\\x{ord(char):02x}")

    return _CONTROLS.sub(escaped, text)


def foreign_link(path: object) -> bool:
    """Whether ``path`` is, or passes through, a symbolic link the kernel would not follow for this
    user under Linux's ``fs.protected_symlinks``: in a sticky world-writable folder (``/tmp``),
    owned neither by this user nor by the folder's owner. gcp-robust writes through a link it
    resolves itself, which the kernel's check never sees: another user's ``/tmp/results.csv ->
    ~/.bashrc`` was written to."""
    import os
    import stat
    from pathlib import Path

    path = Path(os.path.abspath(str(path)))  # each component as written, none resolved
    for part in [*reversed(path.parents[:-1]), path]:  # a linked folder on the way counts too
        try:
            link, folder = part.lstat(), part.parent.stat()
        except OSError:
            return False
        shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
        if (stat.S_ISLNK(link.st_mode) and shared and link.st_uid != os.geteuid()
                and link.st_uid != folder.st_uid):
            return True
    return False


def real_path(path: object):
    """``path`` with its symbolic links followed, as :meth:`Path.resolve` does, except that a loop of
    links is left as it is (Python 3.11's ``resolve`` raised RuntimeError: a traceback for a
    ``checkpoint:``, ``--store`` or ``-o`` that is one); whoever opens it says why not."""
    import os
    from pathlib import Path

    return Path(os.path.realpath(os.fspath(path)))


def absent(path: object) -> str:
    """Why ``path`` cannot be opened, where it is not there to follow, for a message:
    ``does not exist``, ``is a loop of symbolic links``, or ``is a symbolic link to X, which does not
    exist`` ("does not exist" was said of a link that does)."""
    import errno
    import os

    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"{'is' if os.path.islink(path) else 'passes through'} a loop of symbolic links"
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        if isinstance(error, PermissionError):  # a folder on the way this process may not enter
            return "cannot be reached (permission denied on a folder of its path)"
        if error.errno != errno.ENOENT:
            return f"cannot be reached ({error.strerror or error})"
    return "does not exist"


def link_loop(path: object) -> bool:
    """Whether ``path`` (or a folder on its way) is a loop of symbolic links."""
    import errno
    import os

    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


IS_A_FOLDER = "is a folder, not a file"
NOT_REGULAR = "is not a regular file (a device, a pipe ...)"


def not_a_file(path: object) -> str | None:
    """None where ``path`` is a regular file (or a link to one); else why not, for a message:
    :data:`IS_A_FOLDER`, :data:`NOT_REGULAR` or, where it is not there, :func:`absent`'s reason.
    As :meth:`Path.exists` does, an error other than its not being there (a name too long) is
    raised: the caller's ``cannot use X: File name too long``."""
    import errno
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            raise
        return absent(path)
    if stat.S_ISREG(mode):
        return None
    return IS_A_FOLDER if stat.S_ISDIR(mode) else NOT_REGULAR


def counted(n: int, noun: str, plural: str = "s") -> str:
    """``n`` and the noun, plural unless 1: ``1 image``, ``3 images``, ``2 classes`` (``es``)."""
    return f"{n} {noun}{'' if n == 1 else plural}"


def listed(names: Sequence[str], shown: int = 6) -> str:
    """The first ``shown`` of ``names``, comma-separated, and how many more: ``a, b and 3 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, else the list of choices."""
    choices = list(choices)
    if not choices:
        return " There are none to choose from."
    def squashed(text: str) -> str:
        return text.lower().replace("_", "").replace("-", "")

    started = [c for c in choices if squashed(c).startswith(squashed(name))] if squashed(name) else []
    if len(started) == 1:  # the start of one name: jpeg for jpeg_compression (difflib finds none)
        return f" Did you mean '{started[0]}'?"
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if not close:  # FGSM for fgsm: difflib's ratio is case-sensitive
        lowered = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=1, cutoff=0.5)
        close = [next(c for c in choices if c.lower() == lowered[0])] if lowered else []
    if close:
        return f" Did you mean '{close[0]}'?"
    if len(choices) <= 20:
        return " Choose from: " + ", ".join(choices) + "."
    return ""


def check_kind(option: str, value: object, kinds: type | tuple[type, ...], what: str) -> None:
    """Raise :class:`ConfigError` (```option` should be WHAT. Got VALUE``) unless ``value`` is one of
    ``kinds``: a library keyword of another type, before it ends in a TypeError deep inside."""
    if not isinstance(value, kinds):
        raise ConfigError(f"`{option}` should be {what}. Got {value!r}")


def check_path(value: object, what: str) -> None:
    """Raise a TypeError (```path` should be WHAT's path (str or Path). Got TYPE``) unless ``value``
    is a path: a number or None given to the library, before ``Path()`` says "expected str, bytes
    or os.PathLike object"."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`path` should be {what}'s path (str or Path). Got {type(value).__name__}")


def user_path(value: str | os.PathLike, name: str, *, error: type[Exception] = ConfigError, hint: str = ""):
    """``value`` as a shell gives a path: ``~`` expanded (a Path stays a Path), a URL or a path of
    bytes as given, "" refused: ``Path("")`` is the working folder (``data=""`` evaluated it, its
    subfolders for classes; a checkpoint "" was "checkpoint file . is a folder": helper-266).

    Raises:
        ``error``: an empty path ("`name` is an empty path" and ``hint``).
    """
    text = os.fspath(value)
    if not isinstance(text, str) or "://" in text:
        return value
    if not text.strip():
        raise error(f"`{name}` is an empty path{hint}")
    if text.startswith("~"):
        expanded = os.path.expanduser(text)
        return Path(expanded) if isinstance(value, os.PathLike) else expanded
    return value


def check_integer(option: str, value: object, low: int = 1, error: type[Exception] | None = None,
                  high: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``low``..``high`` (Python's or NumPy's; not a
    bool, not 2.0).

    ``option`` is the name the message gives (``--batch-size``, ``iters``).

    Raises:
        ConfigError (or ``error``): anything else, naming ``option`` and the value.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low:
        if high is not None and value > high:
            raise (error or ConfigError)(f"`{option}` should be at most {high}. Got {value!r}")
        return int(value)
    wanted = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer >= {low}")
    raise (error or ConfigError)(f"`{option}` should be {wanted}. Got {value!r}")
