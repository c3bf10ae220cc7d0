"""Shared entry point for ``python -m experiments.<name>``: flags, and errors as one line.

Bad input (an unknown or out-of-range config field, a bad flag, a missing file) ends the
program with one line on stderr, ``error: <what> ...<fix>``, and exit status 2, instead of
a stack trace. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from absl import flags

from fractaljax import config_utils, sharding
from fractaljax.errors import EXIT_BAD_INPUT, Preempted, UserError

# Multi-process runs: defined for every experiment, taken by those run with
# run(multiprocess=True) (pretrain), refused by the others; see fractaljax.sharding.
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 in a multi-process run (default: $JAX_COORDINATOR_ADDRESS).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in a multi-process run (default: $JAX_NUM_PROCESSES)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index in [0, num_processes) (default: $JAX_PROCESS_ID)."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Join a multi-process run whose processes JAX detects (TPU pod, SLURM, Open MPI).",
)


# Library messages name what the library knows: config fields (``optim.lr``), arguments
# (``allow_changes=True``) and directories, at the start of the message. A command says how
# to set each on its command line (:func:`flag_wording`).
_ARGUMENT_FLAGS = (
    (r"\ballow_changes=True\b", "--allow_config_change"),
    (r"\bauto=True\b", "--distributed"),
    (r"\ba new workdir\b", "a new --workdir"),
    (r"(?<![\w-])(coordinator_address|num_processes|process_id)\b", r"--\1"),
)
# A dotted name that a message starts with (the bad field) or that it tells the user to set:
# a config field, if the config has it (examples inside a value stay as they are).
_DOTTED = re.compile(
    r"(^|\b(?:set|lower|raise|use) )([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)(?![\w./-])"
)
# An undotted field that a message starts with, ``name=value``: a top-level config field.
_TOP_FIELD = re.compile(r"^([a-z_][a-z0-9_]*)(?==)")


def _config_flag_of(field: str, in_blocks: bool = True) -> str | None:
    """``--config.<field>`` where a config flag of this command has ``field`` (directly, or
    with ``in_blocks`` in one of its blocks: a sweep config's ``pretrain``/``finetune``),
    else None."""
    for name in sorted(_config_flags):
        try:
            config = flags.FLAGS[name].value
        except Exception:  # not parsed, or a config file that failed to load
            continue
        if not isinstance(config, ml_collections.ConfigDict):
            continue
        blocks = [""] + [
            f"{k}."
            for k, v in config.items()
            if in_blocks and isinstance(v, ml_collections.ConfigDict)
        ]
        for block in blocks:
            try:
                config_utils.get_field(config, block + field)
            except UserError:
                continue
            return f"--{name}.{block}{field}"
    return None


def flag_wording(message: str) -> str:
    """A library message in this command's words: a message about a directory or value that
    a flag gave (it starts with it) names that flag (``runs/x: no config.json`` ->
    ``--pretrained=runs/x: ...``), config fields become ``--config.<field>`` and library
    arguments their flags (``allow_changes=True`` -> ``--allow_config_change``)."""
    for flag in flags.FLAGS.get_flags_for_module(sys.modules["__main__"]):
        value = flag.value if flags.FLAGS.is_parsed() else None
        if isinstance(value, str) and value and re.match(rf"{re.escape(value)}[:\s]", message):
            message = f"--{flag.name}={message}"
            break
    for pattern, flag in _ARGUMENT_FLAGS:
        message = re.sub(pattern, flag, message)
    message = _TOP_FIELD.sub(lambda m: _config_flag_of(m.group(1), False) or m.group(1), message)
    return _DOTTED.sub(lambda m: m.group(1) + (_config_flag_of(m.group(2)) or m.group(2)), message)


def fail(message: str) -> None:
    """Print ``error: message`` (one line) to stderr and exit with status 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    _exit(EXIT_BAD_INPUT)


def _exit(status: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave a multi-process run cleanly (os._exit skips the atexit hook that would).
    sharding.shutdown_distributed()
    # os._exit, not sys.exit: background threads of orbax/tensorstore would otherwise print
    # tracebacks at interpreter shutdown. Callers close their checkpoints before failing.
    os._exit(status)


def _load_config_file(spec: str) -> ml_collections.ConfigDict | None:
    """The config of ``path.py[:arg]``, or None if it cannot be loaded."""
    import importlib.util

    path, _, arg = spec.partition(":")
    try:
        module_spec = importlib.util.spec_from_file_location("_config_for_error", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.get_config(*([arg] if arg else []))
    except Exception:
        return None


def _unknown_field(argv: Sequence[str]) -> str | None:
    """``--config.a.b=v: unknown field 'b' in config.a; did you mean ...`` for the first
    override whose path the config file lacks, or None if none can be found."""
    import difflib

    specs = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    spec = specs[-1] if specs else _config_defaults.get("config")
    config = _load_config_file(spec) if spec else None
    if config is None:
        return None
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0].split(".")
        node, where = config, "config"
        for name in path:
            if not isinstance(node, ml_collections.ConfigDict):
                return f"{arg}: {where} is a value ({node!r}), it has no field {name!r}"
            if name not in node:
                close = difflib.get_close_matches(name, list(node.keys()), n=3, cutoff=0.5)
                hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
                return (
                    f"{arg.split('=')[0]}: unknown field {name!r} in {where}; {hint}"
                    f"its fields: {', '.join(node.keys())} (all: --helpfull)"
                )
            node, where = node[name], f"{where}.{name}"
    return None


def _config_file_error(msg: str) -> str:
    """The exception a config file raised, from ml_collections' message that embeds its
    whole traceback: its last line, e.g. ``ValueError: config argument 'tiny': ...``."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    tail = [ln for ln in lines if ln.split(":")[0].endswith(("Error", "Exception"))]
    return tail[-1] if tail else " ".join(msg.split())


def _config_error(e: Exception, argv: Sequence[str]) -> str:
    """One line for a failure to load a config file or apply a ``--config.x=y`` override."""
    msg = str(e).strip().strip("\"'")
    if isinstance(e, (KeyError, AttributeError)):
        found = _unknown_field(argv)
        if found:
            return found
        missing = msg.split("'")[1] if "'" in msg else msg.split()[0]
        return f"unknown config field {missing!r}; every field: --helpfull"
    if isinstance(e, OSError) and "Failed loading config file" in msg:
        path = [ln.strip() for ln in msg.splitlines() if ln.strip().endswith(".py")]
        return f"--config: cannot load {path[0] if path else msg.splitlines()[0]} (no such file?)"
    return f"bad config: {_config_file_error(msg)}"


def define_config(preset: str, help_text: str = "Config file (ml_collections).") -> Any:
    """``--config`` (a config file, default ``configs/<preset>.py``) with ``--config.x=y``.

    ml_collections applies ``--config.x=y`` overrides of the default file as soon as the
    flag is defined, so a bad override is reported from here, as one line.
    """
    from ml_collections import config_flags

    _config_flags.add("config")
    _config_defaults["config"] = config_utils.preset(preset)
    try:
        return config_flags.DEFINE_config_file(
            "config", config_utils.preset(preset), help_text, lock_config=True
        )
    except (OSError, KeyError, AttributeError, TypeError, ValueError) as e:
        fail(_config_error(e, sys.argv))


HELP_FLAGS = {"-h": "short", "--help": "short", "-help": "short", "--helpshort": "short",
              "-helpshort": "short", "--helpfull": "full", "-helpfull": "full"}  # fmt: skip


def _flag_line(flag) -> str:
    default = "required" if flag.default is None and flag.name in _required_flags() else (
        f"default: {flag.default_as_str or repr(flag.default)}"
    )  # fmt: skip
    text = " ".join(str(flag.help or "").split())
    return f"  --{flag.name}: {text} ({default})"


def _required_flags() -> set[str]:
    # absl marks required flags with a validator whose message names the flag.
    names = set()
    for flag in flags.FLAGS._flags().values():
        for v in getattr(flag, "validators", ()):
            if "must have a value other than None" in str(getattr(v, "message", "")):
                names.add(flag.name)
    return names


def _config_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    lines = []
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            lines += _config_fields(value, f"{prefix}{name}.")
        else:
            lines.append(f"  --config.{prefix}{name}={value!r}")
    return lines


def print_help(kind: str, multiprocess: bool) -> None:
    """What ``--help`` prints: the command's docstring, its flags (with ``--helpfull`` also
    every field of its config files, at their defaults), to stdout."""
    main_module = sys.modules["__main__"]
    print((main_module.__doc__ or "").strip() + "\n")
    own = list(flags.FLAGS.get_flags_for_module(main_module))
    shared = list(flags.FLAGS.get_flags_for_module(__name__))
    configs = [f for f in shared if f.name in _config_flags]
    process = [f for f in shared if f.name not in _config_flags]
    print("flags:")
    for f in configs + own:
        print(_flag_line(f))
    if multiprocess:
        print("multi-process flags (docs/scaling.md):")
        for f in process:
            print(_flag_line(f))
    for f in configs:
        if kind == "full":
            print(f"\nfields of --{f.name} ({f.default}), set with --{f.name}.FIELD=VALUE:")
            try:
                print("\n".join(_config_fields(f.value)))
            except Exception as e:  # a help page must not fail on a broken config
                print(f"  (cannot load it: {' '.join(str(e).split())})")
        else:
            print(f"\nevery field of --{f.name}: --helpfull")


_config_flags: set[str] = set()
_config_defaults: dict[str, str] = {}  # flag name -> its default config file


def run(
    main: Callable[[Sequence[str]], None],
    argv: Sequence[str] | None = None,
    *,
    multiprocess: bool = False,
) -> None:
    """Parse absl flags (ml_collections config flags included) and call ``main(argv)``.

    ``multiprocess``: the command can run as one of several processes (the multi-process
    flags join them, :func:`fractaljax.sharding.initialize_distributed`); other commands
    refuse those flags, since they write their outputs from every process.
    """
    argv = list(sys.argv if argv is None else argv)
    asked = [HELP_FLAGS[a] for a in argv[1:] if a in HELP_FLAGS]
    if asked:
        print_help("full" if "full" in asked else "short", multiprocess)
        _exit(0)
    try:
        rest = flags.FLAGS(argv)
        # Config files load lazily: load them now so their errors are reported here.
        for name in list(flags.FLAGS):
            value = flags.FLAGS[name].value
            getattr(value, "to_dict", None)  # a lazy config file loads on first access
            if isinstance(value, ml_collections.ConfigDict):
                config_utils.check_finite(value)
    except flags.Error as e:
        text = str(e)
        if "Error whilst parsing config file" in text:  # raised inside the config file
            spec = text.split(": Error whilst", 1)[0].replace("flag ", "", 1)
            fail(f"{spec}: {_config_file_error(text)}")
        fail(f"{text} (see --help)")
    except UserError as e:
        fail(flag_wording(str(e)))
    except SyntaxError as e:
        fail(f"--config {e.filename}, line {e.lineno}: syntax error ({e.msg}); fix the file")
    except (OSError, KeyError, AttributeError, TypeError, ValueError) as e:
        fail(_config_error(e, argv))
    if len(rest) > 1:
        fail(f"unexpected arguments {rest[1:]}; flags take the form --name=value (see --help)")
    flag_values = (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID, _DISTRIBUTED)
    given = [f.name for f in flag_values if f.value not in (None, False)]
    if given and not multiprocess:
        fail(
            f"--{given[0]}: this command runs in one process; multi-process runs are for "
            "python -m experiments.pretrain (this one reads its checkpoints from any layout)"
        )
    try:
        if multiprocess:
            sharding.initialize_distributed(
                _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _DISTRIBUTED.value
            )
        main(rest)
    except UserError as e:  # every bad-input type of fractaljax.errors
        fail(flag_wording(str(e)))
    except Preempted as e:  # a checkpoint is saved: a clean stop, not a failure
        print(f"stopped: {e}", flush=True)
        _exit(0)
