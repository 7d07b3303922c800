"""Typed errors: each class says what the reconcile loop should do about it.

- :class:`StallError`: a person must act (an invalid flow, a bad config); retrying
  without a new commit or a new file changes nothing.
- :class:`RetryableError`: the platform or the remote is unreachable; retry later
  with backoff.
- :class:`ConflictError`: both sides changed differently; needs a person.

Adapters translate library exceptions (pygit2, OS, HTTP) into these at their
boundary and chain the cause, so the core never sees ``pygit2.GitError``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ReconcilerError",
    "StallError",
    "RetryableError",
    "ConflictError",
    "ConfigError",
    "BranchMovedError",
    "LiveMovedError",
    "MassDeletionRefused",
    "Problem",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: where it is, what is wrong, what to do.

    ``where`` is a file path or ``branch:path``; ``pointer`` a JSON pointer into
    the document ("" for the whole document).
    """

    where: str
    message: str
    pointer: str = ""
    flow: str = ""  # "name@version" when known

    def __str__(self) -> str:
        loc = self.where + (f":{self.pointer}" if self.pointer else "")
        who = f" [{self.flow}]" if self.flow else ""
        return f"{loc}: {self.message}{who}"

    def as_dict(self) -> dict[str, str]:
        return {"where": self.where, "pointer": self.pointer, "flow": self.flow, "message": self.message}


class ReconcilerError(Exception):
    """Base class of every error this package raises on purpose."""


class StallError(ReconcilerError):
    """Input that cannot be used until a person changes it."""


class RetryableError(ReconcilerError):
    """A transient failure (platform down, lock held): try again later."""


class ConflictError(ReconcilerError):
    """Both git and the environment changed a flow differently."""


class BranchMovedError(RetryableError):
    """The branch tip moved between read and compare-and-swap update."""


class LiveMovedError(RetryableError):
    """The platform's state changed between export and write (e.g. Node-RED's rev).

    Like :class:`BranchMovedError`, the engine re-reads and re-plans, so an edit
    made in the platform during a sync becomes drift or a conflict, never lost.
    """


class MassDeletionRefused(StallError):
    """A run that would delete every flow of a side, or more than ``max_delete``: nothing was done."""


class ConfigError(StallError):
    """The configuration file is invalid; ``problems`` has one entry per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
