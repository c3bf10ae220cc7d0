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


INITS = ("big_vision", "timm")


def initializers(kind: str) -> dict[str, Any]:
    """Parameter initialisers: ``'big_vision'`` (fractaljax's default: Xavier-uniform
    kernels, 1e-6 normal MLP biases, zero class token and head) or ``'timm'`` (timm's
    ``init_weights_vit_timm``: every Linear, the head included, N(0, 0.02) with zero bias;
    class token N(0, 1e-6); the patch embedding as PyTorch's Conv2d default). timm's
    ``trunc_normal_(std=0.02, a=-2, b=2)`` truncates at +-2 absolute, 100 standard
    deviations out: it is N(0, 0.02), not JAX's truncated_normal (cut at 2 sigma)."""
    normal = nn.initializers.normal
    if kind == "timm":
        return dict(dense=normal(0.02), dense_bias=nn.initializers.zeros, cls=normal(1e-6))
    return dict(
        dense=nn.initializers.xavier_uniform(), dense_bias=normal(1e-6), cls=nn.initializers.zeros
    )


def _torch_uniform(fan_in: int):
    """PyTorch's default Linear/Conv init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = fan_in**-0.5
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound
    )


class MlpBlock(nn.Module):
    mlp_dim: int
    dtype: Any = jnp.float32
    init_scheme: str = "big_vision"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        i = initializers(self.init_scheme)
        x = nn.Dense(
            self.mlp_dim, dtype=self.dtype, kernel_init=i["dense"], bias_init=i["dense_bias"]
        )(x)
        x = nn.gelu(x, approximate=False)
        return nn.Dense(d, dtype=self.dtype, kernel_init=i["dense"], bias_init=i["dense_bias"])(x)


class Block(nn.Module):
    """Pre-LN transformer block: x + DropPath(Attn(LN(x))), then the same with an MLP."""

    num_heads: int
    mlp_dim: int
    drop_path: float = 0.0
    dtype: Any = jnp.float32
    init_scheme: str = "big_vision"

    @nn.compact
    def __call__(self, x_BND: jax.Array, train: bool) -> jax.Array:
        y = nn.LayerNorm(dtype=self.dtype)(x_BND)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            kernel_init=initializers(self.init_scheme)["dense"],
            deterministic=True,
        )(y, y)
        x_BND = x_BND + DropPath(self.drop_path)(y, train)
        mlp = MlpBlock(self.mlp_dim, dtype=self.dtype, init_scheme=self.init_scheme)
        y = mlp(nn.LayerNorm(dtype=self.dtype)(x_BND))
        return x_BND + DropPath(self.drop_path)(y, train)


class ViT(nn.Module):
    """ViT classifier. Build it with :func:`make` from a variant string like ``'Ti/16'``.

    Attributes:
      num_classes: head outputs; 0 means no head (logits are the pre-logits).
      patch_size, width, depth, mlp_dim, num_heads: architecture.
      pool: ``'tok'`` (class token, as timm/DeiT) or ``'gap'`` (mean of patch tokens).
      drop_path: stochastic-depth rate of the last block (linearly increasing from 0).
      init_scheme: parameter initialisation, ``'big_vision'`` or ``'timm'``
        (:func:`initializers`; ``make(..., init=...)``).
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
    init_scheme: str = "big_vision"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images_BHWC: jax.Array, *, train: bool = False):
        p = self.patch_size
        inits = initializers(self.init_scheme)
        conv = {}
        if self.init_scheme == "timm":  # PyTorch's Conv2d default, as timm leaves it
            fan_in = p * p * images_BHWC.shape[-1]
            conv = dict(kernel_init=_torch_uniform(fan_in), bias_init=_torch_uniform(fan_in))
        x = nn.Conv(
            self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
            name="embedding", **conv,
        )(images_BHWC.astype(self.dtype))  # fmt: skip
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        if self.pool == "tok":
            cls = self.param("cls", inits["cls"], (1, 1, d))
            x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(x.dtype), x], axis=1)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, x.shape[1], d))
        x = x + pos.astype(x.dtype)

        blocks = []
        for i in range(self.depth):
            rate = self.drop_path * i / max(self.depth - 1, 1)
            block = Block(
                self.num_heads, self.mlp_dim, rate, self.dtype, self.init_scheme, name=f"block{i}"
            )
            x = block(x, train)
            blocks.append(x.mean(1).astype(jnp.float32))
        x = nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(x)
        pre_logits = (x[:, 0] if self.pool == "tok" else x.mean(1)).astype(jnp.float32)
        aux = {"pre_logits": pre_logits, "blocks": blocks}
        if self.num_classes <= 0:
            return pre_logits, aux
        if self.init_scheme == "timm":
            head_init = inits["dense"]
        elif self.head_zero_init:
            head_init = nn.initializers.zeros
        else:
            head_init = nn.initializers.lecun_normal()
        logits = nn.Dense(self.num_classes, kernel_init=head_init, name="head")(pre_logits)
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
    scheme = kwargs.pop("init", "big_vision")
    if scheme not in INITS:
        raise ConfigError(f"model.init={scheme!r}: must be one of {INITS}")
    kwargs["init_scheme"] = scheme
    return ViT(num_classes=num_classes, **arch, **kwargs)
