"""The model of a config: the ViT of ``config.model`` with the head the run needs.

``fractaljax.models.vit`` is the network; this module reads the config (size, head, dtype,
input side) and checks the model block's fields.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from fractaljax import mdn
from fractaljax.errors import ConfigError
from fractaljax.models import vit

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def input_size(config: ml_collections.ConfigDict, source=None) -> int:
    """The model's input side in pixels: ``config.input_size``, or else the side of the
    source's images (``source.image_shape``, or ``config.render.image_size`` without a
    source), which are then used as they are."""
    if config.get("input_size"):
        return int(config.input_size)
    return int(source.image_shape[0] if source is not None else config.render.image_size)


# What the model's head predicts: 'classes', the L perturbation classes (LPCE, the paper);
# 'mdn', a mixture density over the continuous multipliers u of 1p-frac's base fractal
# (maximum likelihood on fresh draws: the amortized proposal of fractaljax.inference).
HEADS = ("classes", "mdn")


def head(config: ml_collections.ConfigDict) -> str:
    """``config.model.head`` ('classes' for configs older than the field)."""
    return config.model.get("head", "classes")


def num_outputs(config: ml_collections.ConfigDict, num_classes: int) -> int:
    """The head's width: ``num_classes``, or the mixture density's over the ``6N``
    multipliers with ``model.head='mdn'``."""
    if head(config) == "mdn":
        return mdn.num_outputs(config.model.mdn_components, 6 * config.source.n_maps)
    return num_classes


def make_model(config: ml_collections.ConfigDict, num_classes: int) -> vit.ViT:
    """The ViT of ``config.model`` with ``num_classes`` outputs (see :func:`num_outputs`)."""
    m = config.model
    if m.dtype not in DTYPES:
        raise ConfigError(f"model.dtype={m.dtype!r}: must be one of {sorted(DTYPES)}")
    if not 0.0 <= m.drop_path < 1.0:
        raise ConfigError(f"model.drop_path={m.drop_path}: must be in [0, 1)")
    if head(config) not in HEADS:
        raise ConfigError(f"model.head={head(config)!r}: must be one of {HEADS}")
    if head(config) == "mdn":
        if m.mdn_components < 1:
            raise ConfigError(f"model.mdn_components={m.mdn_components}: must be >= 1")
        if m.get("mdn_noise", 0.0) < 0:
            raise ConfigError(f"model.mdn_noise={m.mdn_noise}: must be >= 0")
        if not 0.0 < m.mdn_prior_share < 1.0:
            raise ConfigError(
                f"model.mdn_prior_share={m.mdn_prior_share}: must be in (0, 1) (the prior's "
                "share keeps importance weights bounded)"
            )
    return vit.make(
        m.variant,
        num_classes,
        input_size(config),
        pool=m.pool,
        drop_path=m.drop_path,
        init=m.get("init", "big_vision"),
        dtype=DTYPES[m.dtype],
    )
