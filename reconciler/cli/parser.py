"""The command line's grammar: subcommands, their options and help (argparse only, nothing heavy).

Global options are accepted before and after the subcommand, as in git, kubectl
and terraform; each subcommand's help has a description and its exit codes.
Imported alone by ``reconciler --help`` and ``--version``, so those start fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from reconciler import __version__

__all__ = ["build_parser", "UsageError", "EXIT_OK", "EXIT_ERROR", "EXIT_PENDING", "EXIT_CONFLICT", "EXIT_HELD", "EXIT_USAGE"]

EXIT_OK, EXIT_ERROR, EXIT_PENDING, EXIT_CONFLICT, EXIT_HELD, EXIT_USAGE = 0, 1, 2, 3, 4, 64


class _Parser(argparse.ArgumentParser):
    wants_json = False  # the command line being parsed asks for JSON (--json, --format json)
    argv: list[str] = []  # that command line

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self.prog == "reconciler":  # the top level: the whole command line
            _Parser.argv = sys.argv[1:] if args is None else list(args)
            _Parser.wants_json = wants_json(_Parser.argv)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # argparse would exit 2, which means "pending" here
        if self.prog == "reconciler" and (message.startswith("unrecognized arguments: ")
                                          or message.startswith("argument COMMAND: invalid choice: ")):
            message += self._misplaced()
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        if _Parser.wants_json:  # a script reading stdout as JSON gets JSON, also for a usage error
            print(json.dumps({"error": f"{self.prog}: {message}", "details": [], "usage": True}))
        sys.exit(EXIT_USAGE)

    def _misplaced(self) -> str:
        """A hint when options of the subcommand came before it (``reconciler --json plan prod``,
        ``reconciler --format json plan prod``, whose ``json`` argparse takes for the command):
        where to put them, as a command to copy. Nothing unless every word before the subcommand
        is a global option (with its value) or an option of that subcommand (with its value)."""
        subs = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
        argv = _Parser.argv
        at = next((i for i, a in enumerate(argv) if a in subs), None)
        if at is None:
            return ""
        mine = _takes_value(self)
        theirs = _takes_value(subs[argv[at]])
        before, i = [], 0
        while i < at:
            word = argv[i]
            name = word.split("=", 1)[0]
            if name in mine:  # a global option (the subcommands have copies): it may stay where it is
                i += 1 + (mine[name] and "=" not in word)
                continue
            if name not in theirs:
                return ""
            n = 1 + (theirs[name] and "=" not in word)
            before += argv[i:i + n]
            i += n
        if not before or i != at:
            return ""
        rest = argv[:]
        for word in before:
            rest.remove(word)
        options = [w for w in before if w.startswith("-")]
        return (f" ({' '.join(before)} {'is an option' if len(options) == 1 else 'are options'} of "
                f"`{argv[at]}`: put {'it' if len(options) == 1 else 'them'} after the command, as in "
                f"`reconciler {' '.join([*rest, *before])}`)")


def _takes_value(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Each option string of ``parser`` -> whether it takes a value (``--format json``, not ``--json``)."""
    return {o: a.nargs != 0 for a in parser._actions for o in a.option_strings}


def wants_json(argv: list[str]) -> bool:
    """Does this command line ask for JSON output?"""
    return "--json" in argv or "--format=json" in argv or any(
        a == "--format" and b == "json" for a, b in zip(argv, argv[1:]))


class UsageError(Exception):
    """A command line that names something that is not there (exit 64)."""


def _add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options. They are accepted before and after the subcommand, as in git,
    kubectl and terraform: the subcommand's copies default to SUPPRESS, so a value given
    before the subcommand is not overwritten by the subcommand's default."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    g = p.add_argument_group("global options (before or after the command)")
    g.add_argument("--config", "-c", metavar="PATH", default=default(None),
                   help="config file (default $RECONCILER_CONFIG, else ./reconciler.toml)")
    g.add_argument("--log-level", default=default(None), choices=["debug", "info", "warning", "error"],
                   help="log level (default warning; info with -v)")
    g.add_argument("--log-format", default=default("auto"), choices=["auto", "json", "console"],
                   help="log format on stderr (default: console on a terminal, JSON otherwise)")
    g.add_argument("-v", "--verbose", action="store_true", default=default(False),
                   help="log every action (same as --log-level info)")
    g.add_argument("--no-progress", action="store_true", default=default(False),
                   help="never show progress, even on a terminal")


