"""Amortized inference over the 1p-frac generator (Le, Baydin, Zinkov & Wood 2017).

A network trained on synthetic (latent, image) pairs is an amortized proposal q(y | x) for
the generator that drew them. For 1p-frac the latent is the perturbation: one of the L
classes (the LPCE classifier's softmax is q(class | x)), or the continuous multiplier
``eps`` in the LIEP box ``[1 - Delta, 1 + Delta]^{6N}`` around the base fractal.

The generative model (:class:`Generator`):

* prior: uniform over the L classes, or uniform over the box (the official per-class fill
  rejection is ignored in the continuous prior; it rejected no mini class);
* renderer: class l's image is its image in the fixed data set (the shared walk and class
  l's patches, :func:`fractaljax.sources.render_fixed`); ``eps``'s image is the base's maps
  times ``eps`` on the same walk, with one fixed patch pattern (that of class index L);
* observation: ``x = render(y) + noise * z``, ``z ~ N(0, I)`` per pixel and channel.

The likelihood is that of the *summary* ``s(x)``: the channel mean average-pooled over
``pool x pool`` cells. Pooling makes the comparison tolerant of where exactly points land
(the rendered point clouds are speckle at pixel level), and because ``s`` is linear and
averages ``pool^2 C`` independent noise values, ``s(x) = s(render(y)) + e`` with ``e`` iid
``N(0, noise^2 / (pool^2 C))``: the Gaussian likelihood below is exact for the model, so
the posterior ``p(y | s(x))`` is a true posterior (of the summary) and simulation-based
calibration must pass. ``noise`` is the bandwidth; it says how much two images may differ
and still be explained by the same latent.

Everything is pure JAX over explicit keys; :func:`discrete_is`, :func:`continuous_is`,
:func:`sbc_ranks` and :func:`mmd_test` vmap over observations.

Why one file of this size: the generative model, importance sampling, calibration and
identifiability all work on Generator and Weighted; it splits when a second generator
(another source's latents) arrives.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from fractaljax import mdn, sources
from fractaljax import render as render_lib
from fractaljax.errors import ConfigError
from fractaljax.ifs import IFS

# The prior's share of the network proposal (defensive importance sampling, Hesterberg
# 1995): weights stay bounded by 1 / DEFENSIVE times the prior's, whatever the network says.
DEFENSIVE = 0.1


def summarize(images: jax.Array, pool: int) -> jax.Array:
    """``float32[..., H, W, C]`` -> ``float32[..., (H / pool) * (W / pool)]``: the channel
    mean, average-pooled over ``pool x pool`` cells, flattened."""
    *lead, h, w, _ = images.shape
    if h % pool or w % pool:
        raise ConfigError(f"pool={pool}: must divide the image side {h}")
    g = images.mean(-1).reshape(*lead, h // pool, pool, w // pool, pool)
    return g.mean((-3, -1)).reshape(*lead, -1)


def summary_var(noise: float, pool: int, channels: int) -> float:
    """The variance of each summary entry's noise, ``noise^2 / (pool^2 C)``."""
    return noise**2 / (pool**2 * channels)


def log_likelihood(s_x: jax.Array, s_r: jax.Array, var: float | jax.Array) -> jax.Array:
    """``log N(s_x; s_r, var I)``: ``s_x: float32[D]``, ``s_r: float32[K, D]`` -> ``[K]``."""
    d = s_x.shape[-1]
    sq = jnp.sum((s_r - s_x) ** 2, -1)
    return -0.5 * sq / var - 0.5 * d * jnp.log(2 * jnp.pi * var)


# --- weighted samples -------------------------------------------------------------------


def log_evidence(log_w: jax.Array) -> jax.Array:
    """``log p(x)`` estimate: ``logsumexp(log_w) - log K`` over the last axis."""
    return logsumexp(log_w, -1) - jnp.log(log_w.shape[-1])


def ess(log_w: jax.Array) -> jax.Array:
    """Normalised effective sample size ``(sum w)^2 / (K sum w^2)`` in ``[1/K, 1]``."""
    k = log_w.shape[-1]
    return jnp.exp(2 * logsumexp(log_w, -1) - logsumexp(2 * log_w, -1)) / k


def pareto_k(log_w: np.ndarray) -> float:
    """Pareto-smoothed IS diagnostic k-hat (Vehtari et al. 2024) of one set of log weights.

    The generalised Pareto shape fitted (Zhang & Stephens 2009, with the weak prior of the
    PSIS paper) to the largest ``min(K / 5, 3 sqrt(K))`` weights. k < 0.5: the weights have
    a finite variance; 0.5-0.7: usable with care; > 0.7: the estimate is not reliable.

    Two values are not fitted tails. ``inf``: *degenerate*, a handful of weights hold all
    the mass (the others tie at the cut-off or lie 12 or more orders of magnitude under
    them), i.e. the ESS is a few samples, as bad as it gets. ``nan``: fewer than 5 finite
    weights, nothing to fit.
    :func:`pareto_summary` counts both apart from the fitted values.
    """
    lw = np.sort(np.asarray(log_w, np.float64))
    lw = lw[np.isfinite(lw)]
    n = lw.size
    m = int(min(0.2 * n, 3 * math.sqrt(n)))
    if m < 5:
        return math.nan
    top = lw[-1]
    x = np.exp(lw[-m:] - top) - np.exp(lw[-m - 1] - top)  # exceedances of the cut-off
    if not np.any(x > 0):
        return -math.inf  # all equal: no tail at all
    if x[int(m / 4 + 0.5) - 1] <= 1e-12 * x[-1]:
        # The tail's lower quarter is 12+ orders of magnitude under its top (or ties at the
        # cut-off): a handful of weights hold everything, as bad as it gets. The fit would
        # only overflow here.
        return math.inf
    return _gpd_shape(x)


