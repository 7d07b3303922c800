"""flow-reconciler: git as the system of record for flow platforms.

The package is split the way the data flows:

- pure core: :mod:`reconciler.canonical`, :mod:`reconciler.names`,
  :mod:`reconciler.flows`, :mod:`reconciler.plan` (no I/O, no clock);
- adapters: :mod:`reconciler.gitstore` (pygit2) and :mod:`reconciler.drivers`;
- orchestration: :mod:`reconciler.engine`;
- interfaces: :mod:`reconciler.cli`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
