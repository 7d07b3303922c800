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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2

from reconciler.errors import RetryableError, StallError
from reconciler.gitstore import MARKER_PREFIX, GitStore, tls
from reconciler.logsetup import get_logger
from reconciler.names import redact_url

if TYPE_CHECKING:
    from reconciler.config import RepositoryConfig

__all__ = ["Remote", "Integration", "SshSettings", "REMOTE_PREFIX", "SEEN_PREFIX", "REWRITTEN_PREFIX"]

log = get_logger("reconciler.remote")

REMOTE_PREFIX = "refs/remotes/origin/"
REMOTE_MARKERS = "refs/remotes/origin-applied/"
# The reconciler's own per-environment state refs shared through the remote (forced, like the markers):
# refs/reconciler/<kind>/<env>, tracked at refs/remotes/origin-reconciler/<kind>/<env>.
STATE_KINDS = ("quarantine", "driver", "suspend")
REMOTE_STATE = "refs/remotes/origin-reconciler/"
SEEN_PREFIX = "refs/reconciler/seen/"  # per environment: the server's tip last integrated (never pushed)
REWRITTEN_PREFIX = "refs/reconciler/rewritten/"  # per environment: the local tip before a server rewrite


@dataclass(frozen=True)
class Integration:
    action: str  # none | fast-forward | merge | ahead | created | rewritten
    local: str | None
    remote: str | None
    previous: str | None = None  # rewritten: the local tip before following the server


@dataclass(frozen=True)
class SshSettings:
    """How to authenticate an ssh remote: a key file (else the ssh agent) and the host keys to trust."""

    key: Path | None = None  # private key; "<key>.pub" beside it is used when it exists
    known_hosts: Path | None = None  # else the user's ~/.ssh/known_hosts
    passphrase_env: str = "RECONCILER_SSH_PASSPHRASE"


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, token: str | None, ssh: SshSettings):
        super().__init__()
        self._token, self._ssh = token, ssh
        self.rejected: dict[str, str] = {}
        self.host_refused: str | None = None

    def credentials(self, url, username_from_url, allowed_types):
        if self._token and allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT:
            return pygit2.UserPass(username_from_url or "x-access-token", self._token)
        if allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            user = username_from_url or "git"
            key = self._ssh.key
            if key is not None:
                pub = Path(f"{key}.pub")
                passphrase = os.environ.get(self._ssh.passphrase_env, "")
                return pygit2.Keypair(user, str(pub) if pub.is_file() else None, str(key), passphrase)
            return pygit2.KeypairFromAgent(user)
        return None

    def certificate_check(self, certificate, valid, host):
        # libgit2 checks TLS certificates against the trust store, and ssh host keys against
        # <homedir>/.ssh/known_hosts (Remote points homedir at ssh_known_hosts): an unknown or
        # changed host key is refused, never accepted on first use.
        if not valid:
            self.host_refused = host.decode("utf-8", "replace") if isinstance(host, bytes) else str(host)
        return bool(valid)

    def push_update_reference(self, refname, message):
        if message:
            self.rejected[refname] = message


_HOMES: dict[Path, Path] = {}


def _trust(known_hosts: Path) -> None:
    """Make libgit2 check ssh host keys against ``known_hosts``: it reads <homedir>/.ssh/known_hosts,
    so the process's libgit2 home becomes a private folder whose .ssh/known_hosts is that file."""
    home = _HOMES.get(known_hosts)
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="reconciler-ssh-"))
        (home / ".ssh").mkdir(mode=0o700)
        (home / ".ssh" / "known_hosts").symlink_to(known_hosts.resolve())
        _HOMES[known_hosts] = home
    pygit2.settings.homedir = str(home)


