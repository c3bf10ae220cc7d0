"""Small file helpers shared by the run directory, the metric log and the sweep store."""

from __future__ import annotations

import os


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so that a reader
    (or a run killed mid-write) sees the old file or the new one, never half of one."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
