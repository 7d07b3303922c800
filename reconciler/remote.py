"""A git server in front of the local repository (pygit2; errors translated here).

When ``[repository] remote`` is set, people push to the remote and the local
bare repository is the reconciler's working copy of it:

- ``fetch`` brings the remote's branches to ``refs/remotes/origin/*``;
- ``integrate`` (run by an environment's worker, under its lock) moves the
  local branch to the remote's: fast-forward, or a merge commit when the
  reconciler's own commits (adopts) and a push crossed; a merge with
  conflicts stops the environment with an error, nothing is forced;
- ``publish`` pushes the branch (never forced: a rejected push means the
  remote moved, the next round fetches and integrates), ``drift/<env>`` and
  the applied marker (markers are the reconciler's own refs, not branches, so
  they are pushed with ``+`` and a replica taking an environment over can
  resume from them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pygit2

from reconciler.errors import RetryableError, StallError
from reconciler.gitstore import MARKER_PREFIX, GitStore

__all__ = ["Remote", "Integration"]

REMOTE_PREFIX = "refs/remotes/origin/"
REMOTE_MARKERS = "refs/remotes/origin-applied/"


@dataclass(frozen=True)
class Integration:
    action: str  # none | fast-forward | merge | ahead | created
    local: str | None
    remote: str | None


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, token: str | None):
        super().__init__()
        self._token = token
        self.rejected: dict[str, str] = {}

    def credentials(self, url, username_from_url, allowed_types):
        if self._token and allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT:
            return pygit2.UserPass(username_from_url or "x-access-token", self._token)
        if allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            return pygit2.KeypairFromAgent(username_from_url or "git")
        return None

    def push_update_reference(self, refname, message):
        if message:
            self.rejected[refname] = message


class Remote:
    def __init__(self, store: GitStore, url: str, token_env: str = "RECONCILER_GIT_TOKEN"):
        self.store, self.url, self._token_env = store, url, token_env

    def _callbacks(self) -> _Callbacks:
        return _Callbacks(os.environ.get(self._token_env))

    def _remote(self) -> pygit2.Remote:
        return self.store.repo.remotes.create_anonymous(self.url)

    def fetch(self) -> None:
        """Fetch every branch, and the applied markers, from the remote."""
        try:
            self._remote().fetch(
                [f"+refs/heads/*:{REMOTE_PREFIX}*", f"+{MARKER_PREFIX}*:{REMOTE_MARKERS}*"],
                callbacks=self._callbacks(),
            )
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot fetch from {self._safe_url()}: {exc}") from exc

    def integrate(self, env: str, branch: str) -> Integration:
        """Bring the local branch up to the remote's (call under the environment's lock)."""
        store = self.store
        local, remote = store.tip(branch), store.tip(REMOTE_PREFIX + branch)
        if store.marker(env) is None and store.tip(REMOTE_MARKERS + env):
            store.set_marker(env, store.tip(REMOTE_MARKERS + env))  # take over from another replica
        if remote is None or local == remote:
            return Integration("none" if local == remote else "ahead", local, remote)
        ref = store.branch_ref(branch)
        try:
            if local is None:
                store.repo.references.create(ref, pygit2.Oid(hex=remote))
                return Integration("created", local, remote)
            if store.is_ancestor(local, remote):
                store.repo.references.create(ref, pygit2.Oid(hex=remote), force=True)
                return Integration("fast-forward", local, remote)
            if store.is_ancestor(remote, local):
                return Integration("ahead", local, remote)
            index = store.repo.merge_commits(pygit2.Oid(hex=local), pygit2.Oid(hex=remote))
            if index.conflicts is not None:
                # Each conflict is (ancestor, ours, theirs); any of them may be None.
                paths = sorted({next(e for e in entries if e is not None).path for entries in index.conflicts})
                raise StallError(
                    f"{branch} and the remote's {branch} diverged and conflict on {', '.join(paths[:5])}; "
                    "merge them on the remote by hand"
                )
            tree = str(index.write_tree(store.repo))
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot integrate {branch} with the remote: {exc}") from exc
        merged = store.commit(branch, local, tree, f"Merge {branch} from the remote into the reconciler's commits\n", extra_parents=(remote,))
        return Integration("merge", merged, remote)

    def publish(self, env: str, branch: str) -> list[str]:
        """Push the branch, drift/<env> and the marker; returns refs the remote rejected."""
        store = self.store
        specs = []
        for ref in (store.branch_ref(branch), f"refs/heads/drift/{env}"):
            if store.tip(ref) is not None and store.tip(ref) != store.tip(REMOTE_PREFIX + ref.removeprefix("refs/heads/")):
                specs.append(f"{ref}:{ref}")
        if store.marker(env) is not None and store.marker(env) != store.tip(REMOTE_MARKERS + env):
            specs.append(f"+{MARKER_PREFIX}{env}:{MARKER_PREFIX}{env}")
        if not specs:
            return []
        callbacks = self._callbacks()
        try:
            self._remote().push(specs, callbacks=callbacks)
        except (pygit2.GitError, OSError) as exc:
            if "non-fast-forward" in str(exc) or "rejected" in str(exc):
                return [s.split(":")[-1] for s in specs]
            raise RetryableError(f"cannot push to {self._safe_url()}: {exc}") from exc
        for spec in specs:  # what the remote now has, so the next round knows
            src, dst = spec.lstrip("+").split(":")
            if dst in callbacks.rejected:
                continue
            local_ref = REMOTE_MARKERS + env if dst.startswith(MARKER_PREFIX) else REMOTE_PREFIX + dst.removeprefix("refs/heads/")
            store.repo.references.create(local_ref, pygit2.Oid(hex=store.tip(src)), force=True)
        return sorted(callbacks.rejected)

    def _safe_url(self) -> str:
        # Never print credentials embedded in a URL.
        if "@" in self.url and "://" in self.url:
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.url
