"""A flow's version in its tab's ``env`` list (pure): where it is read, and how it is written back.

The version is the value of the tab's env entry named ``version_env``
(``FLOW_VERSION``); a tab without one has ``default_version``. The document
keeps the tab's env list as Node-RED holds it, so an import adds nothing and
moves nothing; only the version's *value* lives in ``/version`` (once, so a
rename of the version is one field):

- the entry stays at its place in ``/tab/env`` without its ``value``
  (``{"name": "FLOW_VERSION", "type": "str"}``), and import fills the value in
  from ``/version``;
- except when it is the *last* entry, a plain ``{name, value, type: "str"}``
  holding a version other than ``default_version``: then it is left out of the
  document altogether, and import appends it again. So a document written by
  hand needs no entry at all (``"version": "2"`` is enough), and a tab whose
  version is the default gets none.
"""

from __future__ import annotations

from typing import Any

from reconciler.drivers._common import Refused

__all__ = ["tab_version", "tab_for_git", "tab_for_node_red"]


def _entry_at(env: Any, version_env: str) -> int | None:
    if isinstance(env, list):
        for i, entry in enumerate(env):
            if isinstance(entry, dict) and entry.get("name") == version_env:
                return i
    return None


def tab_version(tab: dict, version_env: str, default_version: str) -> Any:
    """The version a live tab carries (its entry's value, else the default)."""
    env = tab.get("env")
    i = _entry_at(env, version_env)
    if i is None or "value" not in env[i]:
        return default_version
    return env[i]["value"]


def _appended(entry: dict, version: Any, default_version: str) -> bool:
    """True when import would append exactly this entry for ``version`` (so git need not hold it)."""
    return (set(entry) == {"name", "value", "type"} and entry["type"] == "str" and isinstance(version, str)
            and version != default_version)


def tab_for_git(tab: dict, version_env: str, default_version: str) -> tuple[dict, Any]:
    """A copy of a live tab as its document holds it (no label; the version entry without its value),
    and the version."""
    doc_tab = {k: v for k, v in tab.items() if k != "label"}
    env = doc_tab.get("env")
    i = _entry_at(env, version_env)
    if i is None:
        return doc_tab, default_version
    version = env[i].get("value", default_version)
    env = list(env)
    if i == len(env) - 1 and _appended(env[i], version, default_version):
        del env[i]
        if not env:
            del doc_tab["env"]
            return doc_tab, version
    else:
        env[i] = {k: v for k, v in env[i].items() if k != "value"}
    doc_tab["env"] = env
    return doc_tab, version


def tab_for_node_red(doc_tab: dict, label: str, version: str, version_env: str, default_version: str) -> dict:
    """The tab node to deploy: label from /name, the version entry filled in (or appended when there is none
    and the version is not the default). Raises :class:`Refused` for an entry that already has a value."""
    tab = dict(doc_tab, label=label)
    env = tab.get("env")
    i = _entry_at(env, version_env)
    if i is not None:
        if "value" in env[i]:
            raise Refused(f"/tab/env/{i}/value: the {version_env} entry holds no value in git (the version is "
                          f"/version); remove the value")
        env = list(env)
        env[i] = {**env[i], "value": version}
        tab["env"] = env
    elif version != default_version:
        tab["env"] = [*(env or []), {"name": version_env, "value": version, "type": "str"}]
    return tab
