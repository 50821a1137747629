"""The command line's text: docstrings as plain text, the presets' values in each flag's help, a help
formatter that never breaks a value, and "did you mean" suggestions. Imports neither jax nor any
experiment (the top-level ``--help`` uses it).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import re
import textwrap
from typing import Any, Iterable, Mapping

__all__ = ["plain", "format_value", "preset_note", "resolved_presets", "suggest", "HelpFormatter"]

#: the scales a flag's help shows (``tiny`` is the tests' hidden scale)
SHOWN_SCALES = ("quick", "full")


def plain(rst: str) -> str:
    """reStructuredText inline markup as plain text: ``x`` -> x, :func:`~a.b.c` -> c,
    :mod:`a.b` -> a.b, *x* -> x."""
    s = re.sub(r":[a-z]+:`(~?)([^`]*)`", lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), rst)
    s = re.sub(r"``([^`]*)``", r"\1", s)
    s = re.sub(r"`([^`]*)`", r"\1", s)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\1", s)


def format_value(v: Any, *, as_json: bool = False) -> str:
    """``v`` as the flag takes it: a comma list for a tuple, JSON for a JSON-valued flag (a string
    bare: such a flag takes a bare word)."""
    if isinstance(v, str):
        return v
    if as_json or isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "), default=list)
    if isinstance(v, (tuple, list)):
        return ",".join(format_value(x) for x in v)
    if v is None:
        return "none"
    return str(v)


def resolved_presets(config_cls, presets: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{scale: {field: value}}``: each shown scale's preset over the dataclass defaults (what
    ``make_config(config_cls, presets, scale, {})`` holds)."""
    out = {}
    for scale in SHOWN_SCALES:
        if scale not in presets:
            continue
        vals = {}
        for f in dataclasses.fields(config_cls):
            if f.name in presets[scale]:
                vals[f.name] = presets[scale][f.name]
            elif f.default is not dataclasses.MISSING:
                vals[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                vals[f.name] = f.default_factory()  # type: ignore[misc]
        out[scale] = vals
    return out


def preset_note(values: Mapping[str, Any], *, as_json: bool = False) -> str:
    """``"quick: 16, full: 1000"`` (``"quick and full: 0"`` when equal) from ``{scale: value}``."""
    shown = {s: format_value(v, as_json=as_json) for s, v in values.items()}
    if len(set(shown.values())) == 1 and len(shown) > 1:
        return f"{' and '.join(shown)}: {next(iter(shown.values()))}"
    return ", ".join(f"{s}: {v}" for s, v in shown.items())


def suggest(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean --x?)"`` for the closest of ``choices``, else ``""``."""
    close = difflib.get_close_matches(word.split("=", 1)[0], list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps help text at spaces only, so that a value (``pgd-linf``, a JSON preset) is never cut."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)
