"""Data parallelism: a 1-D device mesh over which batches are split, parameters replicated.

Multi-host: call ``jax.distributed.initialize()`` before anything else (on TPU pods it
needs no arguments); the mesh below then spans every host's devices.
"""

from __future__ import annotations

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fractaljax.errors import ConfigError


def data_mesh() -> jax.sharding.Mesh:
    """All devices on one ``'data'`` axis."""
    n = len(jax.devices())
    return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def check_batch(batch_size: int, mesh: jax.sharding.Mesh, field: str = "batch_size") -> None:
    n = mesh.devices.size
    if batch_size < 1 or batch_size % n:
        raise ConfigError(
            f"{field}={batch_size}: must be a positive multiple of the device count ({n})"
        )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``'data'``."""
    return NamedSharding(mesh, P("data"))
