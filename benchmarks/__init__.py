"""The benchmarks of docs/performance.md and the prepared device check, run from the repository root
as ``python -m benchmarks.<name>`` (``theorem2``, ``logit_attack``, ``pgd_torch``, ``hessian``,
``compile``, ``adv_training``, ``apgd_torch``; ``projection``; the device check ``benchmarks.device``).
Not part of the installed package: they import ``jaxdyn`` from the environment, or from the checkout
when run from its root.

:mod:`benchmarks.timing` holds the timing discipline, :mod:`benchmarks.common` the shared flags, data,
models and machine description, :mod:`benchmarks.torch_bridge` the PyTorch copies of the zoo models.
"""
