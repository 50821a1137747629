"""Checks of the experiments' JSON-valued config fields (a training preset, a small dict of knobs).

A field declares what it holds with ``help_field(..., json=kind)``; :func:`check_json_fields`
(called by :func:`~jaxdyn.experiments._common.core.make_config`, so before any work and before
``--out`` is created) raises ``ValueError`` for an unknown or misspelt key (naming the valid keys,
with the closest one), a value of the wrong JSON type, or a training key that the experiment sets
from a field of its own (``seed``, ``width``, … are ``--seeds``, ``--width``, …: inside the dict they
would be overridden, or would override the recorded config, silently).

Kinds: ``"train"`` (``"quick"`` or a dict of :class:`~jaxdyn.training.TrainConfig` fields but
``model``), ``"train_overrides"`` (the same dict, or ``null``), or a mapping ``{key: type}`` (a
dict with exactly those keys, each of that type).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Iterable, Mapping

from jaxdyn.training.config import TrainConfig

__all__ = ["TRAIN_KEYS", "did_you_mean", "check_keys", "check_train_kwargs", "check_json_fields"]

#: the keys of a training preset: :class:`TrainConfig`'s fields but ``model``
TRAIN_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "model")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(what: str, d: Any, valid: Iterable[str], *, required: bool = False) -> None:
    """``d`` is a dict whose keys are among ``valid`` (all of them with ``required``); else a
    ``ValueError`` naming the valid keys and the closest one to an unknown key."""
    valid = list(valid)
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a JSON object with keys among {', '.join(valid)}; got {d!r}")
    for k in d:
        if k not in valid:
            raise ValueError(f"{what}: unknown key {k!r}{did_you_mean(k, valid)}; valid keys: {', '.join(valid)}")
    missing = [k for k in valid if k not in d]
    if required and missing:
        raise ValueError(f"{what}: missing key(s) {', '.join(missing)}; give all of {', '.join(valid)}")


def _type_ok(v: Any, hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Union:
        return any(_type_ok(v, a) for a in typing.get_args(hint))
    if hint is type(None):
        return v is None
    if isinstance(v, bool):  # JSON true/false is no number
        return hint is bool
    if hint is float:
        return isinstance(v, (int, float))
    if hint in (int, str):
        return isinstance(v, hint)
    if hint is tuple or typing.get_origin(hint) is tuple:
        return isinstance(v, (list, tuple))
    return True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    names = {type(None): "null", float: "a number", int: "an integer", str: "a string", bool: "true/false"}
    return names.get(hint, "a list" if hint is tuple or typing.get_origin(hint) is tuple else str(hint))


def _check_types(what: str, d: Mapping[str, Any], hints: Mapping[str, Any]) -> None:
    for k, v in d.items():
        if k in hints and not _type_ok(v, hints[k]):
            raise ValueError(f"{what}: {k} must be {_type_name(hints[k])}, got {v!r}")


def check_train_kwargs(what: str, kw: Any, *, own: Mapping[str, str] = {}) -> None:
    """``kw`` is a dict of training arguments (:data:`TRAIN_KEYS`, each of its :class:`TrainConfig`
    type); ``own``: key -> the flag that sets it instead (a ``ValueError`` if ``kw`` has it)."""
    for k in kw if isinstance(kw, dict) else ():
        if k in own:
            raise ValueError(f"{what}: {k!r} is set by {own[k]}, not inside {what}")
    check_keys(what, kw, [k for k in TRAIN_KEYS if k not in own])
    _check_types(what, kw, typing.get_type_hints(TrainConfig))


def check_json_fields(cfg) -> None:
    """Check every field of the config dataclass ``cfg`` declared with ``help_field(json=...)``."""
    names = {f.name for f in dataclasses.fields(cfg)}
    own = {k: f"--{k.replace('_', '-')}" for k in TRAIN_KEYS if k in names}
    if "seeds" in names:  # one network per seed: the training seed is each of --seeds
        own["seed"] = "--seeds"
    for f in dataclasses.fields(cfg):
        kind, v = f.metadata.get("json"), getattr(cfg, f.name)
        if kind is None or (kind == "train" and v == "quick") or (kind == "train_overrides" and v is None):
            continue
        if kind in ("train", "train_overrides"):
            if kind == "train" and not isinstance(v, dict):
                raise ValueError(f"{f.name} must be 'quick' or a JSON object of training arguments "
                                 f"({', '.join(TRAIN_KEYS)}); got {v!r}")
            check_train_kwargs(f.name, v, own=own)
        else:
            check_keys(f.name, v, list(kind), required=True)
            _check_types(f.name, v, kind)
