"""Small helpers over ml_collections configs: dotted-path get/set with type checks."""

from __future__ import annotations

import math
import os

import ml_collections

from fractaljax.errors import ConfigError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def preset(name: str) -> str:
    """Path of a config preset shipped in ``configs/``: ``preset('onepfrac')``, or with the
    config's argument, ``preset('onepfrac:mini')`` -> ``.../configs/onepfrac.py:mini``."""
    name, _, arg = name.partition(":")
    return os.path.join(CONFIG_DIR, f"{name}.py") + (f":{arg}" if arg else "")


def block_fields(
    cfg: ml_collections.ConfigDict, defaults: dict, prefix: str, positive_ints=(), note: str = ""
) -> dict:
    """``cfg`` over ``defaults`` as a dict, after checking that it names only known fields
    (those of ``defaults``, and ``every``) and that each of ``positive_ints`` is an integer
    >= 1 (``note`` says why, after the error); ``prefix`` names the block in errors."""
    unknown = sorted(set(cfg) - set(defaults) - {"every"})
    if unknown:
        raise ConfigError(
            f"{prefix}.{unknown[0]}: no such field; the fields are {sorted(defaults)}"
        )
    c = {**defaults, **cfg.to_dict()}
    for name in positive_ints:
        if not isinstance(c[name], int) or c[name] < 1:
            raise ConfigError(f"{prefix}.{name}={c[name]}: must be an integer >= 1{note}")
    return c


def check_finite(config: ml_collections.ConfigDict, prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the first NaN or infinite number in ``config``
    (tuples included): no fractaljax field means anything with one, and range checks written
    as ``lo <= v <= hi`` would let NaN through."""
    for name, v in config.items():
        path = f"{prefix}{name}"
        if isinstance(v, ml_collections.ConfigDict):
            check_finite(v, path + ".")
            continue
        for x in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"{path}={v}: must be a finite number")


def get_field(config: ml_collections.ConfigDict, path: str):
    node = config
    for part in path.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise ConfigError(f"{path}: unknown config field")
        node = node[part]
    return node


def parse_value(path: str, old, text: str):
    """Parse ``text`` as the type of the field's current value ``old``."""
    try:
        if isinstance(old, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(old, int):
            return int(text)
        if isinstance(old, float):
            return float(text)
        return type(old)(text) if old is not None else text
    except ValueError:
        raise ConfigError(f"{path}={text!r}: expected a {type(old).__name__}") from None


def with_field(config: ml_collections.ConfigDict, path: str, value) -> ml_collections.ConfigDict:
    """A copy of ``config`` with the dotted field ``path`` set to ``value``."""
    get_field(config, path)
    new = ml_collections.ConfigDict(config.to_dict())
    new.update_from_flattened_dict({path: value})
    return new


def parse_vary(config: ml_collections.ConfigDict, spec: str) -> tuple[str, list]:
    """``'source.delta=0.001,0.01,0.1'`` -> ``('source.delta', [0.001, 0.01, 0.1])``."""
    if "=" not in spec:
        raise ConfigError(f"{spec}: expected FIELD=V1,V2,... e.g. source.delta=0.01,0.1")
    path, values = spec.split("=", 1)
    old = get_field(config, path)
    vals = [parse_value(path, old, v.strip()) for v in values.split(",") if v.strip()]
    if not vals:
        raise ConfigError(f"{spec}: no values after '='")
    return path, vals
