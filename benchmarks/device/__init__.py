"""The prepared device check, ``python -m benchmarks.device`` (see its ``__main__``): the plan
(:mod:`.plan`), the budgeted subprocess scheduler (:mod:`.run`), the item bodies (:mod:`.items`) and
the summary (:mod:`.report`). Importing the package, the plan, the scheduler or the report imports no jax."""
