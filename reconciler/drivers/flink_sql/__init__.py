"""The flink-sql driver: an environment is a folder of Flink SQL scripts, ``<name>@<version>.sql``.

Each script is rendered (:func:`reconciler.eventproc.render`) from an
event-processing flow on the environment's branch, with the environment's
parameters and secrets: what a Flink SQL runner picks up (the Flink Kubernetes
operator's SQL-runner example job, ``sql-client.sh -f``, a sidecar that submits
new files). Rendering is one-way: SQL is never read back as a flow, so such an
environment never adopts and is never exported (:class:`~reconciler.drivers.Rendering`).

Drift is someone editing a script: the engine compares each file with what the
flow renders to (:mod:`.codec`: byte for byte, secrets hidden behind their
placeholders so that what is compared, and saved to ``drift/<env>`` before a
restore, never holds one) and restores or reports it per the environment's
policy. Writes use the directory driver's crash-safe protocol (temporary files,
atomic swap, an edit made during the write never lost).

Modules: :mod:`.codec` (file names and the compared form, pure), :mod:`.driver`
(the driver port), :mod:`.settings` (``driver = "flink-sql"``).
"""

from typing import TYPE_CHECKING

from reconciler.lazy import lazy_attributes

if TYPE_CHECKING:
    from .driver import FlinkSqlDriver
    from .settings import SETTINGS, FlinkSqlEnvironment

__all__ = ["FlinkSqlDriver", "FlinkSqlEnvironment", "SETTINGS"]

# Imported when first named (PEP 562): a command whose config comes from its cache (reconciler.configcache)
# builds the driver from a view of the settings and imports no pydantic settings model.
_WHERE = {"FlinkSqlDriver": "driver", "SETTINGS": "settings", "FlinkSqlEnvironment": "settings"}


__getattr__ = lazy_attributes(__name__, _WHERE)
