"""EventoDB: a Message-DB-compatible event store served over HTTP."""

__version__ = "0.7.0"
"""Wire-compatible with upstream EventoDB 0.7.0; clients check only that it is semver."""

__all__ = ["__version__"]
