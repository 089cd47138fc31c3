"""Errors a user can act on: one message and exit status 2 instead of a traceback.

Every entry point (``eval/*.py``, ``python -m avbr.train``, ``avbr.envs.make_demos``,
``avbr.adapters.features``, the VLA fine-tune) wraps its ``main`` in :func:`entry_point`::

    @entry_point
    @hydra.main(...)
    def main(cfg): ...

A *user error* is an instance of :class:`UserError` (a mixin the project's own exception classes
inherit: a missing or corrupt file, an unknown registry name, a strict-load mismatch, a setup
error, a resume into a different run...), a ``FileNotFoundError``, a Hydra/OmegaConf
configuration error (unknown config key or group option, bad override, wrong type), or a
``ValueError`` raised by a config dataclass's ``__post_init__`` check. Such an error
prints one message -- what was wrong, where it was raised, and how to get the full traceback -- and
the process exits with status 2. Any other exception is a bug and keeps its full traceback.

Two display switches are read (and removed) from the command line before Hydra or argparse parse
it, so they work for every entry point and never enter a saved config:

* ``verbose=true`` or ``--verbose`` (or ``HYDRA_FULL_ERROR=1``): show the full traceback of user
  errors too;
* ``progress=false`` or ``--no-progress`` (or ``AVBR_PROGRESS=0``): no progress bars
  (:mod:`avbr.progress`).
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Any, Callable

__all__ = ["UserError", "ConfigError", "InputError", "ResumeMismatchError", "entry_point", "format_user_error", "is_user_error"]

EXIT_USER_ERROR = 2
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UserError(Exception):
    """Mixin base of errors the user can fix; subclasses also derive from the builtin they refine.

    Example: ``class DemoFileError(UserError, ValueError)`` -- ``except ValueError`` still catches it.
    The message must say what is wrong with which input and how to fix it.
    """


class ConfigError(UserError, ValueError):
    """A config value that is invalid (out of range, contradicting another field, unknown id)."""


class InputError(UserError, ValueError):
    """An input file or array that cannot be used as given (wrong dtype, shape or layout)."""


class ResumeMismatchError(UserError, RuntimeError):
    """The output folder holds a run with a different configuration (evaluation or pretraining)."""


def _config_error_types() -> tuple[type[BaseException], ...]:
    """Hydra's and OmegaConf's exception bases (imported on use: this module stays light)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return HydraException, OmegaConfBaseException


def _from_config_check(ex: BaseException) -> bool:
    """A ``ValueError``/``TypeError`` raised by a config dataclass's ``__post_init__`` (a rule that
    spans fields, STYLE.md): the config is wrong, not the code."""
    frames = list(traceback.walk_tb(ex.__traceback__))
    return isinstance(ex, (ValueError, TypeError)) and bool(frames) and frames[-1][0].f_code.co_name == "__post_init__"


def is_user_error(ex: BaseException) -> bool:
    """Whether ``ex`` (or the error it wraps) is one the user can fix from its message."""
    seen: set[int] = set()
    while ex is not None and id(ex) not in seen:
        seen.add(id(ex))
        if isinstance(ex, (UserError, FileNotFoundError, NotADirectoryError) + _config_error_types()):
            return True
        if _from_config_check(ex):
            return True
        ex = ex.__cause__  # Hydra and OmegaConf wrap the original error (e.g. a __post_init__ check)
    return False


def _where(ex: BaseException) -> str:
    """``path:line`` of the innermost frame in this repository where ``ex`` was raised, or ``""``."""
    spot = ""
    for frame, line in traceback.walk_tb(ex.__traceback__):
        path = os.path.abspath(frame.f_code.co_filename)
        if (path.startswith(_PACKAGE_ROOT + os.sep) and os.sep + ".venv" + os.sep not in path
                and path != os.path.abspath(__file__)):
            spot = f"{os.path.relpath(path, _PACKAGE_ROOT)}:{line} ({frame.f_code.co_name})"
    return spot


def _text(ex: BaseException) -> str:
    """The message of ``ex``, without the parts that are no help to a user.

    ``KeyError`` quotes its argument in ``str``: take the argument. OmegaConf appends
    ``full_key:``/``object_type=`` lines and Hydra the config search path: drop them.
    """
    text = str(ex.args[0]) if isinstance(ex, KeyError) and len(ex.args) == 1 else str(ex)
    kept = []
    for line in text.strip().splitlines():
        if line.strip().startswith(("full_key:", "object_type=", "reference_type=")) or line.startswith("Config search path"):
            if line.startswith("Config search path"):
                break
            continue
        if line.startswith("\t") and kept and kept[-1].endswith((":", ",")):  # Hydra's option list, one a line
            kept[-1] += " " + line.strip() + ","
            continue
        kept.append(line)
    return "\n".join(k.rstrip(",") for k in kept).strip() or type(ex).__name__


def format_user_error(ex: BaseException) -> str:
    """The one message printed for a user error: kind and text, the raise site, the verbose hint."""
    lines = [f"error ({type(ex).__name__}): {_text(ex)}"]
    cause = ex.__cause__ or (None if ex.__suppress_context__ else ex.__context__)
    # A project error that wraps another project error already carries its reason: skip the repeat.
    if cause is not None and _text(cause) not in lines[0] and not (isinstance(ex, UserError) and isinstance(cause, UserError)):
        lines.append(f"  caused by ({type(cause).__name__}): {_text(cause)}")
    where = _where(ex)
    if where:
        lines.append(f"  raised at: {where}")
    lines.append("  (full traceback: add verbose=true or --verbose, or set HYDRA_FULL_ERROR=1)")
    return "\n".join(lines)


def _take_switch(argv: list[str], names: tuple[str, ...], flag_on: str, flag_off: str) -> bool | None:
    """Remove ``name=true|false`` / ``--flag`` switches from ``argv``; the last one's value, or None."""
    value: bool | None = None
    kept = []
    for arg in argv:
        key, sep, val = arg.partition("=")
        if sep and key in names and val.lower() in ("true", "false", "1", "0"):
            value = val.lower() in ("true", "1")
        elif arg == flag_on:
            value = True
        elif arg == flag_off:
            value = False
        else:
            kept.append(arg)
    argv[:] = kept
    return value


def entry_point(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an entry point: read the display switches, report user errors as one message, exit 2.

    Hydra catches exceptions of the task function and prints its own (trimmed) traceback unless
    ``HYDRA_FULL_ERROR`` is set; the wrapper sets it so that Hydra re-raises and the error reaches
    this handler, which decides between the one-line report and the full traceback.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        argv = sys.argv[1:]
        verbose = _take_switch(argv, ("verbose", "+verbose"), "--verbose", "--no-verbose")
        progress = _take_switch(argv, ("progress", "+progress"), "--progress", "--no-progress")
        sys.argv[1:] = argv
        verbose = bool(verbose) or os.environ.get("HYDRA_FULL_ERROR", "0") not in ("", "0")
        if progress is not None:
            os.environ["AVBR_PROGRESS"] = "1" if progress else "0"
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            return main(*args, **kwargs)
        except Exception as ex:
            if verbose or not is_user_error(ex):
                raise
            sys.stdout.flush()
            print(format_user_error(ex), file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)

    return wrapper
