"""The package version, in one place (read by ``jaxdyn.__version__`` and the cache fingerprints)."""

__version__ = "0.1.0"
