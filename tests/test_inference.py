"""Amortized inference (fractaljax.inference): exact references on problems small enough to
enumerate, SBC with a positive and a negative control, and the 1p-frac generator."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_modules
from scipy import stats

from configs import onepfrac
from fractaljax import inference as inf
from fractaljax import sources
from fractaljax.errors import ConfigError


def tiny_model(num_classes=6, dim=16, var=0.5, seed=0):
    """Class summaries close enough that posteriors spread over several classes."""
    s = jax.random.normal(jax.random.key(seed), (num_classes, dim)) * 0.4
    return inf.DiscreteModel(s, jnp.float32(var))


def simulate_tiny(model, key, num):
    k_y, k_x = jax.random.split(key)
    y = jax.random.randint(k_y, (num,), 0, model.num_classes)
    s = model.summaries[y] + jnp.sqrt(model.var) * jax.random.normal(k_x, (num, 16))
    return y, s


def test_categorical_draws_follow_their_law_and_never_draw_an_impossible_index():
    """Inverse-CDF draws (resampling, the class proposals, SBC) against the law they draw
    from (chi-square; the same masses on other indices rejected), -inf never drawn (the last
    index included), and unnormalised log probabilities far from 0 handled."""
    p = np.array([0.5, 0.0, 0.2, 0.05, 0.25, 0.0])
    log_p = jnp.log(jnp.asarray(p, jnp.float32)) + 300.0  # unnormalised, exp would overflow
    n = 40_000
    draws = np.asarray(inf.categorical_draws(jax.random.key(0), log_p, n))
    assert draws.dtype == np.int32 and draws.shape == (n,)
    counts = np.bincount(draws, minlength=len(p))
    assert counts[1] == counts[5] == 0  # -inf: never, the last index too
    mass = p > 0
    assert stats.chisquare(counts[mass], n * p[mass]).pvalue > 0.01
    wrong = p[mass][::-1]  # the same masses on other indices
    assert stats.chisquare(counts[mass], n * wrong).pvalue < 1e-6
    # One index with all the mass; vmapped over keys as inference uses it.
    one = jnp.full(7, -jnp.inf).at[3].set(0.0)
    keys = jax.random.split(jax.random.key(1), 5)
    got = jax.vmap(lambda k: inf.categorical_draws(k, one, 11))(keys)
    assert (np.asarray(got) == 3).all()
    with pytest.raises(ValueError, match="one vector"):
        inf.categorical_draws(jax.random.key(0), jnp.zeros((3, 4)), 5)


def test_ess_and_log_evidence_formulas():
    lw = jnp.log(jnp.array([2.0, 2.0, 2.0, 2.0]))
    assert float(inf.ess(lw)) == pytest.approx(1.0)
    assert float(inf.log_evidence(lw)) == pytest.approx(math.log(2.0))
    lw = jnp.array([0.0, -jnp.inf, -jnp.inf, -jnp.inf])
    assert float(inf.ess(lw)) == pytest.approx(0.25)  # one usable sample of four
    w = np.array([1.0, 3.0, 0.5, 2.5, 0.0])
    lw = jnp.log(jnp.asarray(w))
    assert float(inf.ess(lw)) == pytest.approx(w.sum() ** 2 / (w**2).sum() / 5, rel=1e-5)
    assert float(inf.log_evidence(lw)) == pytest.approx(math.log(w.mean()), rel=1e-5)


def test_pareto_k_tells_heavy_from_light_tails():
    assert inf.pareto_k(np.r_[0.0, np.full(99, -800.0)]) == math.inf  # one weight holds all
    rng = np.random.default_rng(0)
    heavy = stats.genpareto.rvs(0.9, size=4000, random_state=rng)  # infinite variance
    light = rng.uniform(0.5, 1.5, 4000)
    assert inf.pareto_k(np.log(heavy)) > 0.7
    assert inf.pareto_k(np.log(light)) < 0.5
    assert math.isnan(inf.pareto_k(np.log(light[:10])))


def test_exact_posterior_is_bayes_rule():
    model = tiny_model()
    s_x = model.summaries[2] + 0.3
    lp = np.asarray(model.exact_log_posterior(s_x), np.float64)
    ll = np.array(
        [
            stats.multivariate_normal(np.asarray(m), 0.5).logpdf(np.asarray(s_x))
            for m in model.summaries
        ]
    )
    np.testing.assert_allclose(lp, ll - np.logaddexp.reduce(ll), atol=1e-4)


@pytest.mark.parametrize("proposal", ["prior", "wrong network"])
def test_importance_sampling_matches_the_exact_posterior(proposal):
    model = tiny_model()
    y, s = simulate_tiny(model, jax.random.key(1), 8)
    exact = np.exp(np.asarray(jax.vmap(model.exact_log_posterior)(s)))
    assert (exact.max(-1) < 0.95).any()  # the problem is not trivially identified
    if proposal == "prior":
        log_q = jnp.full((8, 6), -jnp.log(6.0))
    else:  # confidently wrong: mass on the class after the true one; defensive share rescues
        log_q = inf.defensive(10.0 * jax.nn.one_hot((y + 1) % 6, 6))
    keys = jax.random.split(jax.random.key(2), 8)
    w = jax.vmap(lambda k, s_, q: inf.discrete_is(k, model, s_, q, 40_000))(keys, s, log_q)
    est = np.asarray(jax.vmap(lambda w_: inf.class_probs(w_, 6))(w))
    np.testing.assert_allclose(est, exact, atol=0.03)
    # The one-observation wrapper is the same computation.
    one = inf.posterior(model, s[0], keys[0], 40_000)
    if proposal == "prior":
        np.testing.assert_allclose(np.asarray(one.class_probs), est[0], atol=1e-5)
        assert float(one.ess) == pytest.approx(float(inf.ess(w.log_weights[0])), rel=1e-5)
    # Log evidence: p(s_x) = mean over classes of the likelihood.
    ll = jax.vmap(lambda s_: inf.log_likelihood(s_, model.summaries, model.var))(s)
    exact_ev = np.asarray(jax.scipy.special.logsumexp(ll, -1) - jnp.log(6.0))
    np.testing.assert_allclose(np.asarray(inf.log_evidence(w.log_weights)), exact_ev, atol=0.05)


def test_sbc_passes_with_is_and_fails_for_an_over_confident_proposal_alone():
    model = tiny_model()
    n, draws, k = 3000, 19, 256
    y, s = simulate_tiny(model, jax.random.key(3), n)
    exact = jax.vmap(model.exact_log_posterior)(s)
    over = inf.defensive(4.0 * exact, share=0.05)  # the posterior to the 4th power: too sure
    key = jax.random.key(4)
    ranks_is = inf.sbc_ranks(key, model, y, s, over, k, draws, correct=True)
    ranks_raw = inf.sbc_ranks(key, model, y, s, over, k, draws, correct=False)
    ok, bad = inf.rank_uniformity(ranks_is, draws), inf.rank_uniformity(ranks_raw, draws)
    assert ok["p_value"] > 0.01, ok
    assert bad["p_value"] < 1e-4, bad
    # Over-confidence puts the truth in the tails: a U-shaped rank histogram.
    c = np.asarray(bad["counts"])
    assert c[0] + c[-1] > 1.3 * c[4:6].sum()
    lo, hi = ok["band"]
    assert lo < n / 10 < hi


def test_calibration_error():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 20_000)
    right = rng.uniform(size=conf.size) < conf  # calibrated: right with probability conf
    probs = np.stack([conf, 1 - conf], -1)
    labels = np.where(right, 0, 1)
    assert inf.calibration(probs, labels)["ece"] < 0.02
    sure = np.stack([np.full(conf.size, 0.99), np.full(conf.size, 0.01)], -1)
    r = inf.calibration(sure, labels)
    assert r["ece"] == pytest.approx(0.99 - right.mean(), abs=1e-6)
    assert sum(r["count"]) == conf.size


def test_mmd_test_separates_shifted_samples_only():
    kx, ky, kz, kp = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (150, 5))
    same = jax.random.normal(ky, (150, 5))
    shifted = jax.random.normal(kz, (150, 5)) + jnp.array([0.6, 0, 0, 0, 0])
    r_same, r_shift = inf.mmd_test(kp, x, same, 200), inf.mmd_test(kp, x, shifted, 200)
    assert r_same["p_value"] > 0.05 and r_shift["p_value"] < 0.01
    assert r_shift["mmd2"] > 5 * abs(r_same["mmd2"])


def test_sbc_says_when_it_cannot_fail():
    """Where the posterior is a point mass on the truth, every draw ties with it and the
    ranks are uniform whatever the proposal: an over-confident proposal trusted alone
    passes there. sbc_ranks reports that share, so a report can say the test was blind."""
    model = tiny_model(var=1e-4)  # classes far apart next to the noise: one-hot posteriors
    n, draws, k = 2000, 19, 1024
    y, s = simulate_tiny(model, jax.random.key(3), n)
    exact = jax.vmap(model.exact_log_posterior)(s)
    assert float(jnp.exp(exact.max(-1)).mean()) > 0.999
    # A confidently wrong proposal (the class after the truth) corrected by IS: resampling
    # returns the truth every time, so every rank is a uniform draw among 19 ties.
    wrong = inf.defensive(10.0 * jax.nn.one_hot((y + 1) % 6, 6), share=0.05)
    ranks, tied = inf.sbc_ranks(jax.random.key(4), model, y, s, wrong, k, draws, True, True)
    assert float(tied) > 0.95
    assert inf.rank_uniformity(ranks, draws)["p_value"] > 0.01  # blind: it passes
    # The spread model of the SBC test above: fewer ties, and an over-confident proposal
    # trusted alone fails.
    model = tiny_model()
    y, s = simulate_tiny(model, jax.random.key(3), n)
    over = inf.defensive(4.0 * jax.vmap(model.exact_log_posterior)(s), share=0.05)
    ranks, tied = inf.sbc_ranks(jax.random.key(4), model, y, s, over, k, draws, False, True)
    assert float(tied) < 0.5 and inf.rank_uniformity(ranks, draws)["p_value"] < 1e-4


def test_pareto_summary_keeps_nan_out_and_counts_degenerate_weights():
    ks = [0.3, 0.9, math.inf, math.nan, 0.5]
    r = inf.pareto_summary(ks)
    assert r["n"] == 5 and r["degenerate"] == 1 and r["no_fit"] == 1
    assert r["median"] == pytest.approx(0.7)  # of 0.3, 0.5, 0.9, inf
    assert r["fitted_median"] == pytest.approx(0.5)
    assert r["over_0_7"] == 2  # 0.9 and the degenerate one
    assert math.isnan(np.median(ks))  # what the report used to take
    assert math.isnan(inf.pareto_summary([math.nan])["median"])


def test_continuous_proposals_are_normalised_and_keep_weights_bounded():
    """1-D: the class mixture with its prior share integrates to 1 over the box and its
    prior/q ratio is at most 1 / share everywhere, also far from every class."""
    from fractaljax import mdn

    delta, share = 0.1, 0.1
    centres = jnp.array([[0.95], [1.02]])
    log_pi = jnp.log(jnp.array([0.3, 0.7]))
    mix = inf.Proposal(
        lambda key, k: centres[0] + 0.01 * jax.random.normal(key, (k, 1)),
        lambda e: inf.mixture_log_q(e, centres, log_pi, 0.01),
    )
    q = inf.with_prior(mix, delta, 1, share)
    grid = jnp.linspace(1 - delta, 1 + delta, 20001)[:, None]
    dens = jnp.exp(q.log_prob(grid))
    # The Gaussians (std 0.01, at 0.95 and 1.02) leave < 1e-6 of their mass outside the box.
    assert float(jnp.sum(dens)) * 2 * delta / 20000 == pytest.approx(1.0, abs=1e-3)
    ratio = jnp.exp(mdn.log_prior(grid, delta) - q.log_prob(grid))
    assert float(ratio.max()) <= 1 / share + 1e-3
    draws = q.sample(jax.random.key(0), 20000)
    far = jnp.abs(draws[:, 0] - 1.08) < 0.01  # where only the prior puts mass
    assert 0.5 * share * 0.02 / 0.2 < float(far.mean()) < 2 * share * 0.02 / 0.2


def test_mixture_proposal_is_normalised():
    centres = jnp.array([[0.0], [1.0], [3.0]])
    log_pi = jnp.log(jnp.array([0.2, 0.5, 0.3]))
    grid = jnp.linspace(-3, 6, 9001)[:, None]
    dens = jnp.exp(inf.mixture_log_q(grid, centres, log_pi, 0.4))
    assert float(jnp.sum(dens) * (grid[1, 0] - grid[0, 0])) == pytest.approx(1.0, abs=1e-3)


# --- the 1p-frac generator --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_source():
    c = onepfrac.get_config("mini")
    c.update_from_flattened_dict(
        {"source.num_classes": 8, "render.walkers": 64, "render.steps": 32, "source.delta": 0.1}
    )
    return c, sources.make(c)


def test_generator_renders_the_fixed_data_set_and_its_box(small_source):
    c, src = small_source
    gen = inf.generator(src, noise=0.1, pool=2)
    labels = jnp.arange(8)
    np.testing.assert_array_equal(
        np.asarray(gen.render_classes(labels)), np.asarray(src.render_labels(labels, None))
    )
    eps = gen.class_eps()
    assert eps.shape == (8, 12) and float(jnp.abs(eps - 1).max()) <= 0.1 + 1e-5
    assert np.isfinite(np.asarray(gen.log_prior_eps(eps))).all()
    assert np.isneginf(np.asarray(gen.log_prior_eps(eps.at[:, 0].set(1.2)))).all()
    # Another bandwidth and pooling render with the programs already compiled.
    jax.block_until_ready(gen.render_eps(eps))
    compiled = inf._render_classes._cache_size(), inf._render_eps._cache_size()
    other = inf.generator(src, noise=0.3, pool=4)
    jax.block_until_ready((other.render_classes(labels), other.render_eps(eps)))
    assert (inf._render_classes._cache_size(), inf._render_eps._cache_size()) == compiled
    # eps's render is the class's shape (same walk; other patches, so compare unpatched).
    c2 = c.copy_and_resolve_references()
    c2.render.patch = "none"
    src2 = sources.make(c2)
    gen2 = inf.generator(src2, noise=0.1, pool=2)
    a, b = np.asarray(gen2.render_eps(eps)), np.asarray(gen2.render_classes(labels))
    assert np.mean(a != b) < 0.01  # float rounding of base * eps / base moves a few points
    # Noiseless class images are identified exactly; a mislabelled one is not.
    model = inf.discrete_model(gen)
    post = jax.vmap(model.exact_log_posterior)(inf.summarize(gen.render_classes(labels), 2))
    np.testing.assert_array_equal(np.asarray(post.argmax(-1)), np.arange(8))


def test_continuous_is_with_the_prior_concentrates_near_the_truth(small_source):
    c, src = small_source
    gen = inf.generator(src, noise=0.2, pool=2)
    truth = gen.class_eps()[3]
    x = gen.observe(jax.random.key(0), gen.render_eps(truth[None]))[0]
    s_x = inf.summarize(x, 2)
    prior = inf.prior_proposal(gen.delta, 12)
    w = jax.jit(lambda k: inf.continuous_is(k, gen, s_x, prior, 2048))(jax.random.key(1))
    log_pi = jax.nn.log_softmax(10.0 * jax.nn.one_hot(3, 8))  # the network says "class 3"
    mixture = inf.class_mixture_proposal(gen, log_pi, 0.01)
    w2 = jax.jit(lambda k: inf.continuous_is(k, gen, s_x, mixture, 2048))(jax.random.key(1))

    def error(w):
        p = np.asarray(jax.nn.softmax(w.log_weights))
        return np.linalg.norm((p[:, None] * np.asarray(w.samples)).sum(0) - np.asarray(truth))

    # In 12 dimensions the prior as proposal is hopeless: one sample holds the weight, and
    # the diagnostics say so (the point estimate then means little). The class mixture gets
    # 5 times nearer the truth than the prior's mean (1) is. (Its ESS is small too: the
    # posterior in eps is far narrower than the mixture's components.)
    assert float(inf.ess(w.log_weights)) < 0.01 and inf.pareto_k(w.log_weights) > 0.7
    prior_error = np.linalg.norm(np.asarray(truth) - 1)
    assert error(w2) < 0.2 * prior_error


def test_generator_rejects_other_sources_and_bad_likelihoods(small_source):
    c, src = small_source
    with pytest.raises(ConfigError, match="noise"):
        inf.generator(src, noise=0.0, pool=2)
    with pytest.raises(ConfigError, match="pool"):
        inf.generator(src, noise=0.1, pool=5)
    with pytest.raises(ConfigError, match="1p-frac"):
        inf.generator(sources.Source("fractaldb", 4, src.spec, src.draw, arrays=src.arrays), 0.1, 2)


# --- the CLI ----------------------------------------------------------------------------------


def test_infer_cli_explains_synthetic_images(run, tiny_run, tmp_path):
    res = run(
        "experiments.infer", f"--pretrained={tiny_run}", "--synthetic=3", f"--out={tmp_path}",
        "--num_samples=200", "--noise=3.0",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "mean ESS per sample: network" in res.stdout
    summary = json.loads((tmp_path / "posterior.json").read_text())
    assert len(summary["images"]) == 3 and (tmp_path / "posterior.png").exists()
    # Noise 3 spreads the exact posterior (at 0.2 it is one-hot and any estimate agrees).
    assert min(max(row["exact_posterior"]) for row in summary["images"]) < 0.6
    for row in summary["images"]:
        # IS against the exact posterior (10 classes, 200 samples): total variation over
        # the classes shown (measured 0.03-0.05; the prior alone would be ~0.25 off).
        p, exact = np.asarray(row["posterior"]), np.asarray(row["exact_posterior"])
        assert 0.5 * np.abs(p - exact).sum() < 0.1, (p, exact)
        assert 0 < row["ess_prior"] <= 1 and 0 < row["ess_network"] <= 1


def test_infer_cli_bad_inputs_are_one_line_exit_2(tiny_run, tmp_path):
    text = tmp_path / "not_an_image.png"
    text.write_text("hello")
    other = tmp_path / "fdb"
    other.mkdir()
    cfg = json.loads((tiny_run / "config.json").read_text())
    cfg["source"]["name"] = "fractaldb"
    (other / "config.json").write_text(json.dumps(cfg))
    cases = [
        ([f"--image={tmp_path / 'missing.png'}"], "no such file"),
        ([f"--image={text}"], "not a readable image"),
        (["--synthetic=0"], "exactly one of"),
        ([f"--image={text}", "--synthetic=2"], "exactly one of"),
    ]
    out = tmp_path / "out"
    commands = [
        ("experiments.infer", [f"--pretrained={tiny_run}", f"--out={out}", *extra], {})
        for extra, _ in cases
    ]
    commands.append(
        ("experiments.infer", [f"--pretrained={other}", "--synthetic=1", f"--out={out}"], {})
    )
    results = run_modules(commands, str(tmp_path))  # forked from one interpreter
    for (_, message), res in zip(cases, results):
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and message in lines[0], res.stderr
    assert not out.exists()  # nothing written
    assert results[-1].returncode == 2 and "needs a 1p-frac run" in results[-1].stderr


def test_pareto_k_calls_weights_spanning_many_orders_of_magnitude_degenerate():
    """Weights that fall by 10 nats per sample are one sample in effect: degenerate (inf),
    not a NaN from an overflowing fit nor a 'fitted' k in the hundreds."""
    lw = -10.0 * np.arange(1000.0)
    assert inf.pareto_k(lw) == math.inf
    assert float(inf.ess(jnp.asarray(lw))) < 0.0011
