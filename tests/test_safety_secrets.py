"""No secret slips through (issue 11): every shape of secret is refused before a commit, and no
message quotes a value (schema errors, status, logs, the merge-request comment)."""

from __future__ import annotations

import json

import pytest

from reconciler.templating import Templating
from tests.conftest import Workspace
from tests.promokit import ACC_API, ACC_PW, PROD_PW, VALUES, billing, everything_in_git, orders, setup_two
from tests.servicekit import ServiceProcess, wait_for

T = Templating(secrets={"DB_PASSWORD": "pr0d-pa55w0rd", "PIN": "48151623"}, secret_pointers=("/auth",))


@pytest.mark.parametrize(("doc", "pointer"), [
    ({"cfg": {"pr0d-pa55w0rd": True}}, "/cfg/***"),  # a secret value as an object key (masked in the pointer too)
    ({"cfg": {"password": 12345678}}, "/cfg/password"),                    # a number in a password field
    ({"cfg": {"dbPassword": {"value": "hunter2-x"}}}, "/cfg/dbPassword/value"),  # an object under a secret key
    ({"cfg": {"dbPassword": ["hunter2-x"]}}, "/cfg/dbPassword/0"),         # an array under a secret key
    ({"cfg": {"code": 48151623}}, "/cfg/code"),                            # a secret value as a number
    ({"auth": True}, "/auth"),                                             # anything in an explicit secret field
    ({"auth": {"k": 1}}, "/auth/k"),
    ({"note": "call with pr0d-pa55w0rd"}, "/note"),                        # a secret value inside text
])
def test_every_shape_of_secret_is_found(doc, pointer) -> None:
    """Strings, keys, numbers, objects and arrays: the scan names the pointer, never the value."""
    problems = T.scan(doc)
    assert pointer in [p for p, _ in problems], problems
    assert "pr0d-pa55w0rd" not in repr(problems) and "hunter2" not in repr(problems)


@pytest.mark.parametrize("doc", [
    {"tls": {"privatekey": "C:\\Temp\\PRIVATE.key"}},     # a file path
    {"tls": {"privateKey": "/etc/ssl/private/node.key"}},
    {"mqtt": {"password": "${MQTT_PASSWORD}"}},            # an environment-variable reference
    {"mqtt": {"password": ""}},
    {"mqtt": {"usePassword": True}},                       # a boolean
    {"proxy": {"apiToken": {"port": 8443, "path": "/run/token"}}},  # a port under a secret key
    {"mqtt": {"password": "${secret:MQTT_PASSWORD}"}},
    {"tokenizer": "split", "tokens": 5},                   # not secret fields at all
])
def test_values_that_cannot_be_credentials_are_not_refused_for_their_key_name(doc) -> None:
    assert T.scan(doc) == []


def test_a_real_plaintext_password_under_a_secret_key_is_still_refused() -> None:
    """telegram's sockspassword holding a password is refused, with how to fix it."""
    (problem,) = T.scan({"bot": {"sockspassword": "s0cks-hunter2"}})
    assert problem[0] == "/bot/sockspassword" and "secret store" in problem[1] and "secret_allow" in problem[1]


def test_secret_allow_lets_a_named_field_through() -> None:
    allowing = Templating(secret_allow=("/nodes/*/privatekey",))
    assert allowing.scan({"nodes": [{"privatekey": "-----BEGIN PUBLIC KEY-----"}]}) == []
    assert allowing.scan({"nodes": [{"password": "hunter2-x"}]}) != []


def test_a_flow_whose_name_holds_a_secret_value_is_not_exported(ws: Workspace) -> None:
    """The name becomes a file name and appears in commit messages: the flow is refused before any commit."""
    setup_two(ws)
    ws.put("acceptance", "leak.json", billing(name=f"billing-{ACC_PW}"))
    out = ws.cli("export", "acceptance")
    assert out.returncode == 1 and "secret scan" in out.stdout + out.stderr
    assert ACC_PW not in out.stdout + out.stderr
    text = everything_in_git(ws)
    assert not any(v in text for v in VALUES if "pa55" in v)
    log = ws.git("log", "--all", "--format=%B", cwd=ws.repo)
    assert ACC_PW not in log and PROD_PW not in log


def _schema_with_a_short_password(ws: Workspace) -> None:
    (ws.root / "schema.json").write_text(json.dumps({
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"type": "object", "properties": {"config": {
            "type": "object", "properties": {"password": {"type": "string", "maxLength": 4}}}}}}},
    }))


def test_a_schema_error_about_a_rendered_secret_never_prints_it(ws: Workspace) -> None:
    """'pr0d-pa55w0rd' is too long -> 'the value is too long': CLI, status --json and the markdown comment."""
    setup_two(ws)
    _schema_with_a_short_password(ws)
    ws.config.write_text(ws.config.read_text().replace('secrets_dir = "secrets/production"',
                                                       'secrets_dir = "secrets/production"\nschema = "schema.json"'))
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=2))
    ws.cli("export", "acceptance", check=True)
    clone = ws.clone("env/production")
    ws.git("merge", "-q", "origin/env/acceptance", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    outputs = [ws.cli("sync", "production"), ws.cli("status", "--json"), ws.cli("plan", "production", "--json"),
               ws.cli("sync", "production", "-v", "--log-format", "json")]
    ws.cli("promote", "acceptance", "production")
    branch = ws.git("for-each-ref", "--format=%(refname:short)", "refs/heads/promote/", cwd=ws.repo).split()
    if branch:
        outputs.append(ws.cli("plan", "production", "--against", branch[0], "--format", "markdown"))
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert "is too long" in text
    assert PROD_PW not in text and ACC_PW not in text


def test_the_service_status_and_logs_never_hold_a_secret(ws: Workspace) -> None:
    """The same schema error through `reconciler run`: status API, metrics and log lines are clean."""
    setup_two(ws)
    _schema_with_a_short_password(ws)
    ws.config.write_text(ws.config.read_text().replace('secrets_dir = "secrets/production"',
                                                       'secrets_dir = "secrets/production"\nschema = "schema.json"'))
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=2))
    ws.cli("export", "acceptance", check=True)
    clone = ws.clone("env/production")
    ws.git("merge", "-q", "origin/env/acceptance", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    with ServiceProcess(ws.config, "-v") as svc:
        wait_for(lambda: any("too long" in p for p in svc.status("production")["problems"]), what="the schema error")
        _, status = svc.request("GET", "/api/v1/status")
        _, metrics = svc.request("GET", "/metrics")
        text = json.dumps(status) + metrics + "\n".join(svc.raw)
    assert "is too long" in text
    assert PROD_PW not in text and ACC_PW not in text
