"""The version of losslens (the package face re-exports it; result files and reports record it)."""

__version__ = "0.2.0"
