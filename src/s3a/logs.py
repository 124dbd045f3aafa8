"""Logging set-up shared by the rule adapters and the command-line entry points."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class UserError(Exception):
    """Base of the errors a user can cause and fix (a bad dataset root, model entry, LLM endpoint).

    Their message names the thing and what to do. Inside :func:`log_to` such an error is logged once
    as one line; if nothing catches it, the process exits with status 1 without a traceback (which
    would only repeat the line between frames of our code).
    """


def _quiet_user_errors(kind, value, tb) -> None:
    """``sys.excepthook`` that prints nothing for a :class:`UserError` :func:`log_to` has reported."""
    if isinstance(value, UserError) and getattr(value, "s3a_reported", False):
        return
    _default_excepthook(kind, value, tb)


_default_excepthook = sys.excepthook


@contextlib.contextmanager
def log_to(path: str | os.PathLike[str] | None, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send ``logging`` records (and uncaught errors) to ``path`` and stderr for the duration.

    A rule adapter wraps its body in ``with log_to(snakemake.log[0]):`` so the log file holds the
    progress messages and, on failure, the one-line reason before the exception propagates (a
    :class:`UserError` then ends the process without a traceback).
    ``level`` applies to the ``s3a`` loggers; other libraries' records (open_clip, httpx, ...) pass
    from WARNING up, unless ``level`` is DEBUG, which shows everything.
    """
    root = logging.getLogger()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    ours = logging.getLogger("s3a")
    old_level, old_ours = root.level, ours.level
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(h)
    root.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    ours.setLevel(level)
    try:
        yield logging.getLogger("s3a")
    except Exception as exc:
        logging.getLogger("s3a").error("%s: %s", type(exc).__name__, exc)
        if isinstance(exc, UserError):
            exc.s3a_reported = True  # type: ignore[attr-defined]
            sys.excepthook = _quiet_user_errors
        raise
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)
        ours.setLevel(old_ours)
