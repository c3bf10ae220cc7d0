"""Every entry point answers --help (and its variants) with its docstring and flags, exit 0."""

import ast
import os
import subprocess
import sys

from conftest import REPO, run_modules

ENTRY_POINTS = sorted(
    f[:-3]
    for f in os.listdir(os.path.join(REPO, "experiments"))
    if f.endswith(".py") and f[0] != "_"
)


def _docstring(module: str) -> str:
    # Read, not imported: importing two entry points would define their flags twice.
    with open(os.path.join(REPO, "experiments", f"{module}.py")) as f:
        return ast.get_docstring(ast.parse(f.read())).strip()


def test_every_entry_point_answers_help(tmp_path):
    assert len(ENTRY_POINTS) >= 12, ENTRY_POINTS
    # Forked from one interpreter (conftest.run_modules); the next test starts a real one.
    commands = {m: (m, "--help") for m in ENTRY_POINTS}
    commands["probe -h"] = ("probe", "-h")
    commands["sweep --helpfull"] = ("sweep", "--helpfull")
    commands["pretrain --helpshort"] = ("pretrain", "--helpshort")
    results = run_modules(
        [(f"experiments.{m}", [flag], {}) for m, flag in commands.values()], str(tmp_path)
    )
    outs = {}
    for name, res in zip(commands, results):
        outs[name] = out, err = res.stdout, res.stderr
        assert res.returncode == 0, (name, err[-2000:])
        module = name.split()[0]
        doc = _docstring(module)
        assert out.startswith(doc.splitlines()[0]), (name, out[:300])
        assert "\nflags:\n  --" in out, (name, out[-500:])
    out = outs["sweep --helpfull"][0]
    # --helpfull lists the config's fields at their defaults, settable as shown.
    assert "--config.sweep.seeds=(0, 1, 2)" in out and "--config.pretrain.source.delta=0.1" in out


def test_help_names_required_flags_and_the_multiprocess_ones():
    out = subprocess.run(
        [sys.executable, "-m", "experiments.pretrain", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert "--workdir: Run directory (resumed if it has checkpoints). (required)" in out
    assert "multi-process flags" in out and "--coordinator_address" in out


def test_library_errors_name_fields_and_the_entry_points_add_the_flags():
    """No error raised in fractaljax/ names a command-line flag (a library user has none):
    it names the config field, argument or directory, and experiments/_cli.flag_wording
    turns those into flags (pinned end to end by test_bad_input's needles)."""
    import glob

    offenders = []
    for path in glob.glob(os.path.join(REPO, "fractaljax", "**", "*.py"), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                text = "".join(
                    n.value
                    for n in ast.walk(node.exc)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                )
                if " --" in f" {text}" or "=--" in text:
                    offenders.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {text[:80]}")
    assert not offenders, "\n".join(offenders)
