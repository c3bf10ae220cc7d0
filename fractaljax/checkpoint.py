"""Orbax checkpoints of a run: periodic saves, keep the last N, resume from the latest.

Saves are asynchronous (orbax's default); :meth:`Checkpoints.close` waits for them.
Only states whose loss was checked finite are saved (see ``train.py``), so the latest
checkpoint is always a good one.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from fractaljax.cli import UserError


class Checkpoints:
    """``<workdir>/checkpoints/<step>/`` managed by an orbax ``CheckpointManager``."""

    def __init__(self, workdir: str, keep: int = 3):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self._mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_handlers=ocp.StandardCheckpointHandler(),
        )

    def latest_step(self) -> int | None:
        """The newest saved step (after :meth:`close`, the newest at closing time)."""
        return self._last if self._mgr is None else self._mgr.latest_step()

    def save(self, step: int, tree) -> None:
        self._mgr.save(step, args=ocp.args.StandardSave(tree))

    def restore(self, step: int, like):
        """Restore ``step`` into the structure, shapes and shardings of ``like``.

        A checkpoint that does not fit (another model size, another number of classes) or
        cannot be read raises :class:`UserError` naming the directory and the fix.
        """
        self._check_params(step, like["params"])
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            return self._mgr.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax raises several types for broken files
            self.close()  # stop orbax's threads before the program exits
            reason = " ".join(str(e).split()).split(". ")[0][:200]
            raise UserError(
                f"checkpoint {self.directory}/{step} is unreadable ({type(e).__name__}: "
                f"{reason}); move it away to resume from the one before, or use a new --workdir"
            ) from None

    def _check_params(self, step: int, params) -> None:
        """Compare the saved parameters' names and shapes with ``params``'s."""

        def shapes(tree):
            flat = jax.tree_util.tree_flatten_with_path(tree)[0]
            return {jax.tree_util.keystr(p): tuple(x.shape) for p, x in flat}

        try:
            saved = shapes(self._mgr.item_metadata(step)["params"])
        except Exception as e:
            self.close()
            raise UserError(
                f"checkpoint {self.directory}/{step} has no readable parameters "
                f"({type(e).__name__}); move it away, or use a new --workdir"
            ) from None
        wanted = shapes(params)
        diff = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        if diff:
            self.close()
            k = diff[0]
            raise UserError(
                f"checkpoint {self.directory}/{step} is of another model: params{k} is "
                f"{saved.get(k, 'absent')} there, {wanted.get(k, 'absent')} in this config; "
                f"use a new --workdir for a new model"
            )

    def close(self) -> None:
        """Wait for pending saves and release the manager; safe to call twice."""
        if self._mgr is not None:
            self._mgr.wait_until_finished()
            self._last = self._mgr.latest_step()
            self._mgr.close()
            self._mgr = None
