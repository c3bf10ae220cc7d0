"""The same train steps on several JAX releases, interleaved on one machine.

  python benchmarks/jax_versions.py [--versions 0.7.2,0.8.2,0.9.2] [--rounds 3]
      [--venvs .bench_venvs] [--step_args "--variant Ti/16 --size 224 --batch 32"]

Each listed release gets a virtual environment that sees this interpreter's packages
(``--system-site-packages``) with ``jax`` and ``jaxlib`` of that release installed over them,
and the newest ``flax``, ``optax``, ``orbax-checkpoint`` and ``chex`` that pip finds
compatible (pip's index: no download from anywhere else). The interpreter running this
script is the reference ("this"). Every round runs ``benchmarks/step_bench.py`` (the plain
Flax step and fractaljax's full step, one process each) once per release, in turn, so that
a drifting machine spreads its drift over all of them; each release keeps its own JAX
compilation cache, so only the first round compiles. Prints, per release, the median over
rounds of each step's img/s and its ratio to this interpreter's, measured in the same run.
CPU only: the environments get ``jaxlib`` alone, no accelerator plugin.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^\s+(plain Flax|fj full)\s.*?([\d.]+) img/s$", re.M)


def venv_python(root: str, version: str) -> str:
    """The interpreter of ``version``'s environment, made on first use."""
    env = os.path.join(root, f"jax{version}")
    python = os.path.join(env, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", env], check=True)
        pins = [
            f"jax=={version}",
            f"jaxlib=={version}",
            "flax",
            "optax",
            "orbax-checkpoint",
            "chex",
        ]
        subprocess.run([python, "-m", "pip", "install", "-q", *pins], check=True)
    return python


def run_once(python: str, step_args: list[str], cache: str) -> dict[str, float]:
    """img/s of the plain Flax and full steps from one step_bench.py process."""
    env = dict(os.environ, PYTHONPATH=REPO, JAX_COMPILATION_CACHE_DIR=cache)
    cmd = [python, os.path.join(REPO, "benchmarks", "step_bench.py"), *step_args]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{python}: step_bench.py failed:\n{out.stderr[-2000:]}")
    found = dict(LINE.findall(out.stdout))
    return {name: float(v) for name, v in found.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--versions", default="0.7.2,0.8.2,0.9.2", help="comma-separated releases")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--venvs", default=os.path.join(REPO, ".bench_venvs"))
    p.add_argument(
        "--step_args",
        default="--variant Ti/16 --size 224 --batch 32 --steps 3 --rounds 1",
        help="arguments of each step_bench.py run (--skip model,timm is added)",
    )
    args = p.parse_args()
    pythons = {"this": sys.executable}
    for v in filter(None, args.versions.split(",")):
        pythons[v] = venv_python(args.venvs, v)
    step_args = [*shlex.split(args.step_args), "--skip", "model,timm"]
    results: dict[str, list[dict[str, float]]] = {v: [] for v in pythons}
    for r in range(args.rounds):
        for v, python in pythons.items():
            cache = os.path.join(args.venvs, "cache", v)
            results[v].append(run_once(python, step_args, cache))
            print(f"round {r + 1} jax {v}: {results[v][-1]}", flush=True)
    print(f"\nimg/s, median of {args.rounds} interleaved rounds ({' '.join(step_args)}):")
    print(f"{'jax':<14} {'plain Flax':>11} {'ratio':>6} {'fj full':>9} {'ratio':>6}")
    ref = {k: np.median([row[k] for row in results["this"]]) for k in results["this"][0]}
    for v, rows in results.items():
        med = {k: np.median([row[k] for row in rows]) for k in rows[0]}
        name = f"{jax.__version__} (this)" if v == "this" else v
        print(
            f"{name:<14} {med['plain Flax']:11.2f} {med['plain Flax'] / ref['plain Flax']:6.2f}"
            f" {med['fj full']:9.2f} {med['fj full'] / ref['fj full']:6.2f}"
        )


if __name__ == "__main__":
    main()
