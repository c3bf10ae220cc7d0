"""Multi-process training with jax.distributed: two processes on localhost (gloo
collectives on CPU, 2 virtual devices each) train one run together; a single process
resumes its checkpoint. Both are compared with a one-process, one-device run."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, run_module, run_modules, xla_devices
from test_train import TINY_FLAGS, _params

from fractaljax import sharding
from fractaljax.errors import ConfigError
from fractaljax.metrics import read_jsonl

# A learning rate large enough that a few steps move the parameters past the tolerance.
FLAGS = [*TINY_FLAGS, "--config.checkpoint_every=3", "--config.log_every=3"]
FLAGS += ["--config.optim.lr=0.1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _assert_close(a, b):
    """Same parameters within float tolerance (summation order differs with the device
    count). The attention key bias is left out: its gradient is exactly zero and Adam turns
    rounding noise into 1e-5 moves (see test_train.test_data_parallel_matches_one_device)."""
    flat = jax.tree_util.tree_flatten_with_path(a)[0]
    for (path, x), y in zip(flat, jax.tree.leaves(b)):
        name = jax.tree_util.keystr(path)
        if "key" in name and "bias" in name:
            continue
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-4, atol=1e-5, err_msg=name)


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))]


@contextlib.contextmanager
def _processes(tmp_path, workdir, *flags, n=2):
    """``n`` processes of one pretrain run on localhost (2 virtual CPU devices each), their
    output in files (a full pipe cannot block one while the other waits in a collective);
    killed on the way out if still running."""
    port = _free_port()
    env = dict(os.environ, **xla_devices(2))
    procs, files = [], []
    try:
        for i in range(n):
            out = open(tmp_path / f"p{i}.out", "w+")
            err = open(tmp_path / f"p{i}.err", "w+")
            files += [out, err]
            cmd = [sys.executable, "-m", "experiments.pretrain", f"--workdir={workdir}",
                   *flags, f"--coordinator_address=localhost:{port}", f"--num_processes={n}",
                   f"--process_id={i}"]  # fmt: skip
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in files:
            f.close()


def _finish(tmp_path, procs, timeout=300):
    """Wait for every process; ``[(stdout, stderr)]``; each must exit 0."""
    outs = []
    for i, p in enumerate(procs):
        p.wait(timeout=timeout)
        out, err = ((tmp_path / f"p{i}.{k}").read_text() for k in ("out", "err"))
        assert p.returncode == 0, err[-3000:]
        outs.append((out, err))
    return outs


def test_two_processes_train_and_one_resumes(tmp_path):
    multi, ref = str(tmp_path / "multi"), str(tmp_path / "ref")
    with _processes(tmp_path, multi, *FLAGS, "--config.total_steps=6") as procs:
        one = run_module("experiments.pretrain", f"--workdir={ref}", *FLAGS,
                         "--config.total_steps=6")  # fmt: skip
        outs = _finish(tmp_path, procs)
    assert one.returncode == 0, one.stderr[-2000:]
    for i, (out, _) in enumerate(outs):
        assert f"jax.distributed: process {i} of 2, 2 of 4 devices here" in out
        assert "4 cpu device(s)" in out
    # Only process 0 writes progress lines and metrics.
    assert "step 3" in outs[0][0] and "step 3" not in outs[1][0]
    got, want = _losses(multi), _losses(ref)
    assert [s for s, _ in got] == [s for s, _ in want] == [3, 6]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-4)
    _assert_close(_params(ref, 6)["params"], _params(multi, 6)["params"])

    # One process (one device) resumes the two-process checkpoint; so does the reference.
    resumes = [
        ("experiments.pretrain", [f"--workdir={w}", *FLAGS, "--config.total_steps=9"], {})
        for w in (multi, ref)
    ]
    for res in run_modules(resumes, str(tmp_path)):  # both at once, from one interpreter
        assert res.returncode == 0, res.stderr[-2000:]
        assert "resumed from" in res.stdout and "1 cpu device(s)" in res.stdout
    assert [s for s, _ in _losses(multi)] == [3, 6, 9]
    a, b = _params(ref, 9), _params(multi, 9)
    assert int(b["step"]) == 9
    _assert_close(a["params"], b["params"])
    _assert_close(a["opt_state"], b["opt_state"])


def test_distributed_flags_must_come_together(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert sharding.initialize_distributed() is False  # one host: a no-op
    assert sharding.initialize_distributed(num_processes=1, process_id=0) is False
    with pytest.raises(ConfigError, match="process_id missing"):
        sharding.initialize_distributed("localhost:1234", 2, None)
    with pytest.raises(ConfigError, match="process_id=2: must be in"):
        sharding.initialize_distributed("localhost:1234", 2, 2)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES='two'"):
        sharding.initialize_distributed("localhost:1234", None, 0)


def test_bad_distributed_flags_exit_2_with_one_line(tmp_path):
    res = run_module("experiments.pretrain", f"--workdir={tmp_path / 'w'}", *TINY_FLAGS,
                     "--num_processes=2", "--process_id=0")  # fmt: skip
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--coordinator_address missing" in lines[0], lines
    assert not (tmp_path / "w").exists()


def test_fsdp_layout_splits_a_vit_b16_and_leaves_small_arrays_replicated():
    """The FSDP rule on ViT-B/16's shapes over 8 devices: nearly every parameter element
    split (the big kernels, along an axis 8 divides), biases and norms replicated."""
    from fractaljax.models import vit

    model = vit.make("B/16", 1000, 224)
    params = jax.eval_shape(model.init, jax.random.key(0), jax.numpy.zeros((1, 224, 224, 3)))
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    split = total = 0
    for path, x in flat:
        spec = sharding.array_spec(x.shape, 8, "fsdp")
        total += x.size
        if spec != sharding.P():
            split += x.size
            axis = list(spec).index("data")
            assert x.shape[axis] % 8 == 0
        else:  # replicated: small, or no axis that 8 divides
            small = x.size < sharding.FSDP_MIN_SIZE
            assert small or all(d % 8 for d in x.shape), jax.tree_util.keystr(path)
    assert split / total > 0.99, split / total
    assert sharding.array_spec((768, 3072), 8, "replicated") == sharding.P()
    assert sharding.array_spec((768, 3072), 1, "fsdp") == sharding.P()
    with pytest.raises(ConfigError, match="param_sharding='zero'"):
        sharding.array_spec((8,), 8, "zero")


def test_a_global_batch_that_does_not_split_is_one_line_exit_2(tmp_path):
    four = xla_devices(4)
    flags = [f"--workdir={tmp_path / 'w'}", *TINY_FLAGS, "--config.batch_size=6"]
    res = run_module("experiments.pretrain", *flags, env=four)
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()
    assert (
        len(line) == 1 and "batch_size=6: the global batch must be a positive multiple" in line[0]
    )
    assert "1.5 images per device" in line[0] and "batch_size=8" in line[0], line


def test_distributed_detects_a_slurm_allocation(tmp_path):
    """``--distributed`` lets JAX read the cluster from the environment; here a one-task
    SLURM allocation on localhost (the coordinator port comes from the job id)."""
    for port in range(65535 - 4095, 65536):  # SLURM's port: job id % 4096 + 61440
        with socket.socket() as s:
            try:
                s.bind(("localhost", port))
                break
            except OSError:
                continue
    slurm = {"SLURM_JOB_ID": str(port - 61440), "SLURM_STEP_NODELIST": "localhost",
             "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}  # fmt: skip
    res = run_module("experiments.pretrain", f"--workdir={tmp_path}", *TINY_FLAGS,
                     "--config.total_steps=2", "--distributed", env=slurm)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "jax.distributed: process 0 of 1" in res.stdout


def test_a_stop_signal_to_one_process_stops_both_at_the_same_step(tmp_path):
    """SIGTERM to process 1 alone: the processes agree on it (every 10 steps), both save
    one checkpoint at the same step and exit 0, instead of one saving while the other waits
    in the next step's all-reduce."""
    workdir = tmp_path / "run"
    flags = [*TINY_FLAGS, "--config.total_steps=100000", "--config.log_every=50",
             "--config.checkpoint_every=100000"]  # fmt: skip
    with _processes(tmp_path, str(workdir), *flags) as procs:
        deadline = time.time() + 240
        while not (workdir / "metrics.jsonl").exists():  # training is under way
            assert time.time() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.5)
        procs[1].send_signal(signal.SIGTERM)
        outs = _finish(tmp_path, procs, timeout=120)
    assert "stopped: SIGTERM at step" in outs[1][0]
    assert "stopped: a stop signal to another process at step" in outs[0][0]
    steps = [int(o.split("at step ")[1].split(":")[0]) for o, _ in outs]
    assert steps[0] == steps[1] and steps[0] % 10 == 0, steps
    assert sorted(int(d) for d in os.listdir(workdir / "checkpoints")) == [steps[0]]


def test_other_commands_refuse_the_multi_process_flags(tmp_path):
    """Only pretrain joins processes; the others would write their outputs from each."""
    res = run_module("experiments.probe", f"--pretrained={tmp_path}", "--num_processes=2")
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: --num_processes: this command runs in one process"), line
