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

# The suite's programs are tiny and compiled once each, so XLA's compile time, not their run
# time, is most of the suite: LLVM's cheapest pipeline compiles about a third faster (the
# programs run about twice as slow, which tiny programs do not notice). Same semantics: XLA
# keeps fast-math off at every level. Tests that time anything live in benchmarks/.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
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
def tiny_run(tmp_path_factory):
    """A tiny 1p-frac pre-training (test_train.tiny_config: 10 steps, checkpoints at 5 and
    10), trained once per worker and shared by every test that only reads a run."""
    from test_train import tiny_config

    from fractaljax import train

    workdir = tmp_path_factory.mktemp("tiny_run")
    train.train_and_evaluate(tiny_config(), str(workdir))
    return workdir


# The files that take longest, started first: each runs on one worker (--dist loadfile),
# and one started last would leave the other worker idle at the end. The rest keep their
# collection order. (pyproject.toml passes --no-loadscope-reorder, which would otherwise
# send the files with the most tests first.)
EXPENSIVE_FIRST = (
    "test_notebook.py",
    "test_protocol.py",
    "test_protocol_e2e.py",
    "test_distributed.py",
    "test_sweep.py",
    "test_interop.py",
    "test_bad_input.py",
    "test_reliability.py",
    "test_train.py",
    "test_downstream.py",
    "test_inference.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(EXPENSIVE_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept
