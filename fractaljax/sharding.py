"""Data parallelism over a 1-D ``'data'`` mesh, on one host or many.

Batches are split over ``'data'``; parameters (and the optimiser state) are replicated, or
with ``param_sharding='fsdp'`` split over the same axis (ZeRO-3 / FSDP style: XLA gathers
each weight where it is used and reduce-scatters its gradient).

Multi-host: :func:`initialize_distributed` (called by ``python -m experiments.pretrain``
from its ``--coordinator_address/--num_processes/--process_id`` flags, or ``--distributed``
for auto-detection on TPU pods, SLURM and Open MPI) joins the processes before any
computation; the mesh then spans every process's devices, the jit-compiled step renders
on each device only that device's slice of the global batch, and only process 0 writes
logs and metrics (:func:`is_primary`); orbax saves and restores collectively.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fractaljax.errors import ConfigError, UserError

PARAM_SHARDINGS = ("replicated", "fsdp")
_JOINED = False  # initialize_distributed joined a multi-process run
# Under FSDP, arrays smaller than this (elements) stay replicated by default: biases, norms
# and the class token cost more to gather than to keep.
FSDP_MIN_SIZE = 2**14


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: must be an integer") from None


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> bool:
    """Join a multi-process run with ``jax.distributed.initialize``; return whether it did.

    Explicit: ``coordinator_address`` (host:port of process 0), ``num_processes`` and
    ``process_id``, each from its argument or else the environment (``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``). ``auto``: let JAX detect them (TPU pods,
    SLURM, Open MPI). Neither (or one process): a no-op. On CPU the collectives between
    processes use gloo. Must run before any JAX computation.
    """
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    n = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    given = {"coordinator_address": address, "num_processes": n, "process_id": pid}
    if not auto:
        if n == 1 or all(v is None for v in given.values()):
            return False
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} missing: a multi-process run needs "
                "coordinator_address, num_processes and process_id together (or auto=True "
                "to detect them on a TPU pod, SLURM or Open MPI)"
            )
    if n is not None and n < 1:
        raise ConfigError(f"num_processes={n}: must be >= 1")
    if n is not None and pid is not None and not 0 <= pid < n:
        raise ConfigError(f"process_id={pid}: must be in [0, {n}) for num_processes={n}")
    # Only the CPU client reads this; GPUs and TPUs have their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    global _JOINED
    try:
        jax.distributed.initialize(address, n, pid)
        _JOINED = True
    except (RuntimeError, ValueError) as e:
        reason = " ".join(str(e).split())[:200]
        raise UserError(
            f"jax.distributed.initialize failed ({reason}); check coordinator_address "
            "(host:port of process 0, reachable from every process), num_processes and "
            "process_id, or drop them for a one-process run"
        ) from None
    print(
        f"jax.distributed: process {jax.process_index()} of {jax.process_count()}, "
        f"{jax.local_device_count()} of {jax.device_count()} devices here",
        flush=True,
    )
    return True


def shutdown_distributed() -> None:
    """Leave the multi-process run joined by :func:`initialize_distributed` (a no-op
    otherwise); for exits that skip JAX's own atexit hook (``os._exit``)."""
    global _JOINED
    if _JOINED:
        _JOINED = False
        jax.distributed.shutdown()


def single_cpu_device() -> bool:
    """One CPU device: a batch there gives no parallelism that one image lacks, so per-image
    work runs fastest one image after another (``lax.map``), in cache."""
    return jax.default_backend() == "cpu" and jax.device_count() == 1


def is_primary() -> bool:
    """Whether this is process 0, the one that writes logs, metrics and records."""
    return jax.process_index() == 0


def data_mesh() -> jax.sharding.Mesh:
    """All devices of all processes on one ``'data'`` axis."""
    n = len(jax.devices())
    return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def check_batch(batch_size: int, mesh: jax.sharding.Mesh, field: str = "batch_size") -> None:
    """``batch_size`` is the global batch: it must split evenly over every device."""
    n = mesh.devices.size
    if batch_size < 1 or batch_size % n:
        procs = jax.process_count()
        where = f"{n} devices" + (f" over {procs} processes" if procs > 1 else "")
        per = batch_size / n
        raise ConfigError(
            f"{field}={batch_size}: the global batch must be a positive multiple of the "
            f"device count ({where}; that is {per:g} images per device); use e.g. "
            f"{field}={max(1, round(per)) * n}"
        )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(tree, mesh: jax.sharding.Mesh):
    """``tree``'s arrays, the same values on every process, replicated over ``mesh``'s
    devices: how the data a jitted step reads goes in as an argument (a multi-process run's
    programs take global arrays)."""
    layout = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, layout)

    def one(x):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, layout, lambda idx: host[idx])

    return jax.tree.map(one, tree)


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``'data'``."""
    return NamedSharding(mesh, P("data"))


def check_param_sharding(mode: str) -> None:
    if mode not in PARAM_SHARDINGS:
        raise ConfigError(f"param_sharding={mode!r}: must be one of {PARAM_SHARDINGS}")


def array_spec(shape: tuple[int, ...], n: int, mode: str, min_size: int = FSDP_MIN_SIZE) -> P:
    """The partition of one array: ``P()`` (replicated), or under ``'fsdp'`` its largest
    axis that ``n`` divides split over ``'data'`` (arrays under ``min_size`` elements, or
    with no such axis, stay replicated)."""
    check_param_sharding(mode)
    if mode == "replicated" or n == 1 or math.prod(shape) < min_size:
        return P()
    fits = [i for i, d in enumerate(shape) if d % n == 0]
    if not fits:
        return P()
    axis = max(fits, key=lambda i: (shape[i], -i))
    return P(*(["data" if i == axis else None for i in range(len(shape))]))


def state_shardings(
    tree, mesh: jax.sharding.Mesh, mode: str = "replicated", min_size: int = FSDP_MIN_SIZE
):
    """A pytree of :class:`NamedSharding` for ``tree`` (arrays or shape structs): the train
    state's parameters and optimiser moments split alike (by shape), scalars replicated."""
    n = mesh.devices.size

    def one(x):
        return NamedSharding(mesh, array_spec(tuple(x.shape), n, mode, min_size))

    return jax.tree.map(one, tree)


def split_fraction(tree) -> float:
    """The fraction of ``tree``'s elements (placed arrays) that are split over devices."""
    leaves = jax.tree.leaves(tree)
    total = sum(x.size for x in leaves)
    split = sum(x.size for x in leaves if not x.sharding.is_fully_replicated)
    return split / max(total, 1)