_EXITS = {
    "export": "0 exported or nothing to export · 1 error · 3 conflicts left",
    "plan": "0 in sync · 2 changes pending · 1 error (invalid flows, a refused mass deletion, a --status not set)",
    "validate": "0 no problems · 1 problems found",
    "promote": "0 done or nothing to promote · 1 error",
    "rollback": "0 done or nothing to roll back · 1 error",
    "sync": "0 done · 1 error · 3 conflicts left",
    "status": "0 · 1 an environment has an error",
    "history": "0 · 1 error",
    "schema": "0",
    "render": "0 rendered · 1 a flow cannot be rendered (each reason printed as file:pointer: message)",
    "run": "0 stopped by SIGTERM/SIGINT · 1 cannot start",
    "healthcheck": "0 the service answers · 1 it does not",
    "suspend": "0 suspended (or already) · 1 error",
    "resume": "0 resumed (or was not suspended) · 1 error",
    "demo": "as run",
    "migrate": "0 migrated or nothing to migrate · 1 error (a flow that cannot be read whole is left and named)",
}


def _positive(text: str) -> int:
    """A count of 1 or more (``-n 0`` printed one commit, ``-n -1`` all of them)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return value


def _sub(sub, name: str, summary: str, description: str):
    s = sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
                       epilog=f"exit codes: {_EXITS[name]} · 64 usage error",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(s, top=False)
    return s


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="reconciler", description="GitOps reconciler for flows: git is the system of record.",
                epilog="Run `reconciler COMMAND --help` for a command's options and exit codes.")
    _add_common(p, top=True)
    p.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    s = _sub(sub, "export", "commit the environment's live flows to its branch",
             "Creates the repository and the branch on the first export. Changes pushed to git and not yet\n"
             "synced are left alone (an export never undoes a push).")
    s.add_argument("env")
    s.add_argument("--allow-mass-delete", action="store_true",
                   help="commit deletions of more flows than max_delete allows (or of every flow)")
    s.add_argument("-q", "--quiet", action="store_true", help="only the summary line and errors")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "plan", "show what a sync would do (changes nothing)",
             "Exit 2 when changes are pending. With --against REF: what merging REF into the environment's\n"
             "branch would do, with a semantic diff per flow; with --status too, the verdict is set as a\n"
             "commit status on REF's commit (a merge-request pipeline).")
    s.add_argument("env")
    s.add_argument("--against", metavar="REF", help="plan the merge of REF (a branch, tag or commit) into the environment's branch")
    s.add_argument("--format", choices=["text", "json", "markdown"], default=None,
                   help="output format (markdown: a merge-request comment; needs --against)")
    s.add_argument("--status", action="store_true",
                   help="set the plan's verdict as commit status flow-reconciler/ENV on REF's commit (success, or "
                        "failure for conflicts and invalid flows) through the config's github/gitlab/gitea [[notify]]; "
                        "needs --against")
    s.add_argument("-q", "--quiet", action="store_true", help="only the summary line and errors")
    s.add_argument("--json", action="store_true", help="machine-readable output (same as --format json)")

    s = _sub(sub, "validate", "check flow files: syntax, path/identity, schema, placeholders, secrets",
             "Checks a branch of the repository (--branch, no checkout needed), flow files or folders of a\n"
             "working tree, or every environment's branch. One line `file:pointer: message` per problem.")
    s.add_argument("paths", nargs="*", metavar="PATH", help="flow files or folders in a working tree")
    s.add_argument("--branch", "-b", metavar="B", help="check a branch of the repository instead (no checkout needed)")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "promote", "prepare a branch promote/FROM-to-TO/<id> with FROM's versions of flows",
             "The branch starts at TO's branch and holds FROM's versions: review it as a merge request.")
    s.add_argument("source", metavar="FROM")
    s.add_argument("target", metavar="TO")
    s.add_argument("--flow", action="append", default=[], metavar="NAME[@VERSION]", help="promote only this flow (repeatable; default: all)")
    s.add_argument("--as", dest="rename", metavar="NAME@VERSION", help="write the one --flow under this name and version")
    s.add_argument("--push", action="store_true", help="push the branch to [repository] remote")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "rollback", "commit to the environment's branch its flows as they were at REV",
             "A new commit (history is kept); the next sync applies it.")
    s.add_argument("env")
    s.add_argument("--to", required=True, metavar="REV", help="a commit, tag or revision (env/production~2)")
    s.add_argument("--flow", action="append", default=[], metavar="NAME[@VERSION]", help="roll back only this flow (repeatable; default: all)")
    s.add_argument("--allow-mass-delete", action="store_true",
                   help="commit the removal of more flows than max_delete allows (or of every flow)")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "migrate", "store the environment's flows in git in the form it writes (sidecar files for code)",
             "One commit on the environment's branch moving embedded code (function bodies, templates, custom\n"
             "SQL) to sidecar files beside each flow's JSON, or back with form = \"single-file\". The flows'\n"
             "content does not change, so nothing is imported. The first export does it by itself.")
    s.add_argument("env")
    s.add_argument("--dry-run", action="store_true", help="say what would move, commit nothing")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "sync", "reconcile the environment with its branch now",
             "Imports what changed in git, handles drift per the environment's policy, never overwrites a\n"
             "conflict. A run that would delete more than max_delete flows stops before changing anything.\n"
             "Outside the environment's sync windows it refuses (saying when they open), unless --force\n"
             "and the windows allow manual syncs; while the environment is suspended it plans only.")
    s.add_argument("env")
    s.add_argument("--dry-run", action="store_true", help="plan only, change nothing")
    s.add_argument("--force", action="store_true", help="sync inside a deny window or outside the allow windows "
                   "(only where they say manual = true)")
    s.add_argument("--allow-mass-delete", action="store_true",
                   help="carry out deletions of more flows than max_delete allows (or of every flow)")
    s.add_argument("-q", "--quiet", action="store_true", help="only the summary line and errors")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    for verb, what in (("suspend", "stop importing, deleting and adopting in an environment (or some flows of it)"),
                       ("resume", "lift a suspension: what is pending is applied at the next sync")):
        s = _sub(sub, verb, what,
                 "Kept at refs/reconciler/suspend/<env> (pushed to [repository] remote), so every replica and a\n"
                 "restart see it. While suspended, drift is still detected and plans still made.")
        s.add_argument("env")
        s.add_argument("--flow", action="append", default=[], metavar="NAME[@VERSION]",
                       help="only this flow (repeatable; default: the whole environment)")
        if verb == "suspend":
            s.add_argument("--reason", default="", metavar="TEXT", help="why (shown in the status)")
            s.add_argument("--by", default=None, metavar="WHO", help="who (default: this user at this host)")
        s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "status", "per environment: branch tip, applied marker, flow counts",
             "Read-only; never waits for a running service (the answer then says it may be stale).")
    s.add_argument("env", nargs="?")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    s = _sub(sub, "history", "commits of an environment's branch, or of one flow",
             "Newest first, as git log: id, date, author, subject.")
    s.add_argument("env")
    s.add_argument("name", nargs="?")
    s.add_argument("version", nargs="?")
    s.add_argument("--drift", action="store_true", help="show drift/<env> (live versions saved before overwriting)")
    s.add_argument("-n", "--limit", type=_positive, default=None, metavar="N", help="at most this many commits (1 or more)")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    _sub(sub, "schema", "print the JSON Schema of the config file", "Editors can use it to check reconciler.toml.")

    s = _sub(sub, "render", "render event-processing flows as Flink SQL",
             "Flows of \"kind\": \"event-processing\" from files or a branch, one script each, as IBM Event\n"
             "Processing's SQL export would write them. With --env, that environment's parameters are\n"
             "substituted; secrets are <redacted> unless the environment is a flink-sql one (which needs\n"
             "them). Rendering is one-way: SQL is never read back as a flow.")
    s.add_argument("paths", nargs="*", metavar="FILE.json", help="flow files")
    s.add_argument("--branch", "-b", metavar="B", help="render the event-processing flows of a branch instead")
    s.add_argument("--flow", action="append", default=[], metavar="NAME[@VERSION]", help="only this flow (repeatable)")
    s.add_argument("--env", metavar="ENV", help="substitute this environment's parameters (and its secrets if it is flink-sql)")
    s.add_argument("--format", choices=["sql", "json"], default="sql", help="sql (default) or json lines")
    s.add_argument("-o", "--output", metavar="DIR", help="write <name>@<version>.sql files into DIR")

    s = _sub(sub, "run", "run the service: keep every environment in sync",
             "Watches the repository and the environments, checks for drift every interval, serves\n"
             "/healthz, /readyz, /metrics and the API on --listen.")
    s.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (default: the config's [server] listen, 127.0.0.1:9420)")
    s.add_argument("--shard", metavar="I/N", help="own only environments whose hash mod N is I (or $RECONCILER_SHARD)")

    s = _sub(sub, "healthcheck", "ask the running service on this machine whether it is alive (or ready)",
             "For container health checks: the address is the one `run` would listen on (--listen, else\n"
             "$RECONCILER_LISTEN, else [server] listen); 0.0.0.0 and :: are asked on the loopback.")
    s.add_argument("--listen", metavar="HOST:PORT", help="the service's address (default: as `run` would choose)")
    s.add_argument("--ready", action="store_true", help="ask /readyz (every environment reconciled once) instead of /healthz")
    s.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")

    s = _sub(sub, "demo", "write a ready demo (repository + two folder environments) and run the service on it",
             "The demo lives in --dir (default ./demo); running it again reuses it.")
    s.add_argument("--dir", default="demo", help="folder of the demo (default ./demo; reused if it exists)")
    s.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (default 127.0.0.1:9420)")
    s.add_argument("--no-run", action="store_true", help="only write the demo")
    return p
