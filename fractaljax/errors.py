"""The error types of fractaljax: bad input, as opposed to bugs.

Every error here carries a one-line message that names the bad field, file or directory and
the fix. The command-line layer (experiments/_cli.py) prints it as ``error: <message>``
and exits with status 2 (:data:`EXIT_BAD_INPUT`); library users catch :class:`UserError`.
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

EXIT_BAD_INPUT = 2


class UserError(Exception):
    """Bad input: the base of every error the command line reports as one line."""


class ConfigError(UserError, ValueError):
    """A configuration value is unknown, of the wrong type, out of range or not finite."""


class DataError(UserError):
    """A data set or input file is missing or unreadable; the message says how to get it."""


class CheckpointError(UserError):
    """A workdir's checkpoints are missing, unreadable, or do not match the config."""


class Preempted(Exception):
    """SIGTERM or SIGINT stopped training at a step boundary, after a checkpoint was saved.
    Not bad input: the command line prints the message and exits 0; rerunning resumes."""


class TrainingDiverged(UserError):
    """The loss became NaN or inf; the message says which step and what is kept."""


@contextlib.contextmanager
def removed_on_bad_input(path: str) -> Iterator[None]:
    """Remove directory ``path`` again if it did not exist before and a :class:`UserError`
    escapes the block: a command stopped by bad input leaves nothing behind."""
    existed = os.path.exists(path)
    try:
        yield
    except UserError:
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        raise
