"""Orbax checkpoints of a run: periodic saves, keep the last N, resume from the latest.

Saves are asynchronous (orbax's default); :meth:`Checkpoints.close` waits for them.
Only states whose loss was checked finite are saved (see ``train.py``), so the latest
checkpoint is always a good one.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from fractaljax.errors import CheckpointError


class _Unreadable(Exception):
    """A checkpoint's files cannot be read (partial or corrupt)."""


def _reason(e: Exception) -> str:
    """orbax's error for a broken file, as one short line: its type and first sentence."""
    return f"{type(e).__name__}: {' '.join(str(e).split()).split('. ')[0][:200]}"


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

    def all_steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def restore_latest(self, like) -> tuple[int, dict | None]:
        """``(step, state)`` of the newest readable checkpoint, ``(0, None)`` if there is none.

        An unreadable checkpoint (a partial write, a corrupt file) gets a warning naming it
        and the one before is tried; once one is read, the unreadable newer ones move to
        ``<workdir>/unreadable_checkpoints/`` (kept for inspection; the run saves those steps
        again). When none is readable, :class:`CheckpointError` and nothing moves. A
        checkpoint of another model is an error at once: falling back would not help.
        """
        steps = self.all_steps()
        bad = []
        for step in reversed(steps):
            try:
                self._check_params(step, like["params"], unreadable_ok=True)
                state = self._restore(step, like)
            except _Unreadable as e:
                bad.append(step)
                print(f"warning: checkpoint {self.directory}/{step} is unreadable ({e})")
                continue
            if bad:
                # Moved aside, not deleted (for inspection), so those steps can be saved again.
                aside = os.path.join(os.path.dirname(self.directory), "unreadable_checkpoints")
                if jax.process_index() == 0:
                    os.makedirs(aside, exist_ok=True)
                    for b in bad:
                        src, dst = (os.path.join(d, str(b)) for d in (self.directory, aside))
                        os.replace(src, dst)
                if jax.process_count() > 1:
                    multihost_utils.sync_global_devices("fractaljax: checkpoints moved aside")
                self._mgr.reload()
                print(f"warning: moved steps {bad} to {aside}; resuming from step {step}")
            return step, state
        if bad:
            self.close()
            raise CheckpointError(
                f"no readable checkpoint in {self.directory} (steps {bad}); move them away to "
                "start again, or use a new workdir"
            )
        return 0, None

    def restore(self, step: int, like):
        """Restore ``step`` into the structure, shapes and shardings of ``like``.

        A checkpoint that does not fit (another model size, another number of classes) or
        cannot be read raises :class:`CheckpointError` naming the directory and the fix.
        """
        try:
            self._check_params(step, like["params"])
            return self._restore(step, like)
        except _Unreadable as e:
            self.close()  # stop orbax's threads before the program exits
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} is unreadable ({e}); move it away to "
                "resume from the one before, or use a new workdir"
            ) from None

    def restore_params(self, step: int, like):
        """Only the parameters of ``step``, into the structure, shapes and shardings of
        ``like`` (arrays or ``jax.ShapeDtypeStruct``s): the optimiser state stays on disk.
        Errors as :meth:`restore`."""
        try:
            self._check_params(step, like)
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": like})
            args = jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding), abstract)
            # A reader of its own: the manager's standard handler restores whole trees only.
            reader = ocp.CheckpointManager(
                self.directory, item_handlers=ocp.PyTreeCheckpointHandler()
            )
            try:
                tree = reader.restore(
                    step,
                    args=ocp.args.PyTreeRestore(
                        item=abstract, restore_args=args, partial_restore=True
                    ),
                )
            except Exception as e:  # orbax raises several types for broken files
                raise _Unreadable(_reason(e)) from None
            finally:
                reader.close()
            return tree["params"]
        except _Unreadable as e:
            self.close()
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} is unreadable ({e}); move it away, "
                "or train the run again"
            ) from None

    def _restore(self, step: int, like):
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            return self._mgr.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax raises several types for broken files
            raise _Unreadable(_reason(e)) from None

    def _check_params(self, step: int, params, unreadable_ok: bool = False) -> None:
        """Compare the saved parameters' names and shapes with ``params``'s; an unreadable
        checkpoint raises :class:`_Unreadable` if ``unreadable_ok``, else CheckpointError."""

        def shapes(tree):
            flat = jax.tree_util.tree_flatten_with_path(tree)[0]
            return {jax.tree_util.keystr(p): tuple(x.shape) for p, x in flat}

        try:
            saved = shapes(self._mgr.item_metadata(step)["params"])
        except Exception as e:
            if unreadable_ok:
                raise _Unreadable(f"no readable parameters, {type(e).__name__}") from None
            self.close()
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} has no readable parameters "
                f"({type(e).__name__}); move it away, or use a new workdir"
            ) from None
        wanted = shapes(params)
        diff = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        if diff:
            self.close()
            k = diff[0]
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} is of another model: params{k} is "
                f"{saved.get(k, 'absent')} there, {wanted.get(k, 'absent')} in this config; "
                f"use a new workdir for a new model"
            )

    def close(self) -> None:
        """Wait for pending saves and release the manager; safe to call twice."""
        if self._mgr is not None:
            self._mgr.wait_until_finished()
            self._last = self._mgr.latest_step()
            self._mgr.close()
            self._mgr = None
