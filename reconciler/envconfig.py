"""Settings every environment has, whatever its driver (a base for each driver's model).

Kept apart from :mod:`reconciler.config` so that a driver module can define its
own settings model (``class NodeRedEnvironment(EnvironmentConfig)``) and the
config loader can import every driver's model without an import cycle.
"""

# No `from __future__ import annotations`: pydantic would compile and eval each field's annotation string
# when the model class is created (every command's import of the config); evaluated here, they are bytecode.

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from reconciler.canonical import parse_pointer
from reconciler.configbase import UNTIMED, EnvironmentMethods, WindowMethods, remember_settings_json, settings_json
from reconciler.names import ref_name_problem
from reconciler.secretrule import DEFAULT_SECRET_KEYS

__all__ = ["EnvironmentConfig", "IdentityConfig", "Model", "WindowConfig", "SidecarConfig", "settings_json",
           "remember_settings_json", "UNTIMED"]

_ENV_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class Model(BaseModel):
    # defer_build: a model's validator is built when it is first used, not when its class is created: a
    # command line run validates a handful of the config's ~20 models (a directory environment's,
    # not the other drivers' or the [[notify]] sinks' it does not have).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class IdentityConfig(Model):
    name: str = Field("/name", description="JSON pointer of the flow's name in an export.")
    version: str = Field("/version", description="JSON pointer of the flow's version.")

    @field_validator("name", "version")
    @classmethod
    def _pointer(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be a JSON pointer starting with '/'")
        return v


class WindowConfig(WindowMethods, Model):
    """A sync window: ``schedule`` (cron, five fields) opens it for ``duration`` in ``timezone``."""

    kind: Literal["allow", "deny"] = Field(description="allow: changes only inside; deny: no changes inside.")
    schedule: str = Field(description="When it opens: a five-field cron expression, e.g. '0 9 * * 1-5'.")
    duration: str | float = Field(description="How long it stays open: '8h', '1h30m', '90m', or seconds.")
    timezone: str = Field("UTC", description="IANA time zone of the schedule (daylight-saving changes included).")
    manual: StrictBool = Field(
        False, description="May a manual sync (`reconciler sync --force`, the API) run while this window keeps "
        "the environment closed?"
    )
    name: str = Field("", description="Shown in messages and the status.")

    @model_validator(mode="after")
    def _usable(self) -> "WindowConfig":
        self.window()
        return self


class SidecarConfig(Model):
    """A code field of this environment's flows, kept in git as a sidecar file (``sidecars = [...]``)."""

    pointer: str = Field(description="JSON pointer of the field ('*' matches any key or index), e.g. /steps/*/script.")
    ext: str = Field(pattern=r"^[a-z0-9]{1,16}$", description="Extension of its sidecar file (py, js, sql…).")

    @field_validator("pointer")
    @classmethod
    def _pointer(cls, v: str) -> str:
        if not v.startswith("/") or v.endswith("/*"):
            raise ValueError("must be a JSON pointer starting with '/' and ending with a field name")
        return v


class EnvironmentConfig(EnvironmentMethods, Model):
    """Settings every environment has, whatever its driver."""

    name: str = Field(pattern=_ENV_NAME, description="Environment name (letters, digits, . _ -).")
    driver: str
    branch: str | None = Field(None, description="Branch holding the desired state; default env/<name>.")
    folder: str = Field("flows", description="Folder in the branch holding <name>/<version>.json files.")
    drift: Literal["restore", "adopt", "report"] = Field(
        "report", description="What to do when the environment was edited outside git."
    )
    prune: StrictBool = Field(False, description="May the reconciler delete flows from the environment?")
    allow_empty: StrictBool = Field(
        False,
        description="May a run delete every flow of the environment (or of its branch), or read a branch without "
        "a flows folder as 'no flows'? Off: such a run stops before changing anything (Argo CD's allowEmpty).",
    )
    max_delete: int | str = Field(
        "50%",
        description="Most flows one run may delete, in either direction (from the environment, or deletions "
        "adopted into git): a count, or a percentage of the flows there ('50%'; never fewer than 2). "
        "A run that would delete more stops before changing anything; `--allow-mass-delete` lifts it once.",
    )
    override: StrictBool = Field(True, description="May it replace an existing name+version?")
    ignore: tuple[str, ...] = Field((), description="JSON pointers of volatile fields; '*' matches any key or index.")
    sort: dict[str, str] = Field(
        {}, description="Order-insensitive arrays: pointer of the array -> pointer of the sort key in each element."
    )
    identity: IdentityConfig = IdentityConfig.model_construct()
    schema_: Path | None = Field(None, alias="schema", description="JSON Schema every flow must satisfy before import.")
    interval: float = Field(60.0, gt=0, description="Seconds between drift checks in `reconciler run`.")
    on_unhealthy: Literal["restore", "report"] = Field(
        "restore",
        description="When the platform says a flow just written does not run (health gate): 'restore' deploys "
        "the previous version again; 'report' leaves it. Either way the commit is quarantined for those flows "
        "(not applied again) until a new commit changes them.",
    )
    windows: tuple[WindowConfig, ...] = Field(
        (), alias="window", description="Sync windows ([[environment.window]]); none: always allowed."
    )
    health_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds to wait for the platform to report written flows running."
    )
    params: dict[str, str] = Field(
        {}, description="Values of ${param:NAME} placeholders in this environment; exported values become placeholders again."
    )
    secrets_dir: Path | None = Field(None, description="Folder of files NAME holding the values of ${secret:NAME}.")
    secrets_env_prefix: str = Field(
        "RECONCILER_SECRET_", description="Environment variables <prefix>NAME also hold secret values."
    )
    secret_fields: tuple[str, ...] = Field(
        (), description="JSON pointers ('*' allowed) of fields that hold secrets: exported as ${secret:NAME}, never as values."
    )
    secret_keys: tuple[str, ...] = Field(
        DEFAULT_SECRET_KEYS,
        description="Key names of fields that hold secrets (a suffix of the key, case, '-' and '_' ignored: "
        "dbPassword, api_token).",
    )
    secret_allow: tuple[str, ...] = Field(
        (), description="JSON pointers ('*' allowed) of fields whose key name looks secret but whose value is not "
        "(a certificate's file name, a public key): never refused for the name alone.",
    )

    form: Literal["split", "single-file"] = Field(
        "split", description="How export, adopt, drift saves and `reconciler migrate` store flows in git: 'split' "
        "keeps embedded code (function bodies, templates, custom SQL, the `sidecars` fields) as sidecar files "
        "beside the flow's JSON; 'single-file' keeps every flow as one JSON file. Both are always read.",
    )
    sidecars: tuple[SidecarConfig, ...] = Field(
        (), description="More code fields, kept in git as sidecar files: [{pointer = \"/steps/*/script\", ext = \"py\"}] "
        "(Node-RED's and event-processing flows' code fields are known already). Give every environment that "
        "shares flows the same list.",
    )
    layout: Literal["content", "ignore"] = Field(
        "content", description="Does a change of layout alone (Node-RED's x, y, w, h; the `layout_fields`) count as "
        "drift? 'ignore': no (git keeps its layout until the content changes too); diffs fold layout either way.",
    )
    layout_fields: tuple[str, ...] = Field(
        (), description="More JSON pointers ('*' allowed) of fields that only place a node, e.g. /steps/*/position.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    def resolved(self, base: Path) -> "EnvironmentConfig":
        """The same settings with every path of :attr:`PATH_FIELDS` made absolute against ``base``."""
        update = {}
        for name in self.PATH_FIELDS:
            value = getattr(self, name)
            if value is not None:
                value = Path(value).expanduser()
                update[name] = value if value.is_absolute() else base / value
        return self.model_copy(update=update) if update else self

    @field_validator("secret_fields", "secret_allow", "layout_fields")
    @classmethod
    def _pointers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"{p!r} must be a JSON pointer starting with '/'")
        return v

    @field_validator("ignore")
    @classmethod
    def _ignore(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"{p!r} must be a JSON pointer starting with '/'")
            if any(seg.isascii() and seg.isdigit() for seg in parse_pointer(p)):
                # Removing element 0 of an array is not idempotent: each pass
                # would remove another one. Name fields, or use '*'.
                raise ValueError(f"{p!r} selects an array element by index; use '*' or a field name")
        return v

    @field_validator("max_delete")
    @classmethod
    def _max_delete(cls, v: int | str) -> int | str:
        if isinstance(v, bool):
            raise ValueError("must be a count or a percentage such as '50%'")
        if isinstance(v, int):
            if v < 0:
                raise ValueError("must not be negative")
            return v
        m = re.fullmatch(r"(\d{1,3}(?:\.\d+)?)%", v.strip())
        if not m or not 0 < float(m.group(1)) <= 100:
            raise ValueError("must be a count or a percentage from 1% to 100%, such as '50%'")
        return v.strip()

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"parameter name {name!r} may only hold letters, digits, '_', '.', '-'")
        return v

    @field_validator("sort")
    @classmethod
    def _sort(cls, v: dict[str, str]) -> dict[str, str]:
        for array, key in v.items():
            if not array.startswith("/"):
                raise ValueError(f"{array!r} must be a JSON pointer starting with '/'")
            parse_pointer(key)
        return v

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str) -> str:
        parts = v.split("/")
        if not v or any(p in ("", ".", "..") or not re.fullmatch(r"[A-Za-z0-9._-]+", p) for p in parts):
            raise ValueError("must be a relative folder made of letters, digits, '.', '_' and '-'")
        return v

    @field_validator("name")
    @classmethod
    def _name_valid(cls, v: str) -> str:
        # The name becomes part of refs: drift/<name>, refs/reconciler/applied/<name>, env/<name>.
        why = ref_name_problem(f"refs/heads/drift/{v}")
        if why is not None:
            raise ValueError(f"cannot be part of a git branch name (drift/{v}): it {why}")
        return v

    @field_validator("branch")
    @classmethod
    def _branch_valid(cls, v: str | None) -> str | None:
        if v is not None:
            ref = v if v.startswith("refs/") else f"refs/heads/{v}"
            why = ref_name_problem(ref)
            if why is not None:
                raise ValueError(f"not a valid branch name: it {why}")
            if ref.startswith("refs/heads/drift/"):
                raise ValueError("not a valid branch name: drift/* is reserved for saved live versions")
        return v

    @model_validator(mode="after")
    def _branch_default(self) -> "EnvironmentConfig":
        if self.branch is None:
            object.__setattr__(self, "branch", f"env/{self.name}")
        return self
