"""Bad input across every command: exit status 2, one line ``error: ...`` naming the field or
file (and the fix), no traceback, and nothing written or changed in the run directory.

The cases run as subprocesses (a CLI's exit status and stderr are what is pinned), all at
once on a thread pool, so the table costs about one JAX start-up per core.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_module, run_modules, xla_devices
from test_train import TINY_FLAGS, tiny_config

from fractaljax import train

RENDER = [
    "--config.render.image_size=32",
    "--config.render.walkers=64",
    "--config.render.steps=16",
    "--config.render.pad=1",
    "--config.source.num_classes=20",
]
TWO_DEVICES = xla_devices(2)

# (id, module, args, needle, env); {new} is a directory that must not appear, {pre} a finished
# tiny pre-training that must not change, {file} a plain file, {syntax} a config with a
# syntax error.
CASES = [
    # experiments.pretrain: config values
    ("image_size", "pretrain", ["--config.render.image_size=18"], "does not divide"),
    ("batch_size", "pretrain", ["--config.batch_size=0"], "--config.batch_size=0: must be"),
    ("seed", "pretrain", ["--config.seed=-1"], "--config.seed=-1: must be an integer in"),
    ("variant", "pretrain", ["--config.model.variant=giant/16"], "model.variant"),
    ("dtype", "pretrain", ["--config.model.dtype=float8"], "model.dtype"),
    ("lr", "pretrain", ["--config.optim.lr=-1"], "optim.lr"),
    ("lr_nan", "pretrain", ["--config.optim.lr=nan"], "--config.optim.lr=nan: must be a finite"),
    ("delta_nan", "pretrain", ["--config.source.delta=nan"], "source.delta=nan"),
    ("delta_inf", "pretrain", ["--config.source.delta=inf"], "source.delta=inf"),
    ("hflip", "pretrain", ["--config.augment.hflip=1.5"], "augment.hflip"),
    ("interp", "pretrain", ["--config.augment.interpolation=lanczos"], "interpolation"),
    ("randaug", "pretrain", ["--config.augment.randaugment=rand-m9-inc0"], "inc0"),
    ("per_image", "pretrain", ["--config.augment.per_image=scan"], "augment.per_image='scan'"),
    ("crop", "pretrain", ["--config.augment.crop_scale=(0.5,)"], "augment.crop_scale"),
    ("decay", "pretrain", ["--config.optim.decay_rule=none"], "optim.decay_rule"),
    ("unknown_field", "pretrain", ["--config.nonsense=1"], "nonsense"),
    ("near_field", "pretrain", ["--config.source.delt=0.1"],
     "--config.source.delt: unknown field 'delt' in config.source; did you mean 'delta'"),
    ("labels", "pretrain", ["--config.source.labels=shuffled"], "source.labels='shuffled'"),
    ("source_name", "pretrain", ["--config.source.name=imagenet"], "source.name"),
    ("sigma", "pretrain", ["--config.source.sigma=7.0"], "source.sigma"),
    ("patch", "pretrain", ["--config.render.patch=blur"], "render.patch"),
    ("data_mode", "pretrain", ["--config.source.data=cached"], "source.data"),
    ("evals_every", "pretrain", ["--config.evals.task.every=3"], "evals.task.every=3"),
    ("evals_no_data", "pretrain", ["--config.evals.probe.every=5",
                                   "--config.evals.probe.dataset=cifar10",
                                   "--config.evals.probe.data_dir={new}_tfds"], "evals.probe"),
    # experiments.pretrain: files, flags, devices, resume
    ("no_config", "pretrain", ["--config=configs/no_such_preset.py"], "--config"),
    ("syntax", "pretrain", ["--config={syntax}"], "syntax error"),
    ("config_arg", "pretrain", ["--config=configs/fractaldb.py:huge"],
     "--config=configs/fractaldb.py:huge: ValueError: config argument 'huge'"),
    ("image_path", "pretrain", ["--config=configs/real_image.py:mini",
                                "--config.source.image_path=no_such.jpg"], "no_such.jpg"),
    ("unwritable", "pretrain", ["--workdir={file}/run"], "--workdir="),
    ("positional", "pretrain", ["extra"], "unexpected arguments"),
    ("unknown_flag", "pretrain", ["--nope=1"], "nope"),
    ("devices", "pretrain", ["--config.batch_size=15"],
     "device count (2 devices; that is 7.5 images per device)",
     TWO_DEVICES),
    ("resume_changed", "pretrain", ["--workdir={pre}", "--config.source.delta=0.3"],
     "--allow_config_change"),
    ("resume_model", "pretrain", ["--workdir={pre}", "--config.source.num_classes=12"],
     "new --workdir"),
    # experiments.render
    ("render_n_maps", "render", [*RENDER, "--config.source.n_maps=0"], "source.n_maps"),
    ("render_vary", "render", [*RENDER, "--vary=source.delta"], "--vary=source.delta: expected"),
    ("render_shown", "render", [*RENDER, "--num_shown=0"], "--num_shown"),
    ("render_fill", "render", [*RENDER, "--config.source.min_fill=0.99",
                               "--config.source.max_tries=2"], "source.min_fill"),
    # experiments.probe / finetune
    ("probe_not_a_run", "probe", ["--pretrained={new}"], "--pretrained="),
    ("probe_no_data", "probe", ["--pretrained={pre}", "--out={new}",
                                "--config.downstream.dataset=fashion_mnist",
                                "--config.downstream.data_dir={new}/tfds",
                                "--config.downstream.source_dir={new}/idx"],
     "set --config.downstream.source_dir to a folder"),
    ("probe_dataset", "probe", ["--pretrained={pre}", "--out={new}",
                                "--config.downstream.dataset=no_such_set",
                                "--config.downstream.data_dir={new}/tfds"], "no_such_set"),
    ("finetune_not_a_run", "finetune", ["--pretrained={new}", "--workdir={new}/ft"],
     "config.json"),
    ("finetune_lr", "finetune", ["--pretrained={pre}", "--workdir={new}",
                                 "--config.optim.lr=inf"], "optim.lr=inf"),
    ("probe_val_size", "probe", ["--pretrained={pre}", "--out={new}",
                                 "--config.downstream.dataset=digits",
                                 "--config.downstream.data_dir={new}_tfds",
                                 "--config.downstream.val_size=99999"], "downstream.val_size"),
    # experiments.sweep
    ("sweep_field", "sweep", ["--workdir={new}", "--config.sweep.field=source.nope"],
     "source.nope"),
    ("sweep_source", "sweep", ["--workdir={new}", "--config.sweep.field=source",
                               "--config.sweep.grid=('nope',)"], "configs/nope.py"),
    # A pre-training field checked before any point (a neutral one leaves the keys as they are).
    ("sweep_pretrain", "sweep", ["--workdir={new}", "--config.pretrain.augment.per_image=scan"],
     "--config.pretrain.augment.per_image='scan'"),
    # experiments.search
    ("search_variant", "search", ["--workdir={new}", "--config.search.variants_run=('Z',)"],
     "no variant 'Z'"),
]  # fmt: skip


# One command of each kind of start-up (JAX only; TFDS too; the sweep's imports) also runs as
# a process of its own.
REAL_PROCESS = ("batch_size", "probe_dataset", "sweep_field")


def _args(module: str, args: list[str], paths: dict) -> list[str]:
    args = [a.format(**paths) for a in args]
    if module == "pretrain":
        given = any(a.startswith("--workdir=") for a in args)
        tiny = [] if any(a.startswith("--config=") for a in args) else TINY_FLAGS
        return [*tiny, *args, *([] if given else [f"--workdir={paths['new']}"])]
    if module == "render":
        return [f"--out={paths['new']}", *args]
    return args


def _listing(root) -> dict:
    return {
        os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(root)
        for f in files
    }


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    pre = root / "pre"
    train.train_and_evaluate(tiny_config(total_steps=5), str(pre))
    (root / "file").write_text("not a directory")
    (root / "syntax.py").write_text("def get_config(:\n")
    before = _listing(pre)

    def command(case):
        name, module, args, needle, *env = case
        paths = {
            "pre": pre,
            "new": root / name,
            "file": root / "file",
            "syntax": root / "syntax.py",
        }
        return f"experiments.{module}", _args(module, args, paths), env[0] if env else {}

    # Forked from one interpreter (conftest.run_modules); the commands of REAL_PROCESS also
    # as processes of their own, which would show what an interpreter's start-up and the
    # imports print (a warning on stderr breaks "one line") that a fork does not repeat.
    commands = [command(c) for c in CASES]
    results = run_modules(commands, str(root))
    done = {c[0]: (res, root / c[0]) for c, res in zip(CASES, results)}
    real = [c for c in CASES if c[0] in REAL_PROCESS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = pool.map(lambda cmd: run_module(cmd[0], *cmd[1], env=cmd[2]), map(command, real))
        done.update({f"{c[0]}[process]": (res, root / c[0]) for c, res in zip(real, procs)})
    return done, before, _listing(pre)


@pytest.mark.parametrize(
    "case,key",
    [(c, c[0]) for c in CASES] + [(c, f"{c[0]}[process]") for c in CASES if c[0] in REAL_PROCESS],
    ids=[c[0] for c in CASES] + [f"{c[0]}-process" for c in CASES if c[0] in REAL_PROCESS],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(outcomes, case, key):
    done, before, after = outcomes
    res, new = done[key]
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert case[3] in lines[0], lines
    assert not new.exists(), sorted(os.listdir(new))


def test_the_finished_run_is_untouched(outcomes):
    _, before, after = outcomes
    assert after == before


def test_the_table_covers_every_command():
    assert len(CASES) >= 30
    assert {c[1] for c in CASES} == {"pretrain", "render", "probe", "finetune", "sweep", "search"}
