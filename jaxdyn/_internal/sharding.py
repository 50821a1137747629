"""Data parallelism over the sample axis: per-sample work on every device of a host.

Everything in :mod:`jaxdyn` is written for one example and ``jax.vmap``-ed over a batch, so the
batch axis is embarrassingly parallel. :func:`shard_batch` turns a per-example function into a
batched one whose batch axis is split over a 1-D device mesh (``NamedSharding`` with
``PartitionSpec("batch")``) and whose other arguments (parameters, β, ε) are replicated. With one
device it is a plain ``jit(vmap(fn))``; with ``k`` devices (the GPUs of a host, the cores of a
TPU, or ``--xla_force_host_platform_device_count=k`` fake CPU devices) each device runs
``vmap(fn)`` on ``B/k`` examples and no communication happens. A batch whose size is not a
multiple of ``k`` is padded by repeating its last example and the padding is dropped from the
result, so the output is the same as on one device.

Example::

    f_batch = shard_batch(
        lambda variables, x, y, beta: predict(logits_fn(model, variables), x, y, beta=beta).delta_hat,
        in_axes=(None, 0, 0, None),
    )
    delta_hat = f_batch(variables, x, y, 1.0)   # [B, 28, 28, 1], sharded over jax.local_devices()

Single host only: the mesh is built from ``jax.local_devices()``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["BATCH_AXIS", "data_mesh", "batch_sharding", "replicated_sharding", "pad_batch", "shard_batch", "chunked",
           "map_in_chunks"]

BATCH_AXIS = "batch"


def data_mesh(devices: Optional[Sequence] = None, *, axis_name: str = BATCH_AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every local device) with one axis ``axis_name``."""
    devices = jax.local_devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh needs at least one device")
    return Mesh(np.asarray(devices), (axis_name,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's single axis, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def _batch_size(tree) -> int:
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) > 0 else None for leaf in jax.tree.leaves(tree)}
    if None in sizes:
        raise ValueError("a batched argument has a scalar leaf; give it a leading batch axis or in_axes=None")
    if len(sizes) != 1:
        raise ValueError(f"batched arguments disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


def pad_batch(tree, multiple: int):
    """Pad every leaf of ``tree`` along axis 0 to a multiple of ``multiple`` by repeating the last
    example (a real example, so the padded rows compute nothing degenerate).

    Returns ``(padded_tree, B)`` with ``B`` the original batch size.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    B = _batch_size(tree)
    if B == 0:
        raise ValueError("cannot shard an empty batch")
    pad = (-B) % multiple
    if pad == 0:
        return tree, B

    def pad_leaf(a):
        a = jnp.asarray(a)
        return jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)

    return jax.tree.map(pad_leaf, tree), B


def shard_batch(
    fn: Callable,
    *,
    in_axes=0,
    mesh: Optional[Mesh] = None,
    chunk_size: Optional[int] = None,
) -> Callable:
    """Batch a per-example function and spread its batch axis over the devices of ``mesh``.

    Args:
      fn: per-example function; positional arguments only (bind keyword knobs with a lambda or
        ``functools.partial``; keep β, ε, … positional with ``in_axes=None`` so that sweeping them
        does not recompile).
      in_axes: ``0`` (every argument batched) or a tuple with ``0`` (batched along the leading
        axis) or ``None`` (replicated, e.g. the parameters) per positional argument. Arguments may
        be pytrees; all batched leaves must share the batch size ``B``.
      mesh: a 1-D mesh (default :func:`data_mesh` over all local devices).
      chunk_size: ``None`` to ``vmap`` ``fn`` over each device's whole shard; an int to run the
        shard in chunks of that many examples (``lax.map(..., batch_size=chunk_size)``), which
        bounds the memory of expensive per-example work (dense ``n x n`` Hessians).

    Returns:
      ``g(*args)`` computing ``vmap(fn, in_axes)(*args)``: every output leaf has the leading
      batch axis ``B``. To time the kernel alone (benchmarks), ``g.place(*args)`` returns
      ``(placed_args, B)`` (padded, batch-sharded / replicated), ``g.jitted(*placed_args)`` and
      ``g.lower(*placed_args)`` run / lower the jitted kernel on them and ``g.unpad(out, B)``
      drops the padding; ``g.mesh`` is the mesh.
    """
    mesh = data_mesh() if mesh is None else mesh
    if len(mesh.axis_names) != 1:
        raise ValueError(f"shard_batch needs a 1-D mesh, got axes {mesh.axis_names}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    axis = mesh.axis_names[0]
    n_dev = mesh.devices.size
    bsh, rsh = batch_sharding(mesh), replicated_sharding(mesh)

    def axes_for(nargs):
        axes = (in_axes,) * nargs if not isinstance(in_axes, (tuple, list)) else tuple(in_axes)
        if len(axes) != nargs:
            raise ValueError(f"in_axes has {len(axes)} entries for {nargs} arguments")
        for a in axes:
            if a not in (0, None):
                raise ValueError(f"in_axes entries must be 0 or None, got {a!r}")
        if 0 not in axes:
            raise ValueError("shard_batch needs at least one batched argument (in_axes 0)")
        return axes

    kernels = {}

    def kernel(axes):
        if axes in kernels:
            return kernels[axes]

        def local(*args):  # one device's shard of the batch
            if chunk_size is None:
                return jax.vmap(fn, in_axes=axes)(*args)
            batched = tuple(a for a, ax in zip(args, axes) if ax == 0)

            def one(example):
                it = iter(example)
                return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, axes)))

            return jax.lax.map(one, batched, batch_size=int(chunk_size))

        specs = tuple(PartitionSpec(axis) if ax == 0 else PartitionSpec() for ax in axes)
        # check_vma=False: the per-example code is ordinary single-device JAX (it builds constants
        # such as ``jnp.eye`` for VJPs that the varying-axes type check would reject); nothing in
        # it communicates across devices, so there is nothing for the check to protect.
        sm = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(axis), check_vma=False)
        kernels[axes] = jax.jit(sm)
        return kernels[axes]

    def place(*args):
        axes = axes_for(len(args))
        batched = tuple(a for a, ax in zip(args, axes) if ax == 0)
        padded, B = pad_batch(batched, n_dev)
        it = iter(padded)
        placed = []
        for a, ax in zip(args, axes):
            if ax == 0:
                placed.append(jax.device_put(next(it), bsh))
            else:  # arrays are replicated; Python scalars stay weakly typed
                placed.append(jax.tree.map(
                    lambda leaf: jax.device_put(leaf, rsh) if isinstance(leaf, (jax.Array, np.ndarray)) else leaf, a))
        return tuple(placed), B

    def unpad(out, B):
        if _batch_size(out) == B:
            return out
        return jax.tree.map(lambda o: o[:B], out)

    def g(*args):
        placed, B = place(*args)
        return unpad(kernel(axes_for(len(args)))(*placed), B)

    g.place = place
    g.unpad = unpad
    g.mesh = mesh
    g.jitted = lambda *placed: kernel(axes_for(len(placed)))(*placed)
    g.lower = lambda *placed: kernel(axes_for(len(placed))).lower(*placed)
    return g


def chunked(fn: Callable, *arrays, chunk: int | None, **kwargs):
    """``fn(*arrays, **kwargs)`` on slices of at most ``chunk`` samples (the leading axis of every
    array), the results (a pytree of arrays) concatenated as NumPy: bounds the memory of
    per-sample work at the full scale. Short slices are padded by repeating their samples, so every
    call has the same shape (one compile). ``chunk=None`` runs one call."""
    n = len(arrays[0])
    if chunk is None or chunk >= n:
        return jax.tree.map(np.asarray, jax.device_get(fn(*arrays, **kwargs)))
    outs = []
    for i in range(0, n, chunk):
        k = min(chunk, n - i)
        part = [np.asarray(a[i:i + k]) for a in arrays]
        if k < chunk:
            pad = np.arange(chunk - k) % k
            part = [np.concatenate([p, p[pad]]) for p in part]
        o = jax.device_get(fn(*part, **kwargs))
        outs.append(jax.tree.map(lambda a: np.asarray(a)[:k], o))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def map_in_chunks(fn: Callable, xs, chunk: int | None):
    """``jax.vmap(fn)(xs)`` (``xs`` a pytree batched on its leading axis), run as sequential slices
    of ``chunk`` examples (``lax.map``, bounding memory) when ``chunk`` is set; traceable. Not
    ``lax.map(..., batch_size=0)``, which means the same in recent jax but divides by zero in jax 0.6."""
    return jax.lax.map(fn, xs, batch_size=chunk) if chunk else jax.vmap(fn)(xs)
