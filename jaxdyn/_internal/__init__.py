"""Plumbing, private to jaxdyn: input checks, atomic results, sharding, run locks, fingerprints.

The public surface is :data:`__all__`: the names below, each imported from its module on first use
(:func:`jaxdyn._internal.lazy.attach`), and the submodules.
"""

from __future__ import annotations

from jaxdyn._internal.lazy import attach

#: submodules
SUBMODULES = ('checks', 'fingerprint', 'lazy', 'results', 'runlock', 'sharding',)

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
    **dict.fromkeys(('attach',), 'lazy'),
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

__getattr__, __dir__, __all__ = attach(__name__, _API, SUBMODULES)
