"""Shared test helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# JAX's persistent compilation cache, shared by every test, both pytest workers, every
# subprocess and the notebook's kernel (they inherit the environment): the suite compiles
# the same tiny programs many times. Set before anything imports JAX; a run that starts
# with it empty (a clean clone, CI) still reuses what its own earlier tests compiled.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(REPO, ".pytest_cache", "jax_compilation_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# One directory of prepared TFDS sets for the whole suite (and every later run of it): the
# default data_dir of every process it starts (fractaljax.downstream.DEFAULT_DATA_DIR reads
# TFDS_DATA_DIR, as TFDS does), never the user's ~/tensorflow_datasets. Fashion-MNIST is
# converted once, not once per test that reads it; concurrent preparations wait on
# downstream.prepare's lock.
os.environ.setdefault("TFDS_DATA_DIR", os.path.join(REPO, ".pytest_cache", "tfds"))

# The suite's programs are tiny and compiled once each, so XLA's compile time, not their run
# time, is most of the suite (510 of its 1,340 CPU-seconds in the workers alone, measured
# with jax.monitoring): LLVM's cheapest pipeline compiles about a third faster, and XLA's
# older elemental emitters in place of the fusion emitters about 40% faster again (a tiny
# and a small-protocol train step: 20.5 -> 12-13.5 s); the programs run two to three times
# slower, which tiny programs do not notice. Same semantics: fast-math stays off (results
# may differ in the last bits from the default pipeline's, never between two runs here).
# Tests that time anything live in benchmarks/, which use the defaults.
TEST_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_use_fusion_emitters=false"
)
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def xla_devices(n: int) -> dict[str, str]:
    """The environment of a subprocess with ``n`` virtual CPU devices (and the suite's
    compile flags)."""
    return {"XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={n}"}


def run_module(module: str, *args: str, env: dict | None = None, timeout: int = 600):
    """Run ``python -m module args`` from the repo root; return the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_modules(commands: list[tuple[str, list[str], dict]], out_dir) -> list:
    """Run ``(module, args, env)`` commands as ``run_module`` would, each in its own process
    with its own exit status and output, but forked from one interpreter that imported the
    libraries once (tests/fork_runner.py): a second a command instead of a start-up each."""
    specs = [
        {
            "module": m,
            "args": list(a),
            "env": env or {},
            "stdout": os.path.join(out_dir, f"{i}.out"),
            "stderr": os.path.join(out_dir, f"{i}.err"),
        }
        for i, (m, a, env) in enumerate(commands)
    ]
    runner = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "fork_runner.py")],
        cwd=REPO,
        input=json.dumps(specs),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert runner.returncode == 0, runner.stderr[-3000:]
    results = []
    for spec, code in zip(specs, json.loads(runner.stdout)):
        with open(spec["stdout"]) as out, open(spec["stderr"]) as err:
            results.append(
                subprocess.CompletedProcess(
                    [spec["module"], *spec["args"]], code, out.read(), err.read()
                )
            )
    return results


@pytest.fixture
def run():
    return run_module


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The suite's shared TFDS directory (TFDS_DATA_DIR above)."""
    return os.environ["TFDS_DATA_DIR"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny 1p-frac pre-training (test_train.tiny_config: 10 steps, checkpoints at 5 and
    10), trained once per worker and shared by every test that only reads a run."""
    from test_train import tiny_config

    from fractaljax import train

    workdir = tmp_path_factory.mktemp("tiny_run")
    train.train_and_evaluate(tiny_config(), str(workdir))
    return workdir


# Seconds each file took (`pytest --durations=0`, the quiet 2-core CPU, cold caches), for
# the order in which the two workers take files (--dist loadfile: a file runs on one
# worker): longest first, so the short files at the end fill in and neither worker idles
# long at the end (longest-processing-time-first scheduling: 30 s of wall time over the
# hand-made order the suite had, simulated from one run's file times). A file not listed
# goes last. A file's time depends on the order too (the first file to compile a shared
# program pays for it); refresh after a big change: python tests/file_times.py LOG.
FILE_SECONDS = {
    "test_train.py": 159,
    "test_amortized.py": 127,
    "test_distributed.py": 101,
    "test_sources.py": 89,
    "test_inference.py": 65,
    "test_contours.py": 54,
    "test_downstream.py": 42,
    "test_notebook.py": 41,
    "test_protocol.py": 40,
    "test_reliability.py": 40,
    "test_protocol_e2e.py": 40,
    "test_render.py": 36,
    "test_gpu_protocol.py": 34,
    "test_interop.py": 33,
    "test_sweep.py": 29,
    "test_dead_leaves.py": 24,
    "test_bad_input.py": 20,
    "test_augment.py": 19,
    "test_onepfrac.py": 14,
    "test_science.py": 14,
    "test_ifs.py": 9,
    "test_experiment_render.py": 8,
    "test_evals.py": 7,
    "test_cli.py": 5,
    "test_randaugment.py": 4,
    "test_models_losses.py": 3,
    "test_stats.py": 1,
    "test_keys.py": 0,
}


def pytest_collection_modifyitems(session, config, items):
    # Stable: the tests of a file keep their order.
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))
