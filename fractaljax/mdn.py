"""A mixture density over the LIEP box: the continuous proposal q(u | x) of 1p-frac.

1p-frac's generator draws the multipliers ``u`` of the base fractal's ``P = 6N`` parameters
from the box ``[1 - Delta, 1 + Delta]^P``. A network head that outputs a mixture density
over ``u`` is an amortized proposal for that continuous latent (Le, Baydin, Zinkov & Wood
2017), where the LPCE classifier is one over L fixed classes only.

The mixture lives in unconstrained coordinates ``z = atanh((u - 1) / Delta)``: ``K``
diagonal Gaussians in ``z``, mapped to ``u = 1 + Delta tanh(z)``, so its support is the box.
A share ``prior_share`` of the uniform prior is mixed in (defensive importance sampling,
Hesterberg 1995): an importance weight prior / q is then at most ``1 / prior_share``,
whatever the network says.

The head's raw output is a flat vector ``float32[..., K (1 + 2P)]`` (a linear layer on the
ViT's pooled features: the ViT's own head with :func:`num_outputs` outputs), split by
:func:`split` into mixture logits, means and log standard deviations.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

# tanh saturates in float32: |t| is kept below 1 - EDGE so that atanh stays finite at the
# box's edges (u at an edge has probability zero under the prior anyway).
EDGE = 1e-6
# Component scales in z, bounded so that one example cannot drive the NLL to -inf (a
# vanishing std) or spread a component far past |z| = 7 (float32 tanh rounds such draws onto
# the box's edges, where log_prob clips them back: sampler and density would disagree).
LOG_STD_MIN, LOG_STD_MAX = -7.0, 1.5


class Mixture(NamedTuple):
    """A mixture of diagonal Gaussians in ``z``: ``log_pi [..., K]`` (normalised),
    ``mean [..., K, P]``, ``log_std [..., K, P]``."""

    log_pi: jax.Array
    mean: jax.Array
    log_std: jax.Array


def num_outputs(components: int, dims: int) -> int:
    """The head's width for ``components`` Gaussians over ``dims`` multipliers."""
    return components * (1 + 2 * dims)


def split(out: jax.Array, dims: int) -> Mixture:
    """``float[..., K (1 + 2P)]`` -> :class:`Mixture` (computed in float32)."""
    out = out.astype(jnp.float32)
    k = out.shape[-1] // (1 + 2 * dims)
    if k * (1 + 2 * dims) != out.shape[-1]:
        raise ValueError(f"head width {out.shape[-1]} is not K (1 + 2 * {dims})")
    lead = out.shape[:-1]
    logits, rest = out[..., :k], out[..., k:].reshape(*lead, k, 2, dims)
    log_std = jnp.clip(rest[..., 1, :], LOG_STD_MIN, LOG_STD_MAX)
    return Mixture(jax.nn.log_softmax(logits, -1), rest[..., 0, :], log_std)


def to_box(z: jax.Array, delta: float) -> jax.Array:
    """``u = 1 + Delta tanh(z)``."""
    return 1.0 + delta * jnp.tanh(z)


def from_box(u: jax.Array, delta: float) -> jax.Array:
    """``z = atanh((u - 1) / Delta)``, clipped inside the box's edges."""
    return jnp.arctanh(jnp.clip((u - 1.0) / delta, -1.0 + EDGE, 1.0 - EDGE))


def log_prior(u: jax.Array, delta: float) -> jax.Array:
    """The uniform prior on the box, ``float32[...]`` for ``u [..., P]`` (-inf outside)."""
    inside = jnp.all(jnp.abs(u - 1.0) <= delta, -1)
    return jnp.where(inside, -u.shape[-1] * jnp.log(2.0 * delta), -jnp.inf)


def log_prob(mix: Mixture, u: jax.Array, delta: float, prior_share: float) -> jax.Array:
    """``log q(u)`` of ``(1 - s) * mixture + s * prior``; ``u [..., P]`` -> ``[...]``.

    ``mix`` broadcasts against ``u``'s leading axes (one mixture for many ``u``: give ``u``
    an extra axis in front, e.g. ``u [S, P]`` with ``mix`` of one observation)."""
    z = from_box(u, delta)
    t = jnp.tanh(z)
    # log |dz/du| = -log Delta - log(1 - t^2), per dimension.
    log_jac = -jnp.log(delta) - jnp.log1p(-(t**2))
    zs = (z[..., None, :] - mix.mean) * jnp.exp(-mix.log_std)  # [..., K, P]
    log_n = -0.5 * zs**2 - mix.log_std - 0.5 * jnp.log(2 * jnp.pi)
    log_mix = logsumexp(mix.log_pi + log_n.sum(-1), -1) + log_jac.sum(-1)
    if prior_share <= 0:
        return log_mix
    log_flat = jnp.log(prior_share) + log_prior(u, delta)
    return jnp.logaddexp(jnp.log1p(-prior_share) + log_mix, log_flat)


def sample(key: jax.Array, mix: Mixture, num: int, delta: float, prior_share: float) -> jax.Array:
    """``num`` draws of ``u`` from one observation's mixture (``mix`` unbatched), with a
    share ``prior_share`` from the prior: ``float32[num, P]``."""
    k_c, k_z, k_p, k_u = jax.random.split(key, 4)
    p = mix.mean.shape[-1]
    comp = jax.random.categorical(k_c, mix.log_pi, shape=(num,))
    z = mix.mean[comp] + jnp.exp(mix.log_std[comp]) * jax.random.normal(k_z, (num, p))
    u = to_box(z, delta)
    from_prior = jax.random.uniform(k_p, (num,)) < prior_share
    flat = jax.random.uniform(k_u, (num, p), minval=1.0 - delta, maxval=1.0 + delta)
    return jnp.where(from_prior[:, None], flat, u)


def nll(out: jax.Array, u: jax.Array, delta: float, prior_share: float) -> jax.Array:
    """The maximum-likelihood loss of a head's outputs ``out [B, K (1 + 2P)]`` for the
    multipliers ``u [B, P]`` that drew the images: ``-log q(u | x)``, ``float32[B]``.

    The value is a density in ``u``; the prior's is ``P log(2 Delta)`` (what a head that
    learnt nothing would reach), so the loss falls below it by what the image tells."""
    return -log_prob(split(out, u.shape[-1]), u, delta, prior_share)


def mean(key: jax.Array, mix: Mixture, delta: float, num: int = 64) -> jax.Array:
    """Monte Carlo posterior mean of ``u`` of one mixture (no prior share), ``[P]``."""
    return sample(key, mix, num, delta, 0.0).mean(0)
