"""The continuous proposal q(u | x) (fractaljax/mdn.py, configs/amortized.py): its density
against analytic ones, bounded weights, SBC and coverage on a 1-D problem whose posterior is
known exactly, and the head wired into the train step, checkpoints and the report."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import amortized
from fractaljax import downstream, mdn, run_dir, sources, train
from fractaljax import inference as inf
from fractaljax.errors import ConfigError

DELTA, SHARE = 0.1, 0.05


def mixture_1d(means, log_stds, logits) -> mdn.Mixture:
    """A 1-D mixture (P = 1) from plain lists."""
    return mdn.Mixture(
        jax.nn.log_softmax(jnp.asarray(logits, jnp.float32)),
        jnp.asarray(means, jnp.float32)[:, None],
        jnp.asarray(log_stds, jnp.float32)[:, None],
    )


def test_density_is_normalised_on_the_box_and_matches_the_change_of_variables():
    # Components well inside the box (the density's spikes at the edges, where tanh
    # saturates, are finer than a float32 grid resolves).
    mix = mixture_1d([-0.5, 0.6], [-0.5, -0.3], [0.2, -0.1])
    grid = jnp.linspace(1 - DELTA, 1 + DELTA, 200_001)[1:-1, None]
    dens = np.exp(np.asarray(mdn.log_prob(mix, grid, DELTA, SHARE), np.float64))
    step = 2 * DELTA / 200_000  # exact; a float32 difference of grid points is not
    assert np.sum(dens) * step == pytest.approx(1.0, abs=1e-3)
    # One point by hand: (1 - s) sum_k pi_k N(z; m_k, s_k) |dz/du| + s / (2 Delta).
    u = 1.03
    t = (u - 1) / DELTA
    z = math.atanh(t)
    pi = np.exp(np.asarray(mix.log_pi))
    q_z = sum(
        p * stats.norm.pdf(z, m, math.exp(ls))
        for p, m, ls in zip(pi, [-0.5, 0.6], [-0.5, -0.3], strict=True)
    )
    want = (1 - SHARE) * q_z / (DELTA * (1 - t**2)) + SHARE / (2 * DELTA)
    got = float(jnp.exp(mdn.log_prob(mix, jnp.array([[u]]), DELTA, SHARE))[0])
    assert got == pytest.approx(want, rel=1e-4)


def test_samples_follow_the_density_and_weights_stay_bounded():
    mix = mixture_1d([-0.5, 1.2], [-0.3, 0.4], [0.2, -0.1])
    draws = np.asarray(mdn.sample(jax.random.key(0), mix, 20_000, DELTA, SHARE))[:, 0]
    assert np.all(np.abs(draws - 1) <= DELTA)
    grid = np.linspace(1 - DELTA, 1 + DELTA, 20_001)[1:-1]
    dens = np.exp(np.asarray(mdn.log_prob(mix, jnp.asarray(grid)[:, None], DELTA, SHARE)))
    cdf = np.cumsum(dens) / dens.sum()
    ks = stats.kstest(draws, lambda x: np.interp(x, grid, cdf))
    assert ks.pvalue > 0.01, ks
    # A wrong density is rejected by the same test (the test can fail).
    other = np.asarray(mdn.sample(jax.random.key(0), mix, 20_000, DELTA, 0.5))[:, 0]
    assert stats.kstest(other, lambda x: np.interp(x, grid, cdf)).pvalue < 1e-6
    # prior / q <= 1 / share everywhere in the box, even where the mixture puts nothing.
    sharp = mixture_1d([3.0], [-6.0], [0.0])
    lq = mdn.log_prob(sharp, jnp.asarray(grid)[:, None], DELTA, SHARE)
    ratio = np.exp(np.asarray(mdn.log_prior(jnp.asarray(grid)[:, None], DELTA) - lq))
    assert ratio.max() <= 1 / SHARE * (1 + 1e-4)


# --- a 1-D problem with a known posterior ------------------------------------------------------
# u ~ U(1 - Delta, 1 + Delta), x = u + N(0, sigma^2): the posterior is the normal N(x, sigma^2)
# truncated to the box, whose quantiles are exact (scipy.stats.truncnorm).

SIGMA = 0.04


def toy_posterior(x):
    a, b = (1 - DELTA - x) / SIGMA, (1 + DELTA - x) / SIGMA
    return stats.truncnorm(a, b, loc=x, scale=SIGMA)


def toy_draws(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    u = rng.uniform(1 - DELTA, 1 + DELTA, n)
    return u, u + SIGMA * rng.standard_normal(n)


def toy_log_joint(x):
    def f(u):
        ll = -0.5 * ((u[:, 0] - x) / SIGMA) ** 2
        return mdn.log_prior(u, DELTA) + ll

    return f


def fitted_heads(x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """One-component 'heads' for observations ``x [n]``, as ``(mean [n], log_std [n])`` in
    z: each posterior's moments moved to z, its width times ``scale`` (1: about right; 0.3:
    over-confident)."""
    post = toy_posterior(x)
    m = np.asarray(mdn.from_box(jnp.asarray(post.mean(), jnp.float32), DELTA))
    t = np.minimum(np.abs((post.mean() - 1) / DELTA), 0.99)
    sd_z = post.std() / (DELTA * (1 - t**2))  # the delta method through atanh
    return m, np.log(scale * sd_z).astype(np.float32)


def test_exact_posterior_passes_sbc_and_coverage_and_an_over_confident_one_fails():
    u, x = toy_draws(2000)
    m = 99
    exact = np.stack([toy_posterior(xi).rvs(m, random_state=i) for i, xi in enumerate(x)])
    truth = jnp.asarray(u[:, None], jnp.float32)
    ok = np.asarray(inf.continuous_ranks(truth, jnp.asarray(exact[..., None])))
    assert inf.rank_uniformity(ok[:, 0], m)["p_value"] > 0.01
    cov = inf.coverage(u[:, None], exact[..., None])
    n = len(u)
    for lvl, emp in zip(cov["levels"], cov["empirical"], strict=True):
        # Four binomial sds (four levels are tested: a 99% band each would fail 4% of seeds).
        assert abs(emp[0] - lvl) < 4 * math.sqrt(lvl * (1 - lvl) / n), (lvl, emp)
    # The same posterior with half its width: the truth falls outside too often.
    narrow = x[:, None] + 0.5 * (exact - x[:, None])
    bad = np.asarray(inf.continuous_ranks(truth, jnp.asarray(narrow[..., None])))
    assert inf.rank_uniformity(bad[:, 0], m)["p_value"] < 1e-6
    cov = inf.coverage(u[:, None], narrow[..., None])
    for lvl, emp in zip(cov["levels"], cov["empirical"], strict=True):
        assert emp[0] < lvl - 4 * math.sqrt(lvl * (1 - lvl) / n), (lvl, emp)


def test_a_head_too_wide_is_calibrated_by_its_scale_fitted_on_held_out_simulations():
    """inference.fit_std_scale: heads that are each the exact posterior of their truth (the
    truth drawn from them), widened 1.4 times (the trained head's failure: SBC ranks piled
    in the middle), get a factor near 1 / 1.4 from the SBC ranks (and the negative log
    density) of validation simulations, and then pass SBC and coverage on other
    simulations; unfitted, they fail."""

    def simulations(n, seed):
        rng = np.random.default_rng(seed)
        mean, sd = rng.normal(0, 0.5, n), rng.uniform(0.1, 0.5, n)
        u = mdn.to_box(jnp.asarray(mean + sd * rng.standard_normal(n))[:, None], DELTA)
        wide = np.stack([np.zeros(n), mean, np.log(1.4 * sd)], -1)  # K = 1, P = 1
        return jnp.asarray(wide, jnp.float32), jnp.asarray(u, jnp.float32)

    fit = inf.fit_std_scale(*simulations(2000, seed=5), DELTA, 0.0, jax.random.key(1))
    # Here the head's shape is right, so both criteria find the factor.
    assert abs(fit["scale"] - 1 / 1.4) < 0.04 and fit["chi2"] < fit["chi2_at_1"], fit
    assert abs(fit["scale_nll"] - 1 / 1.4) < 0.03 and fit["nll"] < fit["nll_at_1"], fit
    out, truth = simulations(2000, seed=6)
    m, keys = 99, jax.random.split(jax.random.key(0), 2000)
    for scale, calibrated in ((1.0, False), (fit["scale"], True)):
        sample = lambda o, k, c=scale: inf.mdn_proposal(o, DELTA, 1, 0.0, c).sample(k, m)
        draws = jax.jit(jax.vmap(sample))(out, keys)
        ranks = np.asarray(inf.continuous_ranks(truth, draws))[:, 0]
        p = inf.rank_uniformity(ranks, m)["p_value"]
        cov = inf.coverage(np.asarray(truth), np.asarray(draws))["empirical"]
        near = all(abs(c[0] - lvl) < 0.03 for c, lvl in zip(cov, (0.5, 0.8, 0.9, 0.95)))
        assert (p > 0.01) == calibrated and near == calibrated, (scale, p, cov)


def test_importance_sampling_with_a_head_recovers_the_exact_posterior():
    """IS with a head as proposal (a fair one, and an over-confident one rescued by the
    prior's share) matches the truncated normal's mean, sd and quantiles; the SBC of the
    over-confident head alone fails where its IS posterior passes."""
    u, x = toy_draws(300, seed=1)
    k, m = 4000, 99

    def posterior_draws(key, xi, mean, log_std):
        mix = mdn.Mixture(jnp.zeros(1), mean[None, None], log_std[None, None])
        prop = inf.Proposal(
            lambda kk, n: mdn.sample(kk, mix, n, DELTA, SHARE),
            lambda e: mdn.log_prob(mix, e, DELTA, SHARE),
        )
        w = inf.importance_sample(key, toy_log_joint(xi), prop, k)
        alone = mdn.sample(jax.random.fold_in(key, 2), mix, m, DELTA, SHARE)
        return inf.resample(jax.random.fold_in(key, 1), w, m), alone, w

    # Every observation in one call; observation i draws with jax.random.key(i).
    batched = jax.jit(jax.vmap(posterior_draws))
    keys = jax.vmap(jax.random.key)(jnp.arange(len(x)))
    truth = jnp.asarray(u[:, None], jnp.float32)
    for scale in (1.0, 0.3):
        draws, alone, w = batched(keys, jnp.asarray(x, jnp.float32), *fitted_heads(x, scale))
        # Weighted moments of one observation against the exact ones.
        p = np.asarray(jax.nn.softmax(w.log_weights[0]), np.float64)
        e = np.asarray(w.samples[0, :, 0], np.float64)
        post = toy_posterior(x[0])
        assert (p * e).sum() == pytest.approx(post.mean(), abs=0.1 * post.std())
        sd = math.sqrt((p * (e - (p * e).sum()) ** 2).sum())
        assert sd == pytest.approx(post.std(), rel=0.15)
        ranks_is = np.asarray(inf.continuous_ranks(truth, draws))
        assert inf.rank_uniformity(ranks_is[:, 0], m)["p_value"] > 0.01
        ranks_alone = np.asarray(inf.continuous_ranks(truth, alone))
        p_alone = inf.rank_uniformity(ranks_alone[:, 0], m)["p_value"]
        if scale == 1.0:
            assert p_alone > 0.001  # the fair head is close to the posterior by itself
        else:
            assert p_alone < 1e-6  # over-confident alone: flagged


def test_likelihood_profile_gives_the_conditional_posterior_sd_of_a_linear_gaussian():
    """s(u) = A u with Gaussian noise of variance var: the profile's divergence is
    h^2 |a_i|^2 / (2 var), and the step where it reaches 1/2 nat is the exact conditional
    posterior sd sqrt(var) / |a_i|, below the marginal sd of a correlated posterior."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 3)).astype(np.float32)
    a[:, 1] += a[:, 0]  # correlated coordinates: marginal sd > conditional sd
    var = 0.04
    u0 = jnp.asarray(rng.uniform(0.9, 1.1, size=3), jnp.float32)
    steps = np.logspace(-3, 1, 33)
    fn = jax.jit(lambda e: e @ jnp.asarray(a).T)
    kl = inf.likelihood_profile(fn, u0, steps, var, batch_size=64)
    norms = (a.astype(np.float64) ** 2).sum(0)
    np.testing.assert_allclose(kl, steps[:, None] ** 2 * norms / (2 * var), rtol=2e-3)
    width = inf.profile_width(kl, steps)
    conditional = np.sqrt(var / norms)
    np.testing.assert_allclose(width, conditional, rtol=2e-3)
    marginal = np.sqrt(var * np.diag(np.linalg.inv(a.T.astype(np.float64) @ a)))
    assert np.all(width < marginal)
    np.testing.assert_allclose(
        inf.divergence_at(kl, steps, 0.05), 0.05**2 * norms / (2 * var), rtol=2e-3
    )
    # Nowhere reached within the steps: inf; reached at the first step: at most that step.
    assert np.all(np.isinf(inf.profile_width(kl[:2], steps[:2])))
    assert np.all(inf.profile_width(kl[-2:], steps[-2:]) == steps[-2])
    with pytest.raises(ValueError, match="outside the profile's steps"):
        inf.divergence_at(kl, steps, 100.0)


# --- the head in the train step -----------------------------------------------------------------


def tiny_config(steps: int = 2):
    c = amortized.get_config("mini")
    c.update_from_flattened_dict(
        {
            "render.image_size": 16,
            "render.walkers": 64,
            "render.steps": 16,
            "model.variant": "test/4",
            "batch_size": 16,
            "eval_batch_size": 16,
            "total_steps": steps,
            "warmup_steps": 1,
            "log_every": 1,
            "checkpoint_every": steps,
        }
    )
    return c


def test_latent_batch_draws_fresh_multipliers_on_the_generators_walk():
    """'fixed' (default): the images are exactly inference's renders of u (the joint the
    head learns is the one importance sampling inverts); 'fresh': the base's maps times u
    on the batch's own walk and patches."""
    c = tiny_config()
    src = sources.make(c)
    images, u = jax.jit(src.latent_batch, static_argnums=2)(jax.random.key(0), 3, 8)
    assert images.shape == (8, 16, 16, 3) and u.shape == (8, src.num_latents) == (8, 12)
    assert float(jnp.abs(u - 1).max()) <= src.delta
    gen = inf.generator(src, noise=0.1, pool=2)
    np.testing.assert_array_equal(np.asarray(images), np.asarray(gen.render_eps(u)))
    c.source.latent_walk = "fresh"
    src = sources.make(c)
    images, u = jax.jit(src.latent_batch, static_argnums=2)(jax.random.key(0), 3, 8)
    assert not np.array_equal(np.asarray(images), np.asarray(gen.render_eps(u)))
    k_u, k_render = jax.random.split(jax.random.fold_in(jax.random.key(0), 3))
    maps = src.base.maps[None] * u.reshape(8, 2, 6)
    probs = jnp.broadcast_to(src.base.probs, (8, 2))
    from fractaljax import render as render_lib
    from fractaljax.ifs import IFS

    want = render_lib.render(src.spec, IFS(maps, probs), k_render)
    np.testing.assert_array_equal(np.asarray(images), np.asarray(want))
    _, u2 = src.latent_batch(jax.random.key(0), 4, 8)
    assert not np.allclose(np.asarray(u), np.asarray(u2))  # another step, other draws


def test_head_trains_in_the_step_starting_from_the_known_loss(run, tmp_path):
    """experiments.pretrain with configs/amortized.py. The first loss of a zero-initialised
    head (big_vision init) is the NLL of z ~ N(0, 1) per dimension mixed with the prior,
    computed here by hand from the batch's u: the step reads the right targets, Delta and
    share. The checkpoint loads with the head's width."""
    c = tiny_config(steps=3)
    overrides = [
        f"--config.{k}={c[k.split('.')[0]][k.split('.')[1]] if '.' in k else c[k]}"
        for k in ("render.image_size", "render.walkers", "render.steps", "model.variant",
                  "batch_size", "eval_batch_size", "total_steps", "warmup_steps",
                  "log_every", "checkpoint_every")
    ]  # fmt: skip
    res = run(
        "experiments.pretrain", "--config=configs/amortized.py:mini",
        f"--workdir={tmp_path / 'run'}", *overrides,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "eval error of u" in res.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    src = sources.make(c)
    data_key = train.keys.stream(c.seed, "data")
    _, u = src.latent_batch(data_key, 0, c.batch_size)
    t = (np.asarray(u, np.float64) - 1) / src.delta
    q_u = np.prod(stats.norm.pdf(np.arctanh(t)) / (src.delta * (1 - t**2)), -1)
    want = -np.log((1 - SHARE) * q_u + SHARE / (2 * src.delta) ** 12).mean()
    assert summary["first_loss"] == pytest.approx(want, rel=1e-4)
    assert summary["eval_error_over_delta"] == pytest.approx(0.5, abs=0.1)  # knows nothing
    pre, model, params = run_dir.load(str(tmp_path / "run"))
    assert train.head(pre) == "mdn"
    assert params["head"]["kernel"].shape[-1] == mdn.num_outputs(8, 12)
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["model"]["head"] == "mdn"


def test_head_needs_a_continuous_latent_and_a_prior_share():
    from configs import dead_leaves

    c = dead_leaves.get_config("mini")
    c.model.head = "mdn"
    with pytest.raises(ConfigError, match="continuous latent"):
        train.build(c, None)
    c = tiny_config()
    c.model.mdn_prior_share = 0.0
    with pytest.raises(ConfigError, match="mdn_prior_share"):
        train.validate(c)
    c.model.mdn_prior_share, c.model.head = 0.05, "gaussian"
    with pytest.raises(ConfigError, match="model.head"):
        train.validate(c)


@pytest.fixture(scope="module")
def head_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("head_run")
    train.train_and_evaluate(tiny_config(steps=2), str(workdir))
    return workdir


def test_infer_explains_images_over_the_continuous_latent(run, head_run, tmp_path):
    res = run(
        "experiments.infer", f"--pretrained={head_run}", "--synthetic=2", f"--out={tmp_path}",
        "--num_samples=64", "--calibrate_sims=64",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("|mean - u| / Delta") == 2
    summary = json.loads((tmp_path / "posterior.json").read_text())
    assert summary["head"] == "mdn" and len(summary["images"]) == 2
    assert "head calibrated on 64 simulations" in res.stdout
    assert 0.5 <= summary["std_scale"] <= 1.5
    for row in summary["images"]:
        assert len(row["posterior_mean"]) == len(row["truth"]) == 12
        assert all(abs(m - 1) <= summary["delta"] for m in row["posterior_mean"])
        assert 1 / 64 - 1e-6 <= row["ess_head"] <= 1 and math.isfinite(row["log_evidence"])


@pytest.mark.skipif(
    not downstream.fashion_mnist_available() and not os.environ.get("FRACTALJAX_REQUIRE_DATA"),
    reason="Fashion-MNIST files absent (apt-get install dataset-fashion-mnist)",
)
def test_inference_report_of_a_continuous_head_run(run, head_run, tmp_path):
    """experiments.inference_report on a head run, tiny: every section, its figures, and
    the calibration rows for the head alone, calibrated, with IS and over-confident."""
    res = run(
        "experiments.inference_report", f"--pretrained={head_run}",
        f"--out={tmp_path / 'out'}", "--sims=20", "--is_sims=2", "--num_samples=32",
        "--sbc_draws=19", "--deltas=0.1,0.001", "--profile_draws=2",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["head"] == "mdn"
    assert set(report["amortization"]["proposals"]) == {"network head", "prior"}
    cal = report["calibration"]
    assert set(cal) == {
        "head alone", "calibrated head alone", "over-confident head alone", "head + IS",
        "over-confident head + IS",
    }  # fmt: skip
    fit = report["calibration_fit"]  # fitted on other simulations than the rows
    assert fit["n"] == 20 and fit["chi2"] <= fit["chi2_at_1"] and 0.5 <= fit["scale"] <= 1.5
    assert len(cal["head alone"]["sbc_p_values"]) == 12 and cal["head alone"]["n"] == 20
    assert cal["head + IS"]["n"] == 2
    # The over-confident head's draws are narrower than the head's.
    assert (
        cal["over-confident head alone"]["mean_posterior_sd"]
        < 0.5 * cal["head alone"]["mean_posterior_sd"]
    )
    rows = report["identifiability"]
    assert [(r["delta"], r["resolution"]) for r in rows] == [
        (0.1, "canvas"), (0.1, "input"), (0.001, "canvas"), (0.001, "input")
    ]  # fmt: skip
    # At Delta 0.001 the image says little about u: the posterior is nearly the prior.
    assert all(r["sd_over_prior"] > 0.5 for r in rows if r["delta"] == 0.001)
    # The profile resolves what IS cannot: positive widths, relatively 100x narrower
    # at Delta 0.1 than at 0.001 (the same likelihood, a 100x wider prior), roughly.
    prof = {(r["delta"], r["resolution"]): r["profile_sd_over_prior"] for r in rows}
    assert all(v > 0 for v in prof.values())
    assert prof[(0.1, "canvas")] < 0.2 * prof[(0.001, "canvas")]
    assert all(r["profile_n"] == 2 and r["noise_halving_width"] >= 0 for r in rows)
    names = [r["set"] for r in report["mismatch"]]
    assert names[0] == "generated (fresh u)" and "fashion_mnist" in names
    for fig in ("head_sbc.png", "head_coverage_identifiability.png"):
        assert (tmp_path / "out" / fig).exists()


def test_the_head_learns_from_noisy_observations_when_asked():
    c = tiny_config()
    images = jnp.full((4, 16, 16, 3), 0.5)
    c.model.mdn_noise = 0.0
    assert train.observe(c, jax.random.key(0), images) is images
    c.model.mdn_noise = 0.1
    x = np.asarray(train.observe(c, jax.random.key(0), images))
    assert x.min() >= 0 and x.max() <= 1
    assert np.std(x - 0.5) == pytest.approx(0.1, rel=0.05)
    c.model.mdn_noise = -0.1
    with pytest.raises(ConfigError, match="mdn_noise"):
        train.validate(c)


def test_head_fields_are_inert_on_a_classes_run():
    """The 'mdn' fields do nothing on an LPCE run: a changed value there neither changes a
    sweep point's identity nor stops a resume; on a head run they do both."""
    from configs import onepfrac
    from fractaljax import sweeps

    a = onepfrac.get_config("small")
    b = a.copy_and_resolve_references()
    b.model.mdn_prior_share, b.source.latent_walk = 0.2, "fresh"
    from configs import finetune_small

    ft = finetune_small.get_config()
    key = lambda c: sweeps.point_key(sweeps.point_identity(c, ft, 0, 0, False))  # noqa: E731
    assert key(a) == key(b)
    assert run_dir.config_changes(json.loads(a.to_json_best_effort()), b) == {}
    a.model.head = b.model.head = "mdn"
    assert key(a) != key(b)
    assert set(run_dir.config_changes(json.loads(a.to_json_best_effort()), b)) == {
        "model.mdn_prior_share", "source.latent_walk"
    }  # fmt: skip
