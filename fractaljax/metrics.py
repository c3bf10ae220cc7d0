"""One metrics writer: a progress line on stdout, ``metrics.jsonl``, TensorBoard events.

TensorBoard files are written with tensorboardX, so no TensorFlow is needed.
"""

from __future__ import annotations

import json
import os
import time

from fractaljax import files


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricWriter:
    """Writes scalars per step to stdout (optional), ``<workdir>/metrics.jsonl`` and
    ``<workdir>/tb/`` (TensorBoard). ``active=False`` writes nothing: the other processes
    of a multi-process run."""

    def __init__(
        self, workdir: str, *, tensorboard: bool = True, stdout: bool = True, active: bool = True
    ):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.stdout = stdout
        self.active = active
        self._tb = None
        if tensorboard and active:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tb"))

    def truncate_after(self, step: int) -> None:
        """Drop rows beyond ``step`` (a run resumed from the checkpoint at ``step`` writes
        them again), so ``metrics.jsonl`` holds each step once. Atomic: replace, not edit."""
        if not self.active or not os.path.exists(self.path):
            return
        rows = read_jsonl(self.path)
        kept = [r for r in rows if r["step"] <= step]
        if len(kept) < len(rows):
            files.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, scalars: dict, prefix: str = "") -> None:
        if not self.active:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self.stdout:
            body = "  ".join(f"{k} {_fmt(v)}" for k, v in scalars.items())
            print(f"{prefix}step {step}  {body}", flush=True)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: str) -> list[dict]:
    """The rows of a ``metrics.jsonl``."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
