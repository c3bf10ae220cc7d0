"""Vision Transformer (Dosovitskiy et al. 2021) in flax.linen, timm/big_vision layout.

Pre-LN blocks, learned position embeddings, a class token (or global average pooling),
stochastic depth. ``__call__`` returns ``(logits, aux)`` where ``aux['pre_logits']`` is the
pooled, normalised representation the head reads and ``aux['blocks']`` holds every block's
token-averaged features (for per-layer linear probes).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fractaljax.errors import ConfigError

# name -> (width, depth, mlp_dim, heads). Ti/S/B as in timm and big_vision; 'mu' and
# 'test' are small sizes for CPU runs and unit tests.
SIZES = {
    "test": (32, 2, 64, 2),
    "mu": (128, 4, 512, 4),
    "ti": (192, 12, 768, 3),
    "s": (384, 12, 1536, 6),
    "b": (768, 12, 3072, 12),
}


def parse_variant(variant: str) -> dict[str, int]:
    """``'Ti/16'`` -> ``dict(width=192, depth=12, mlp_dim=768, num_heads=3, patch_size=16)``."""
    try:
        name, patch = variant.lower().split("/")
        width, depth, mlp_dim, heads = SIZES[name]
        patch_size = int(patch)
        assert patch_size > 0
    except (ValueError, KeyError, AssertionError):
        raise ConfigError(
            f"model.variant={variant!r}: expected SIZE/PATCH with SIZE in "
            f"{sorted(SIZES)} and PATCH a positive integer, e.g. 'Ti/16'"
        ) from None
    return dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads, patch_size=patch_size)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per example with probability ``rate``."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(
            self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1)
        )
        return x * mask.astype(x.dtype) / keep


class MlpBlock(nn.Module):
    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        x = nn.Dense(
            self.mlp_dim,
            dtype=self.dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.normal(1e-6),
        )(x)
        x = nn.gelu(x, approximate=False)
        return nn.Dense(
            d,
            dtype=self.dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.normal(1e-6),
        )(x)


class Block(nn.Module):
    """Pre-LN transformer block: x + DropPath(Attn(LN(x))), then the same with an MLP."""

    num_heads: int
    mlp_dim: int
    drop_path: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BND: jax.Array, train: bool) -> jax.Array:
        y = nn.LayerNorm(dtype=self.dtype)(x_BND)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            deterministic=True,
        )(y, y)
        x_BND = x_BND + DropPath(self.drop_path)(y, train)
        y = MlpBlock(self.mlp_dim, dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(x_BND))
        return x_BND + DropPath(self.drop_path)(y, train)


class ViT(nn.Module):
    """ViT classifier. Build it with :func:`make` from a variant string like ``'Ti/16'``.

    Attributes:
      num_classes: head outputs; 0 means no head (logits are the pre-logits).
      patch_size, width, depth, mlp_dim, num_heads: architecture.
      pool: ``'tok'`` (class token, as timm/DeiT) or ``'gap'`` (mean of patch tokens).
      drop_path: stochastic-depth rate of the last block (linearly increasing from 0).
      dtype: computation dtype (``bfloat16`` for mixed precision); parameters stay float32.
    """

    num_classes: int
    patch_size: int = 16
    width: int = 192
    depth: int = 12
    mlp_dim: int = 768
    num_heads: int = 3
    pool: str = "tok"
    drop_path: float = 0.0
    head_zero_init: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images_BHWC: jax.Array, *, train: bool = False):
        p = self.patch_size
        x = nn.Conv(
            self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="embedding"
        )(images_BHWC.astype(self.dtype))
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        if self.pool == "tok":
            cls = self.param("cls", nn.initializers.zeros, (1, 1, d))
            x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(x.dtype), x], axis=1)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, x.shape[1], d))
        x = x + pos.astype(x.dtype)

        blocks = []
        for i in range(self.depth):
            rate = self.drop_path * i / max(self.depth - 1, 1)
            x = Block(self.num_heads, self.mlp_dim, rate, self.dtype, name=f"block{i}")(x, train)
            blocks.append(x.mean(1).astype(jnp.float32))
        x = nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(x)
        pre_logits = (x[:, 0] if self.pool == "tok" else x.mean(1)).astype(jnp.float32)
        aux = {"pre_logits": pre_logits, "blocks": blocks}
        if self.num_classes <= 0:
            return pre_logits, aux
        init = nn.initializers.zeros if self.head_zero_init else nn.initializers.lecun_normal()
        logits = nn.Dense(self.num_classes, kernel_init=init, name="head")(pre_logits)
        return logits, aux


def make(variant: str, num_classes: int, image_size: int, **kwargs) -> ViT:
    """A :class:`ViT` from a variant string; checks that the patch size divides the image."""
    arch = parse_variant(variant)
    if image_size % arch["patch_size"]:
        raise ConfigError(
            f"model.variant={variant!r}: patch size {arch['patch_size']} does not divide "
            f"the input size {image_size} (input_size, or render.image_size where input_size "
            "is 0); pick an input size that is a multiple of it"
        )
    pool = kwargs.get("pool", "tok")
    if pool not in ("tok", "gap"):
        raise ConfigError(f"model.pool={pool!r}: must be 'tok' or 'gap'")
    return ViT(num_classes=num_classes, **arch, **kwargs)
