import sys

from jaxdyn._internal.xla_cache import enable_from_environment

enable_from_environment()  # before jax is imported: JAX reads its cache settings from the environment

from jaxdyn.cli.app import main  # noqa: E402

sys.exit(main())
