"""Plumbing, private to jaxdyn: input checks, atomic results, sharding, run locks, fingerprints.

The public surface is :data:`__all__`: the submodules, and the names below, each imported from its
module on first use (so that importing the package stays light and no import cycle can form).
"""

from __future__ import annotations

import importlib

#: submodules
SUBMODULES = ('checks', 'fingerprint', 'results', 'runlock', 'sharding',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys((
        'INVALID_STEP', 'check_array', 'check_batch', 'check_call', 'check_choice', 'check_eig_inputs',
        'check_example', 'check_in_clip', 'check_label', 'check_label_static', 'check_logits', 'check_positive',
        'check_steps', 'check_theory_inputs', 'in_clip', 'is_concrete', 'label_ok', 'num_classes', 'valid'
    ), 'checks'),
    **dict.fromkeys((
        'DTYPE_FLAGS', 'LIBRARIES', 'PACKAGE_ROOT', 'dtype_flags', 'environment', 'library_versions', 'source_files',
        'source_hash', 'stage_fingerprint', 'training_source_files', 'training_source_hash'
    ), 'fingerprint'),
    **dict.fromkeys((
        'WriteError', 'append_line_atomic', 'atomic_path', 'check_writable', 'copy_atomic', 'jsonable', 'read_json',
        'remove_file', 'remove_stale_temps', 'to_json_tree', 'write_bytes_atomic', 'write_json_atomic',
        'write_text_atomic'
    ), 'results'),
    **dict.fromkeys(('INFO_NAME', 'LOCK_NAME', 'OutInUse', 'hold', 'holder'), 'runlock'),
    **dict.fromkeys((
        'BATCH_AXIS', 'batch_sharding', 'chunked', 'data_mesh', 'map_in_chunks', 'pad_batch', 'replicated_sharding',
        'shard_batch'
    ), 'sharding'),
}

__all__ = sorted(_API) + list(SUBMODULES)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    elif name in SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
