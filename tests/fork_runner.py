"""Run many ``python -m module args`` commands from one interpreter that imported the heavy
libraries once: each command runs in a forked child, with its own argv, environment, flags
and output files, and exits with its own status, as its own process would, without a Python
and JAX start-up each (tests/test_bad_input.py runs ~40 commands that fail in their first
second).

  python tests/fork_runner.py < commands.json > statuses.json

stdin: a JSON list of ``{"module", "args", "env", "stdout", "stderr"}`` (output paths);
stdout: the exit statuses, in order. Safe because nothing here starts JAX's backends (no
threads to lose in the fork); each child starts its own, reading its own ``XLA_FLAGS``.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback

# What every entry point imports; absl flags are defined by the experiments modules, which
# each child imports afresh as __main__.
PRELOAD = ("fractaljax.train", "fractaljax.finetune", "fractaljax.sweeps", "experiments._cli")


def _child(cmd: dict) -> None:
    out = os.open(cmd["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(cmd["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.environ.update(cmd.get("env") or {})
    sys.argv = [cmd["module"], *cmd["args"]]
    code = 1
    try:
        runpy.run_module(cmd["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:  # what the interpreter does with it
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    from jax._src import xla_bridge

    for name in PRELOAD:
        __import__(name)
    assert not xla_bridge.backends_are_initialized(), "a preloaded module started JAX"
    commands = json.load(sys.stdin)
    sys.stdout.flush()
    sys.stderr.flush()
    parallel = max(os.cpu_count() or 2, 2)
    statuses: list[int | None] = [None] * len(commands)
    running: dict[int, int] = {}  # pid -> index
    for i, cmd in enumerate(commands):
        while len(running) >= parallel:
            pid, status = os.wait()
            statuses[running.pop(pid)] = os.waitstatus_to_exitcode(status)
        pid = os.fork()
        if pid == 0:
            _child(cmd)
        running[pid] = i
    while running:
        pid, status = os.wait()
        statuses[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    json.dump(statuses, sys.stdout)


if __name__ == "__main__":
    main()