class Remote:
    def __init__(self, store: GitStore, url: str, token_env: str = "RECONCILER_GIT_TOKEN", ssh: SshSettings = SshSettings()):
        self.store, self.url, self._token_env, self._ssh = store, url, token_env, ssh
        tls.ensure()  # libgit2's CA locations as pygit2 sets them, before any fetch or push
        if ssh.known_hosts is not None:
            _trust(ssh.known_hosts)

    @classmethod
    def from_config(cls, store: GitStore, repository: "RepositoryConfig") -> "Remote | None":
        """The configured remote, or None without one."""
        if not repository.remote:
            return None
        return cls(store, repository.remote, repository.remote_token_env,
                   SshSettings(repository.ssh_key, repository.ssh_known_hosts, repository.ssh_passphrase_env))

    @classmethod
    def fetched(cls, store: GitStore, repository: "RepositoryConfig") -> "Remote | None":
        """The configured remote, fetched (None without one): what a command checks against."""
        remote = cls.from_config(store, repository)
        if remote is not None:
            remote.fetch()
        return remote

    def _callbacks(self) -> _Callbacks:
        return _Callbacks(os.environ.get(self._token_env), self._ssh)

    def _remote(self) -> pygit2.Remote:
        return self.store.repo.remotes.create_anonymous(self.url)

    def _failed(self, what: str, exc: BaseException, callbacks: _Callbacks) -> RetryableError:
        if callbacks.host_refused is not None and self.url.lower().startswith("https://"):
            return RetryableError(f"cannot {what} {self._safe_url()}: the TLS certificate of {callbacks.host_refused} is "
                                  "not trusted (libgit2 checks it against the system's CA certificates: add the "
                                  "server's CA there, or point SSL_CERT_FILE / SSL_CERT_DIR at a bundle holding it)")
        if callbacks.host_refused is not None:
            hint = (f"add its key to {self._ssh.known_hosts}" if self._ssh.known_hosts is not None
                    else "set [repository] ssh_known_hosts to a file holding its key")
            return RetryableError(f"cannot {what} {self._safe_url()}: the host key of {callbacks.host_refused} is not "
                                  f"trusted ({hint}, e.g. from `ssh-keyscan -p PORT HOST`)")
        return RetryableError(f"cannot {what} {self._safe_url()}: {exc}")

    def fetch(self) -> None:
        """Fetch every branch, and the applied markers, from the remote."""
        callbacks = self._callbacks()
        try:
            # Pruned: a branch deleted on the server must disappear here too (it is then an error for its
            # environment, never pushed back).
            self._remote().fetch(
                [f"+refs/heads/*:{REMOTE_PREFIX}*", f"+{MARKER_PREFIX}*:{REMOTE_MARKERS}*",
                 *(f"+refs/reconciler/{kind}/*:{REMOTE_STATE}{kind}/*" for kind in STATE_KINDS)],
                callbacks=callbacks,
                prune=pygit2.enums.FetchPrune.PRUNE,
            )
        except (pygit2.GitError, OSError) as exc:
            raise self._failed("fetch from", exc, callbacks) from exc

    def push_branch(self, ref: str) -> None:
        """Push one branch (never forced); a rejection is an error."""
        callbacks = self._callbacks()
        try:
            self._remote().push([f"{ref}:{ref}"], callbacks=callbacks)
        except (pygit2.GitError, OSError) as exc:
            raise self._failed(f"push {ref} to", exc, callbacks) from exc
        if callbacks.rejected:
            raise RetryableError(f"{self._safe_url()} rejected {ref}: {'; '.join(callbacks.rejected.values())}")

    @property
    def safe_url(self) -> str:
        return self._safe_url()

    def integrate(self, env: str, branch: str) -> Integration:
        """Bring the local branch up to the remote's (call under the environment's lock).

        The server is authoritative. ``refs/reconciler/seen/<env>`` remembers the
        server's tip this environment last integrated, which tells the two kinds
        of "the remote is behind us" apart: our own commits not pushed yet (the
        remote is where we last saw it: push them), and a rewrite on the server
        (a force-push, a reset: follow it). Following a rewrite keeps the old
        local tip at ``refs/reconciler/rewritten/<env>``; commits of ours that the
        server never had are re-applied on the new tip as one commit, or the
        environment stops with an error when they conflict. A branch deleted on
        the server stops the environment: it is never pushed back.
        """
        store = self.store
        local, remote = store.tip(branch), store.tip(REMOTE_PREFIX + branch)
        seen = store.tip(SEEN_PREFIX + env)
        if store.marker(env) is None and store.tip(REMOTE_MARKERS + env):
            store.set_marker(env, store.tip(REMOTE_MARKERS + env))  # take over from another replica
        self.take_state(env)
        if remote is None:
            if seen is not None:
                raise StallError(
                    f"{branch} was deleted on the server {self._safe_url()}; nothing was changed and it is not "
                    f"pushed back (the server is authoritative). Push the branch again (its last version is "
                    f"{seen[:12]}, kept locally as {branch}), or remove the environment from the config"
                )
            return Integration("ahead" if local else "none", local, remote)  # a branch not pushed yet
        if local == remote:
            self._saw(env, remote)
            return Integration("none", local, remote)
        if local is None:
            store.set_branch(branch, remote, "reconciler: branch from the remote")
            self._saw(env, remote)
            return Integration("created", remote, remote)
        if seen is not None and seen != remote and not store.is_ancestor(seen, remote):
            return self._follow_rewrite(env, branch, local, remote, seen)
        if store.is_ancestor(local, remote):
            store.set_branch(branch, remote, "reconciler: fast-forward to the remote")
            self._saw(env, remote)
            return Integration("fast-forward", remote, remote)
        if store.is_ancestor(remote, local):
            self._saw(env, remote)
            return Integration("ahead", local, remote)
        merge = store.merge(None, local, remote)
        if merge.tree is None:
            raise StallError(
                f"{branch} and the remote's {branch} diverged and conflict on {', '.join(merge.conflicts[:5])}; "
                "merge them on the remote by hand"
            )
        merged = store.commit(branch, local, merge.tree, f"Merge {branch} from the remote into the reconciler's commits\n",
                              extra_parents=(remote,))
        self._saw(env, remote)
        return Integration("merge", merged, remote)

    def _follow_rewrite(self, env: str, branch: str, local: str, remote: str, seen: str) -> Integration:
        store = self.store
        store.set_ref(REWRITTEN_PREFIX + env, local, f"reconciler: {branch} before the server rewrote it")
        unpublished = local != seen and not store.is_ancestor(local, seen)
        target = remote
        if unpublished:
            merge = store.merge(seen, local, remote)
            if merge.tree is None:
                raise StallError(
                    f"{branch} was rewritten on the server (its tip went from {seen[:12]} to {remote[:12]}, which "
                    f"does not contain it) while the reconciler had commits the server never got; they conflict "
                    f"with the new tip on {', '.join(merge.conflicts[:5])}. Nothing was changed or pushed; the "
                    f"reconciler's commits are kept at {REWRITTEN_PREFIX}{env} ({local[:12]}): re-apply them on the "
                    "server by hand"
                )
            if merge.tree != store.tree_of(remote):
                target = store.commit(None, remote, merge.tree,
                                      f"reconciler: re-apply the commits of {env} on the rewritten {branch}\n\n"
                                      f"The server rewrote {branch} from {seen[:12]} to {remote[:12]}; the commits "
                                      f"the reconciler had not pushed yet ({local[:12]}) are applied on the new tip.\n")
        store.set_branch(branch, target, f"reconciler: follow {branch} rewritten on the server")
        self._saw(env, remote)
        log.warning("branch rewritten on the server; following it", environment=env, branch=branch,
                    was=seen, now=remote, local_was=local, reapplied=unpublished and target != remote)
        return Integration("rewritten", target, remote, previous=local)

    def _saw(self, env: str, remote: str) -> None:
        if self.store.tip(SEEN_PREFIX + env) != remote:
            self.store.set_ref(SEEN_PREFIX + env, remote, "reconciler: the server's tip last integrated")

    def publish(self, env: str, branch: str) -> list[str]:
        """Push the branch, drift/<env> and the marker; returns refs the remote rejected."""
        store = self.store
        specs = []
        for ref in (store.branch_ref(branch), f"refs/heads/drift/{env}"):
            if store.tip(ref) is not None and store.tip(ref) != store.tip(REMOTE_PREFIX + ref.removeprefix("refs/heads/")):
                specs.append(f"{ref}:{ref}")
        if store.marker(env) is not None and store.marker(env) != store.tip(REMOTE_MARKERS + env):
            specs.append(f"+{MARKER_PREFIX}{env}:{MARKER_PREFIX}{env}")
        specs += self._state_specs(env)
        if not specs:
            return []
        callbacks = self._callbacks()
        try:
            self._remote().push(specs, callbacks=callbacks)
        except (pygit2.GitError, OSError) as exc:
            if "non-fast-forward" in str(exc) or "rejected" in str(exc):
                return [s.split(":")[-1] for s in specs]
            raise self._failed("push to", exc, callbacks) from exc
        for spec in specs:  # what the remote now has, so the next round knows
            src, dst = spec.lstrip("+").split(":")
            if dst in callbacks.rejected:
                continue
            if dst.startswith("refs/reconciler/") and not dst.startswith(MARKER_PREFIX):
                local_ref = REMOTE_STATE + dst.removeprefix("refs/reconciler/")
            elif dst.startswith(MARKER_PREFIX):
                local_ref = REMOTE_MARKERS + env
            else:
                local_ref = REMOTE_PREFIX + dst.removeprefix("refs/heads/")
            store.repo.references.create(local_ref, pygit2.Oid(hex=store.tip(src)), force=True)
            if dst == store.branch_ref(branch):
                self._saw(env, store.tip(src))
        return sorted(callbacks.rejected)

    def take_state(self, env: str) -> None:
        """The remote's state refs of ``env`` where they are newer (a descendant of ours), or where ours and
        theirs diverged (the server is authoritative); ours where it is newer (``publish`` pushes it)."""
        store = self.store
        for kind in STATE_KINDS:
            ref, tracked = f"refs/reconciler/{kind}/{env}", f"{REMOTE_STATE}{kind}/{env}"
            mine, theirs = store.tip(ref), store.tip(tracked)
            if theirs is None or mine == theirs or (mine is not None and store.is_ancestor(theirs, mine)):
                continue
            if mine is not None and not store.is_ancestor(mine, theirs):
                log.warning("the remote's state and ours diverged; taking the remote's", environment=env, ref=ref)
            store.set_ref(ref, theirs, f"reconciler: {kind} of {env} from the remote")

    def _state_specs(self, env: str) -> list[str]:
        """Push specs of the state refs of ``env`` that are newer here than on the remote."""
        store, specs = self.store, []
        for kind in STATE_KINDS:
            ref, tracked = f"refs/reconciler/{kind}/{env}", f"{REMOTE_STATE}{kind}/{env}"
            mine, theirs = store.tip(ref), store.tip(tracked)
            if mine is not None and mine != theirs and (theirs is None or store.is_ancestor(theirs, mine)):
                specs.append(f"+{ref}:{ref}")
        return specs

    def publish_state(self, env: str) -> None:
        """Push ``env``'s state refs now (a suspension made by the CLI reaches every replica)."""
        specs = self._state_specs(env)
        if not specs:
            return
        callbacks = self._callbacks()
        try:
            self._remote().push(specs, callbacks=callbacks)
        except (pygit2.GitError, OSError) as exc:
            raise self._failed("push to", exc, callbacks) from exc
        for spec in specs:
            src, dst = spec.lstrip("+").split(":")
            if dst not in callbacks.rejected:
                tracked = REMOTE_STATE + dst.removeprefix("refs/reconciler/")
                self.store.repo.references.create(tracked, pygit2.Oid(hex=self.store.tip(src)), force=True)

    def _safe_url(self) -> str:
        return redact_url(self.url)