def pareto_summary(ks) -> dict:
    """Many :func:`pareto_k` values summarised without letting NaN poison the statistics:
    ``median`` over the non-NaN values (degenerate ``inf`` counts as the largest),
    ``fitted_median`` over the finite ones, the counts ``n``, ``degenerate`` (inf),
    ``no_fit`` (NaN) and ``over_0_7`` (unreliable, degenerate included)."""
    ks = np.asarray(ks, np.float64)
    known = ks[~np.isnan(ks)]
    finite = ks[np.isfinite(ks)]
    return dict(
        n=int(ks.size),
        median=float(np.median(known)) if known.size else math.nan,
        fitted_median=float(np.median(finite)) if finite.size else math.nan,
        degenerate=int(np.sum(np.isposinf(ks))),
        no_fit=int(np.sum(np.isnan(ks))),
        over_0_7=int(np.sum(known > 0.7)),
    )


def _gpd_shape(x: np.ndarray) -> float:
    """Zhang & Stephens' (2009) estimate of the generalised Pareto shape of sorted ``x``."""
    n = x.size
    m = 30 + int(math.sqrt(n))
    b = 1 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    b = b / (3 * x[int(n / 4 + 0.5) - 1]) + 1 / x[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.log1p(-b[:, None] * x).mean(1)
        log_lik = n * (np.log(-b / k) - k - 1)
    log_lik = np.where(np.isfinite(log_lik), log_lik, -np.inf)
    if not np.isfinite(log_lik).any():
        return math.inf  # no candidate fits: the tail is beyond the estimator's range
    w = np.exp(log_lik - log_lik.max())  # the candidates' posterior weights
    b_post = np.sum(b * w) / np.sum(w)
    k_post = np.log1p(-b_post * x).mean()
    return float((n * k_post + 10 * 0.5) / (n + 10))  # shrunk towards 0.5, as PSIS


class Weighted(NamedTuple):
    """Importance samples: ``samples`` (``int32[K]`` classes or ``float32[K, P]`` eps) and
    their ``log_weights: float32[K]`` (unnormalised)."""

    samples: jax.Array
    log_weights: jax.Array


def weighted_moments(w: Weighted) -> tuple[np.ndarray, np.ndarray]:
    """Self-normalised posterior mean and sd of continuous samples ``float32[K, P]``, each
    ``float64[P]`` (computed on the host in float64)."""
    p = np.asarray(jax.nn.softmax(w.log_weights), np.float64)[:, None]
    e = np.asarray(w.samples, np.float64)
    mean = (p * e).sum(0)
    return mean, np.sqrt((p * (e - mean) ** 2).sum(0))


def class_probs(w: Weighted, num_classes: int) -> jax.Array:
    """The self-normalised posterior over classes, ``float32[L]``."""
    p = jax.nn.softmax(w.log_weights)
    return jax.ops.segment_sum(p, w.samples, num_classes)


# --- the generative model -----------------------------------------------------------------


@flax.struct.dataclass
class DiscreteModel:
    """The class latent: uniform prior over ``L`` classes whose noiseless summaries are
    ``summaries: float32[L, D]``; summary noise of variance ``var``."""

    summaries: jax.Array
    var: jax.Array

    @property
    def num_classes(self) -> int:
        return self.summaries.shape[0]

    def log_joint(self, s_x: jax.Array, y: jax.Array) -> jax.Array:
        """``log p(y) + log p(s_x | y)`` for classes ``y: int32[K]``."""
        ll = log_likelihood(s_x, self.summaries[y], self.var)
        return ll - jnp.log(self.num_classes)

    def exact_log_posterior(self, s_x: jax.Array) -> jax.Array:
        """``log p(y | s_x)`` for every class, ``float32[L]`` (enumeration: L is small)."""
        return jax.nn.log_softmax(log_likelihood(s_x, self.summaries, self.var))


def defensive(logits: jax.Array, share: float = DEFENSIVE) -> jax.Array:
    """Log proposal ``(1 - share) softmax(logits) + share / L`` over the last axis."""
    n = logits.shape[-1]
    return jnp.logaddexp(
        jnp.log1p(-share) + jax.nn.log_softmax(logits), jnp.log(share) - jnp.log(n)
    )


def discrete_is(
    key: jax.Array, model: DiscreteModel, s_x: jax.Array, log_q: jax.Array, num_samples: int
) -> Weighted:
    """Importance sampling of the class posterior of one observation.

    Args:
      key: PRNG key.
      model: the generative model.
      s_x: the observation's summary ``float32[D]``.
      log_q: the proposal's log probabilities ``float32[L]`` (the network's, made
        defensive with :func:`defensive`; ``-log L`` everywhere for the prior).
      num_samples: K.
    """
    y = categorical_draws(key, log_q, num_samples)
    return Weighted(y, model.log_joint(s_x, y) - log_q[y])


class Posterior(NamedTuple):
    """The result of :func:`posterior` for one observation."""

    samples: jax.Array  # int32[K] classes
    log_weights: jax.Array  # float32[K]
    class_probs: jax.Array  # float32[L], self-normalised
    log_evidence: jax.Array  # scalar, log p(s(x)) estimate
    ess: jax.Array  # scalar, normalised ESS in [1/K, 1]


def posterior(
    model: DiscreteModel,
    s_x: jax.Array,
    key: jax.Array,
    num_samples: int,
    logits: jax.Array | None = None,
) -> Posterior:
    """The class posterior of one observation by importance sampling.

    Args:
      model: the generative model (:func:`discrete_model`).
      s_x: the observation's summary ``float32[D]`` (:func:`summarize`).
      key: PRNG key.
      num_samples: K.
      logits: the network's logits ``float32[L]`` for the observation: the proposal is
        their :func:`defensive` softmax. None: the prior is the proposal.
    """
    num_l = model.num_classes
    log_q = jnp.full((num_l,), -jnp.log(num_l)) if logits is None else defensive(logits)
    w = discrete_is(key, model, s_x, log_q, num_samples)
    lw = w.log_weights
    return Posterior(w.samples, lw, class_probs(w, num_l), log_evidence(lw), ess(lw))


@flax.struct.dataclass
class Generator:
    """The 1p-frac generator of a pre-training run (see the module doc).

    Attributes:
      spec: the rendering options.
      systems: the L class systems, ``maps: float32[L, N, 6]``.
      base: the unperturbed system, ``maps: float32[N, 6]``.
      delta: the LIEP half-width.
      walk_key, patch_key: the fixed data set's keys (:func:`sources.onepfrac_keys`).
      noise, pool: the observation noise (bandwidth) and the summary's pooling.
    """

    spec: render_lib.RenderSpec = flax.struct.field(pytree_node=False)
    systems: IFS
    base: IFS
    delta: float = flax.struct.field(pytree_node=False)
    walk_key: jax.Array
    patch_key: jax.Array
    noise: float = flax.struct.field(pytree_node=False)
    pool: int = flax.struct.field(pytree_node=False)

    @property
    def num_classes(self) -> int:
        return self.systems.maps.shape[0]

    @property
    def var(self) -> float:
        return summary_var(self.noise, self.pool, self.spec.channels)

    def render_classes(self, labels: jax.Array) -> jax.Array:
        """The fixed images of classes ``labels: int32[B]``, ``float32[B, H, W, C]``."""
        return _render_classes(self.spec, self.systems, self.walk_key, self.patch_key, labels)

    def class_eps(self) -> jax.Array:
        """Each class's multipliers of the base parameters, ``float32[L, 6N]``."""
        safe = jnp.where(self.base.maps == 0, 1.0, self.base.maps)
        return (self.systems.maps / safe).reshape(self.num_classes, -1)

    def render_eps(self, eps: jax.Array) -> jax.Array:
        """Images of multipliers ``eps: float32[K, 6N]`` (base probabilities, the fixed
        walk, the patches of class index L), ``float32[K, H, W, C]``."""
        # The patches of class index L: a key no class draws with.
        image_key = jax.random.fold_in(self.patch_key, self.num_classes)
        return _render_eps(self.spec, self.base, self.walk_key, image_key, eps)

    def log_prior_eps(self, eps: jax.Array) -> jax.Array:
        """Uniform on the box ``[1 - delta, 1 + delta]^P``: ``float32[K]``, -inf outside."""
        return mdn.log_prior(eps, self.delta)

    def observe(self, key: jax.Array, images: jax.Array) -> jax.Array:
        """``images + noise * z``: draws of the observation model."""
        return images + self.noise * jax.random.normal(key, images.shape)


def generator(source: sources.Source, noise: float, pool: int) -> Generator:
    """The :class:`Generator` of a 1p-frac ``source`` (its base, classes, seed and Delta)."""
    if not isinstance(source, sources.OnePFracSource):
        raise ConfigError(
            f"source {source.name!r}: inference needs a 1p-frac source (its classes are "
            "perturbations of one fractal); pre-train with configs/onepfrac.py"
        )
    if not noise > 0:
        raise ConfigError(f"noise={noise}: must be a positive number (the likelihood's width)")
    if pool < 1 or source.spec.image_size % pool:
        raise ConfigError(f"pool={pool}: must be a positive divisor of {source.spec.image_size}")
    keys = sources.onepfrac_keys(source.seed)
    return Generator(
        source.spec, source.systems, source.base, source.delta, keys["walk"], keys["patches"],
        float(noise), int(pool),
    )  # fmt: skip


def discrete_model(gen: Generator, batch_size: int = 256) -> DiscreteModel:
    """Render every class once and keep its summary (``L x D`` floats, not L images)."""
    from fractaljax.probe import map_batches

    fn = jax.jit(lambda y: summarize(gen.render_classes(y), gen.pool))
    s = map_batches(fn, jnp.arange(gen.num_classes), batch_size)
    return DiscreteModel(jnp.asarray(s), jnp.float32(gen.var))


@functools.partial(jax.jit, static_argnums=2)
def simulate(key: jax.Array, gen: Generator, num: int) -> tuple[jax.Array, jax.Array]:
    """``num`` draws of the discrete model: ``(labels int32[num], images float32[num,H,W,C])``."""
    k_y, k_x = jax.random.split(key)
    y = jax.random.randint(k_y, (num,), 0, gen.num_classes)
    return y, gen.observe(k_x, gen.render_classes(y))


# --- the continuous latent ------------------------------------------------------------------


class Proposal(NamedTuple):
    """A proposal over the multipliers: ``sample(key, K) -> float32[K, P]`` and
    ``log_prob(eps float32[K, P]) -> float32[K]`` (normalised)."""

    sample: Callable[[jax.Array, int], jax.Array]
    log_prob: Callable[[jax.Array], jax.Array]


def prior_proposal(delta: float, dims: int) -> Proposal:
    """The uniform prior on the box ``[1 - delta, 1 + delta]^dims``."""

    def sample(key, k):
        return jax.random.uniform(key, (k, dims), minval=1 - delta, maxval=1 + delta)

    return Proposal(sample, lambda eps: mdn.log_prior(eps, delta))


def with_prior(proposal: Proposal, delta: float, dims: int, share: float) -> Proposal:
    """``(1 - share) proposal + share prior`` (defensive, Hesterberg 1995): weights
    ``prior / q`` stay below ``1 / share`` wherever ``proposal`` puts no mass."""
    prior = prior_proposal(delta, dims)

    def sample(key, k):
        k_a, k_b, k_c = jax.random.split(key, 3)
        pick = jax.random.uniform(k_c, (k,)) < share
        return jnp.where(pick[:, None], prior.sample(k_b, k), proposal.sample(k_a, k))

    def log_prob(eps):
        return jnp.logaddexp(
            jnp.log1p(-share) + proposal.log_prob(eps), jnp.log(share) + prior.log_prob(eps)
        )

    return Proposal(sample, log_prob)


def mixture_log_q(eps: jax.Array, centres: jax.Array, log_pi: jax.Array, width: float):
    """``log sum_l pi_l N(eps; centre_l, width^2 I)``: ``eps [K, P]``, ``centres [L, P]``."""
    p = eps.shape[-1]
    sq = jnp.sum((eps[:, None, :] - centres[None]) ** 2, -1)  # [K, L]
    log_n = -0.5 * sq / width**2 - 0.5 * p * jnp.log(2 * jnp.pi * width**2)
    return logsumexp(log_pi[None] + log_n, -1)


def class_mixture_proposal(
    gen: Generator, log_pi: jax.Array, width: float, share: float = DEFENSIVE
) -> Proposal:
    """The LPCE classifier as a proposal over eps: isotropic Gaussians of std ``width``
    (e.g. ``delta / 10``, the report's) at the classes' eps, weighted by the network's
    class log probabilities ``log_pi: float32[L]``, with ``share`` of the prior."""
    centres = gen.class_eps()

    def sample(key, k):
        k_c, k_e = jax.random.split(key)
        comp = categorical_draws(k_c, log_pi, k)
        return centres[comp] + width * jax.random.normal(k_e, (k, centres.shape[1]))

    mix = Proposal(sample, lambda eps: mixture_log_q(eps, centres, log_pi, width))
    return with_prior(mix, gen.delta, centres.shape[1], share)


def mdn_proposal(
    out: jax.Array, delta: float, dims: int, share: float, std_scale: float = 1.0
) -> Proposal:
    """A continuous head's output for one image, ``float32[K (1 + 2 dims)]`` (configs/
    amortized.py), as a proposal: its mixture density with ``share`` of the prior, its
    components' scales times ``std_scale`` (< 1: an over-confident control)."""
    mix = mdn.split(out, dims)
    mix = mix._replace(log_std=mix.log_std + jnp.log(std_scale))
    return Proposal(
        lambda key, k: mdn.sample(key, mix, k, delta, share),
        lambda eps: mdn.log_prob(mix, eps, delta, share),
    )


# Scales of a head's components tried by :func:`fit_std_scale` (1: as trained).
STD_SCALES = tuple(np.round(np.arange(0.5, 1.51, 0.025), 3).tolist())


def fit_std_scale(
    out: jax.Array,
    u: jax.Array,
    delta: float,
    share: float,
    key: jax.Array,
    draws: int = 99,
    scales=STD_SCALES,
) -> dict:
    """Post-hoc calibration of a continuous head, as temperature scaling is for a
    classifier: one factor on its components' scales (in z), fitted on held-out simulations
    (head outputs ``out [S, K (1 + 2P)]`` and the multipliers ``u [S, P]`` that drew them).
    Fit it on simulations other than those that test it (SBC, coverage).

    Two criteria on the same simulations, each minimised over ``scales``: the mean negative
    log density ``-log q(u | x)`` (a proper scoring rule) and the non-uniformity of the SBC
    ranks of u among ``draws`` posterior draws (the chi-square of their 10-bin histogram,
    mean over dimensions: what SBC and coverage test). They can disagree: a mixture whose
    core is too wide and whose tails are too light pays in log density for every narrowing
    (the truths in its tails), while its ranks pile up in the middle. ``scale`` is the
    ranks' choice (the target is a calibrated posterior); ``scale_nll`` the density's.

    Returns ``{'scale', 'chi2', 'chi2_at_1', 'scale_nll', 'nll', 'nll_at_1', 'scales'}``."""
    p, n = u.shape[-1], u.shape[0]
    keys = jax.random.split(key, n)  # the same draws for every scale: a smooth curve

    @jax.jit
    def criteria(scale):
        mix = mdn.split(out, p)
        mix = mix._replace(log_std=mix.log_std + jnp.log(scale))
        nll = -mdn.log_prob(mix, u, delta, share).mean()
        one = lambda k, m: mdn.sample(k, m, draws, delta, share)
        samples = jax.vmap(one)(keys, mix)  # [S, draws, P]
        ranks = jnp.sum(samples < u[:, None, :], axis=1)  # [S, P] in {0..draws}
        counts = jax.nn.one_hot(ranks * 10 // (draws + 1), 10).sum(0)  # [P, 10]
        chi2 = (((counts - n / 10) ** 2) / (n / 10)).sum(-1).mean()
        return nll, chi2

    nll, chi2 = (np.array(v) for v in zip(*[map(float, criteria(jnp.float32(c))) for c in scales]))
    at_1 = [float(v) for v in criteria(jnp.float32(1.0))]
    return dict(
        scale=float(scales[int(np.nanargmin(chi2))]), chi2=float(np.nanmin(chi2)),
        chi2_at_1=at_1[1], scale_nll=float(scales[int(np.nanargmin(nll))]),
        nll=float(np.nanmin(nll)), nll_at_1=at_1[0], scales=list(scales),
    )  # fmt: skip


# Compiled (and inlined where the caller is compiled): op by op, the renderer's dispatches
# cost seconds a call. They take the arrays they read, not the Generator, whose static
# noise and pool would compile them anew for every bandwidth.
@functools.partial(jax.jit, static_argnums=0)
def _render_classes(
    spec: render_lib.RenderSpec,
    systems: IFS,
    walk_key: jax.Array,
    patch_key: jax.Array,
    labels: jax.Array,
) -> jax.Array:
    chosen = jax.tree.map(lambda a: a[labels], systems)
    return sources.render_fixed(spec, chosen, labels, walk_key, patch_key)[0]


@functools.partial(jax.jit, static_argnums=0)
def _render_eps(
    spec: render_lib.RenderSpec,
    base: IFS,
    walk_key: jax.Array,
    image_key: jax.Array,
    eps: jax.Array,
) -> jax.Array:
    k = eps.shape[0]
    maps = base.maps[None] * eps.reshape(k, *base.maps.shape)
    probs = jnp.broadcast_to(base.probs, maps.shape[:2])
    keys = jnp.broadcast_to(image_key, (k,) + image_key.shape)
    return render_lib.render_with_fill(spec, IFS(maps, probs), walk_key, keys)[0]


@functools.partial(jax.jit, static_argnums=2)
def simulate_latent(key: jax.Array, gen: Generator, num: int) -> tuple[jax.Array, jax.Array]:
    """``num`` draws of the continuous model: ``(u float32[num, P]`` from the prior,
    their observations ``float32[num, H, W, C])`` (render plus the generator's noise)."""
    k_u, k_x = jax.random.split(key)
    u = jax.random.uniform(
        k_u, (num, gen.base.maps.size), minval=1 - gen.delta, maxval=1 + gen.delta
    )
    return u, gen.observe(k_x, gen.render_eps(u))


def fit_head_scale(key: jax.Array, gen: Generator, net: Callable, share: float, num: int):
    """:func:`fit_std_scale` of a continuous head (``net``: images -> (head outputs, ...),
    :func:`network_fn`) on ``num`` fresh simulations of ``gen``."""
    k_sim, k_fit = jax.random.split(key)
    u, x = simulate_latent(k_sim, gen, num)
    return fit_std_scale(net(x)[0], u, gen.delta, share, k_fit)


def importance_sample(
    key: jax.Array,
    log_joint: Callable[[jax.Array], jax.Array],
    proposal: Proposal,
    num_samples: int,
) -> Weighted:
    """``num_samples`` draws of ``proposal`` weighted by ``log_joint(samples) -
    log q(samples)`` (``log_joint: float32[K, P] -> float32[K]``, the prior times the
    likelihood of one observation); non-finite weights become -inf (zero weight)."""
    eps = proposal.sample(key, num_samples)
    log_w = log_joint(eps) - proposal.log_prob(eps)
    return Weighted(eps, jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf))


def continuous_is(
    key: jax.Array, gen: Generator, s_x: jax.Array, proposal: Proposal, num_samples: int
) -> Weighted:
    """Importance sampling of ``p(eps | s_x)`` in the LIEP box: ``num_samples`` draws of
    ``proposal`` (:func:`prior_proposal`, :func:`class_mixture_proposal`,
    :func:`mdn_proposal`), weighted by prior x likelihood (the renderer) / proposal."""

    def log_joint(eps):
        s_r = summarize(gen.render_eps(eps), gen.pool)
        return gen.log_prior_eps(eps) + log_likelihood(s_x, s_r, gen.var)

    return importance_sample(key, log_joint, proposal, num_samples)


def categorical_draws(key: jax.Array, log_p: jax.Array, num: int) -> jax.Array:
    """``num`` independent draws of an index of ``log_p [L]`` (unnormalised log
    probabilities; ``-inf`` is never drawn): ``int32[num]``.

    Inverse-CDF sampling, O(L + num log L); ``jax.random.categorical(..., shape=(num,))``
    draws num x L Gumbels (15 s for 300 posteriors of 4,000 weights and 99 draws on a
    2-core CPU, against 0.1 s here). The same law, other draws for the same key. Every
    entry -inf (no mass anywhere, e.g. every IS draw outside the box) gives the last index.
    """
    if log_p.ndim != 1:
        raise ValueError(f"log_p: one vector of log probabilities, got shape {log_p.shape}")
    p = jnp.exp(log_p - jnp.max(log_p))
    cdf = jnp.cumsum(p)
    u = jax.random.uniform(key, (num,)) * cdf[-1]
    idx = jnp.searchsorted(cdf, u, side="right")
    # Rounding can put u at cdf[-1]: the last index with mass is the draw then.
    last = log_p.shape[0] - 1 - jnp.argmax(p[::-1] > 0)
    return jnp.minimum(idx, last).astype(jnp.int32)


def resample(key: jax.Array, w: Weighted, num: int) -> jax.Array:
    """``num`` draws of the self-normalised IS posterior (multinomial resampling)."""
    return w.samples[categorical_draws(key, w.log_weights, num)]


# --- calibration ------------------------------------------------------------------------------


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error (Guo et al. 2017) of the top-class confidence.

    Returns ``ece``, ``accuracy``, ``mean_confidence`` and per bin ``confidence``,
    ``accuracy``, ``count`` (equal-width bins on [0, 1]; empty bins have NaN means).
    """
    probs = np.asarray(probs, np.float64)
    conf, pred = probs.max(-1), probs.argmax(-1)
    right = (pred == np.asarray(labels)).astype(np.float64)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore"):
        bin_conf = np.bincount(idx, conf, bins) / count
        bin_acc = np.bincount(idx, right, bins) / count
    gaps = np.where(count > 0, np.abs(bin_acc - bin_conf), 0.0)
    return dict(
        ece=float(np.sum(count * gaps) / len(conf)),
        accuracy=float(right.mean()),
        mean_confidence=float(conf.mean()),
        confidence=bin_conf.tolist(),
        bin_accuracy=bin_acc.tolist(),
        count=count.tolist(),
    )


def sbc_ranks(
    key: jax.Array,
    model: DiscreteModel,
    y_true: jax.Array,
    s_x: jax.Array,
    log_q: jax.Array,
    num_samples: int,
    num_draws: int,
    correct: bool = True,
    return_ties: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Simulation-based calibration (Talts et al. 2018) of the class posterior, vmapped.

    For each simulated ``(y_true[i], s_x[i])``, ``num_draws`` posterior draws are taken (by
    resampling ``num_samples`` importance samples from proposal ``log_q[i]``; or, with
    ``correct=False``, straight from the proposal, i.e. trusting the network's
    probabilities); the rank of the true class among them, with ties broken uniformly at
    random (the latent is discrete), is uniform on ``{0..num_draws}`` iff the posterior
    is calibrated. Returns ``int32[S]``; with ``return_ties``, also the share of
    simulations in which *every* draw equals the truth.

    That share says whether the test can fail at all: where the posterior is a point mass
    on the true class, every rank is drawn uniformly among tied draws, so the histogram is
    uniform whatever the proposal (a share near 1 makes the p-value uninformative). Run SBC
    on a model whose posteriors are spread (a Bayes error well above 0).
    """

    def one(k, y, s, lq):
        k_is, k_r, k_t = jax.random.split(k, 3)
        if correct:
            w = discrete_is(k_is, model, s, lq, num_samples)
            draws = resample(k_r, w, num_draws)
        else:
            draws = categorical_draws(k_r, lq, num_draws)
        less, ties = jnp.sum(draws < y), jnp.sum(draws == y)
        return less + jax.random.randint(k_t, (), 0, ties + 1), ties == num_draws

    ks = jax.random.split(key, y_true.shape[0])
    ranks, all_tied = jax.vmap(one)(ks, y_true, s_x, log_q)
    return (ranks, jnp.mean(all_tied)) if return_ties else ranks


def rank_uniformity(ranks: np.ndarray, num_draws: int, bins: int = 10) -> dict:
    """Chi-square test of SBC ranks on ``{0..num_draws}`` against uniform (``bins`` equal
    groups of ranks; ``num_draws + 1`` must be divisible by ``bins``), and the Binomial
    99% band of each bin's count (the band of Talts et al.'s rank histogram)."""
    from scipy import stats

    if (num_draws + 1) % bins:
        raise ValueError(f"num_draws + 1 = {num_draws + 1} is not divisible by bins={bins}")
    ranks = np.asarray(ranks)
    counts = np.bincount(ranks * bins // (num_draws + 1), minlength=bins)
    n = len(ranks)
    chi2 = stats.chisquare(counts)
    lo, hi = stats.binom.interval(0.99, n, 1 / bins)
    return dict(
        counts=counts.tolist(), p_value=float(chi2.pvalue), band=(float(lo), float(hi)), n=n
    )


def continuous_ranks(truth: jax.Array, draws: jax.Array) -> jax.Array:
    """SBC ranks of a continuous latent, per dimension: ``truth [S, P]``, posterior draws
    ``[S, M, P]`` -> ``int32[S, P]`` in ``{0..M}`` (the number of draws below the truth;
    ties have probability zero). Uniform for every dimension iff calibrated."""
    return jnp.sum(draws < truth[:, None, :], axis=1).astype(jnp.int32)


def coverage(
    truth: np.ndarray, draws: np.ndarray, levels=(0.5, 0.8, 0.9, 0.95), seed: int = 0
) -> dict:
    """Expected coverage of central posterior intervals, per dimension: for each nominal
    level, the share of simulations whose true value lies in the central interval of its
    posterior draws (``truth [S, P]``, ``draws [S, M, P]``). Calibrated: empirical =
    nominal; over-confident: below it. Returns ``levels`` and ``empirical [len(levels), P]``
    with the Binomial 99% band of a calibrated posterior's coverage.

    The interval is read from the truth's randomised rank among the M draws, its posterior
    quantile ``(rank + U) / (M + 1)`` with ``U ~ U(0, 1)`` (exactly uniform when the
    posterior is calibrated, for any M), not from interpolated sample quantiles, which
    cover less than nominal with finitely many draws (with M = 99, the 90% interval between
    the 5% and 95% sample quantiles covers 88%)."""
    from scipy import stats

    truth, draws = np.asarray(truth), np.asarray(draws)
    s, m = draws.shape[:2]
    jitter = np.random.default_rng(seed).uniform(size=truth.shape)
    q = (np.sum(draws < truth[:, None, :], axis=1) + jitter) / (m + 1)  # [S, P]
    emp, bands = [], []
    for lvl in levels:
        emp.append((np.abs(q - 0.5) <= lvl / 2).mean(0))
        b = stats.binom.interval(0.99, s, lvl)
        bands.append((b[0] / s, b[1] / s))
    return dict(levels=list(levels), empirical=np.asarray(emp).tolist(), band=bands, n=s)


# --- identifiability --------------------------------------------------------------------------


def likelihood_profile(
    summary_fn: Callable[[jax.Array], jax.Array],
    u0: jax.Array,
    steps: np.ndarray,
    var: float,
    batch_size: int = 256,
) -> np.ndarray:
    """The likelihood's profile around a latent, one coordinate at a time.

    For each coordinate ``i`` and step ``h``, the Kullback-Leibler divergence between the
    observation models at ``u0`` and at ``u0 +- h e_i`` (the mean over both signs), i.e.
    the log-likelihood ratio an observation of ``u0`` gives against the moved latent on
    average: ``||s(u0 + h e_i) - s(u0)||^2 / (2 var)`` for the Gaussian summary likelihood.
    It needs no samples, so it resolves widths far below what importance sampling with K
    draws can (the summary is rendered ``2 P H + 1`` times).

    Args:
      summary_fn: noiseless summaries of latents, ``float32[B, P] -> float32[B, D]``.
      u0: the latent, ``float32[P]``.
      steps: the steps ``h``, ``float[H]``, positive and increasing.
      var: the summary noise's variance.
      batch_size: latents per call of ``summary_fn`` (which is compiled once).

    Returns:
      ``float64[H, P]``.
    """
    from fractaljax.probe import map_batches

    steps = np.asarray(steps, np.float32)
    h, p = len(steps), u0.shape[0]
    signs = np.array([1.0, -1.0], np.float32)[:, None, None, None]
    moves = (signs * steps[None, :, None, None] * np.eye(p, dtype=np.float32)).reshape(-1, p)
    moves = np.concatenate([np.zeros((1, p), np.float32), moves])  # the origin, +h, -h
    s = np.asarray(map_batches(summary_fn, jnp.asarray(u0)[None] + moves, batch_size), np.float64)
    kl = ((s[1:] - s[0]) ** 2).sum(-1).reshape(2, h, p) / (2.0 * var)
    return kl.mean(0)


def profile_width(kl: np.ndarray, steps: np.ndarray, level: float = 0.5) -> np.ndarray:
    """The step at which a profile (:func:`likelihood_profile`, ``[H, P]``) first reaches
    ``level`` nats, per coordinate, ``float64[P]``: interpolated linearly in log-log
    between the grid's steps (exact for a quadratic profile), the grid step itself where
    the step below had no measurable divergence (the rendered summary moves in quanta) or
    where the first step already reaches it (the width is then at most that step), and
    ``inf`` where no step reaches it. For a Gaussian likelihood the divergence at ``h``
    is ``h^2 / (2 sd^2)``, so ``level=0.5`` gives the conditional posterior sd of each
    coordinate (the others held at the truth; a lower bound on the marginal sd where the
    coordinates are correlated, and ignoring the prior's box)."""
    kl, steps = np.asarray(kl, np.float64), np.asarray(steps, np.float64)
    out = np.full(kl.shape[1], np.inf)
    for i in range(kl.shape[1]):
        hit = np.nonzero(kl[:, i] >= level)[0]
        if not len(hit):
            continue
        j = hit[0]
        if j == 0 or kl[j - 1, i] <= 0:
            out[i] = steps[j]
            continue
        lo, hi = np.log(kl[j - 1, i]), np.log(kl[j, i])
        t = (np.log(level) - lo) / (hi - lo)
        out[i] = np.exp(np.log(steps[j - 1]) + t * (np.log(steps[j]) - np.log(steps[j - 1])))
    return out


def divergence_at(kl: np.ndarray, steps: np.ndarray, h: float) -> np.ndarray:
    """A profile's divergence at step ``h`` per coordinate (log-log interpolation between
    the grid's steps; 0 where the steps around ``h`` measured none), ``float64[P]``."""
    kl, steps = np.asarray(kl, np.float64), np.asarray(steps, np.float64)
    if not steps[0] <= h <= steps[-1]:
        raise ValueError(f"h={h} is outside the profile's steps [{steps[0]}, {steps[-1]}]")
    j = min(int(np.searchsorted(steps, h)), len(steps) - 1)
    if steps[j] == h or j == 0:
        return kl[j].copy()
    t = (np.log(h) - np.log(steps[j - 1])) / (np.log(steps[j]) - np.log(steps[j - 1]))
    lo, hi = kl[j - 1], kl[j]
    pos = (lo > 0) & (hi > 0)
    log_mid = np.log(np.where(pos, lo, 1.0)) + t * (
        np.log(np.where(pos, hi, 1.0)) - np.log(np.where(pos, lo, 1.0))
    )
    return np.where(pos, np.exp(log_mid), lo + t * (hi - lo))


def bayes_error(
    key: jax.Array, gen: Generator, model: DiscreteModel, num: int, batch: int = 500
) -> dict:
    """The Bayes error of telling the L classes apart from one observation, by Monte Carlo
    over the model: ``1 - E[max_y p(y | x)]`` (exact posteriors by enumeration) and the
    error rate of the posterior's argmax, over ``num`` simulated observations."""

    @jax.jit
    def chunk(k):
        y, x = simulate(k, gen, batch)
        post = jax.vmap(model.exact_log_posterior)(summarize(x, gen.pool))
        return jnp.exp(post.max(-1)), (post.argmax(-1) != y).astype(jnp.float32)

    outs = [chunk(jax.random.fold_in(key, i)) for i in range(-(-num // batch))]
    top = np.concatenate([np.asarray(o[0]) for o in outs])[:num]
    err = np.concatenate([np.asarray(o[1]) for o in outs])[:num]
    return dict(bayes_error=float(1 - top.mean()), map_error=float(err.mean()), n=num)


# --- model mismatch ---------------------------------------------------------------------------


def mmd_test(
    key: jax.Array, x: jax.Array, y: jax.Array, num_permutations: int = 500
) -> dict[str, float]:
    """Kernel two-sample test (Gretton et al. 2012): unbiased MMD^2 between ``x: [n, d]``
    and ``y: [m, d]`` with a Gaussian kernel whose bandwidth is the median pairwise distance
    of the pooled sample, and its permutation p-value (permutations vmapped)."""
    z = jnp.concatenate([x, y]).astype(jnp.float32)
    n, total = x.shape[0], z.shape[0]
    sq = jnp.maximum(jnp.sum(z**2, 1)[:, None] + jnp.sum(z**2, 1)[None] - 2 * z @ z.T, 0.0)
    off = sq[~np.eye(total, dtype=bool)]
    bandwidth = jnp.sqrt(jnp.median(off))
    k = jnp.exp(-sq / (2 * bandwidth**2))

    def stat(perm):
        kp = k[perm][:, perm]
        first = jnp.arange(total) < n
        a, b = first[:, None] & first[None], ~first[:, None] & ~first[None]
        cross = first[:, None] & ~first[None]
        diag = jnp.eye(total, dtype=bool)
        m = total - n
        kxx = jnp.sum(jnp.where(a & ~diag, kp, 0)) / (n * (n - 1))
        kyy = jnp.sum(jnp.where(b & ~diag, kp, 0)) / (m * (m - 1))
        return kxx + kyy - 2 * jnp.sum(jnp.where(cross, kp, 0)) / (n * m)

    observed = stat(jnp.arange(total))
    perms = jax.vmap(lambda k_: jax.random.permutation(k_, total))(
        jax.random.split(key, num_permutations)
    )
    null = jax.lax.map(stat, perms, batch_size=32)
    p = (1 + jnp.sum(null >= observed)) / (1 + num_permutations)
    return dict(mmd2=float(observed), p_value=float(p), bandwidth=float(bandwidth))


def timed(fn: Callable, *args) -> tuple[Any, float]:
    """``(fn(*args), seconds)`` of a second call (the first compiles): for ESS per second."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


# --- the network as proposal ------------------------------------------------------------------


def network_fn(config, model, params) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """``images float32[B, H, W, C]`` (the canvas) -> ``(logits [B, L], pre_logits [B, D])``
    of a pre-trained network, with its input resize and normalisation; jitted, with the
    parameters an argument of the program (not constants compiled into it)."""
    from fractaljax import augment, models

    size = models.input_size(config)
    method = augment.interpolation(config.augment)

    @jax.jit
    def fn(p, images):
        logits, aux = model.apply({"params": p}, augment.model_input(images, size, method))
        return logits, aux["pre_logits"]

    return functools.partial(fn, params)
