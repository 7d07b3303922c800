"""Credentials from the secret store into Node-RED, and the secret scan on real Node-RED content (4 and 5).

Secrets live in files of the environment's ``secrets_dir``; git holds
``${secret:NAME}`` placeholders only. No test prints a secret value: checks on
values are booleans with a message of their own.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import load_config
from reconciler.engine import Engine, make_driver
from reconciler.flows import FlowKey
from reconciler.testing import Wrapped
from tests.conftest import Workspace
from tests.nodered import SETTINGS as BASE_SETTINGS, VERSIONS, NodeRed, node_red_fixture
from tests.test_node_red_instance import SETTINGS, broker, fn, n, tab

TOKEN_VAR = "RECONCILER_TEST_NR_CRED_TOKEN"
USER, PASSWORD = "plant-user-4711", "mqtt-pw-0815-not-in-git"
SENSORS, DISPLAY = FlowKey("sensors", "1"), FlowKey("display", "1")


instance = node_red_fixture("nr-cred", SETTINGS)


@pytest.fixture
def nr(instance: NodeRed, monkeypatch: pytest.MonkeyPatch) -> NodeRed:
    instance.reset()
    monkeypatch.setenv(TOKEN_VAR, instance.token)
    return instance


@pytest.fixture
def site(ws: Workspace, nr: NodeRed) -> Workspace:
    write_config(ws, nr)
    put_secrets(ws, MQTT_USER=USER, MQTT_PASSWORD=PASSWORD)
    return ws


def write_config(ws: Workspace, nr: NodeRed, **extra: Any) -> None:
    (ws.root / "secrets").mkdir(exist_ok=True)
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    ws.config.write_text(
        '[repository]\npath = "state/flows.git"\n\n'
        f'[[environment]]\nname = "production"\ndriver = "node-red"\nurl = "{nr.url}"\ntoken_env = "{TOKEN_VAR}"\n'
        f'drift = "restore"\nprune = true\nsecrets_dir = "secrets"\nhealth_timeout = 20\n{lines}')


def put_secrets(ws: Workspace, **values: str) -> None:
    folder = ws.root / "secrets"
    folder.mkdir(exist_ok=True)
    for name, value in values.items():
        (folder / name).write_text(value)


def engine(ws: Workspace) -> Engine:
    return Engine(load_config(ws.config), create_repository=True)


def push(ws: Workspace, docs: dict[str, Any]) -> None:
    from tests.test_node_red import push as push_files

    engine(ws)
    push_files(ws, docs)


def creds(nr: NodeRed, kind: str, nid: str) -> dict[str, Any]:
    status, body = nr.admin("GET", f"/credentials/{kind}/{nid}")
    assert status == 200
    return body


def doc(name: str, tid: str, nodes: list[dict], configs: list[dict] = (), **tab_extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "version": "1", "tab": {"id": tid, "type": "tab", "disabled": False, "info": "",
                                                               "env": [], **tab_extra}, "nodes": nodes}
    if configs:
        d["configs"] = list(configs)
    return d


SECRET_BROKER = dict(broker("c-mqtt"), credentials={"user": "${secret:MQTT_USER}", "password": "${secret:MQTT_PASSWORD}"})


def sensors(code: str = "return msg;") -> dict[str, Any]:
    return doc("sensors", "t-s", [dict(fn("s-fn", "t-s", [["s-out"]]), func=code),
                                  n("s-out", "mqtt out", "t-s", topic="s", qos="", retain="", broker="c-mqtt")],
               [SECRET_BROKER])


def display() -> dict[str, Any]:
    return doc("display", "t-d", [n("d-out", "mqtt out", "t-d", topic="d", qos="", retain="", broker="c-mqtt"),
                                  n("d-probe", "test-probe", "t-d")], [SECRET_BROKER])


def every_git_object(ws: Workspace) -> bytes:
    return subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=ws.repo, capture_output=True,
                          check=True).stdout


def test_credentials_from_the_secret_store_reach_the_broker_and_no_git_object(site: Workspace, nr: NodeRed) -> None:
    """${secret:} placeholders in a broker's credentials: Node-RED holds user and password; git (every object,
    the driver's memory included) holds neither; the next sync finds nothing to do."""
    push(site, {"flows/sensors/1.json": sensors()})
    out = engine(site).sync("production")
    assert not out.failed and not out.problems, (out.failed, out.problems)
    held = creds(nr, "mqtt-broker", "c-mqtt")
    assert held.get("has_password") is True and held.get("user") == USER, "the broker lacks the store's credentials"
    objects = every_git_object(site)
    assert USER.encode() not in objects and PASSWORD.encode() not in objects, "a credential value reached git"
    memory = json.loads(site.git("show", "refs/reconciler/driver/production:state.json", cwd=site.repo))
    assert memory["format"] == 1 and list(memory["nodes"]) == ["c-mqtt"]
    assert memory["nodes"]["c-mqtt"]["fields"] == ["password", "user"]
    assert engine(site).sync("production", dry_run=True).plan.changes == ()
    assert engine(site).export("production").commit is None  # Node-RED returns no credentials: not drift


def test_credentials_are_sent_again_only_when_they_change(site: Workspace, nr: NodeRed) -> None:
    """Changing a flow that carries a shared broker does not resend its credentials (which would restart the
    other flow using it); a rotated secret is resent at the next sync."""
    push(site, {"flows/sensors/1.json": sensors(), "flows/display/1.json": display()})
    assert not engine(site).sync("production").failed
    with nr.comms("status/#") as comms:
        comms.messages(0.5)  # the retained statuses
        push(site, {"flows/sensors/1.json": sensors("msg.payload = 1;\nreturn msg;")})
        out = engine(site).sync("production")
        assert [s.key for s in out.done] == [SENSORS] and not out.failed
        restarted = [t for t, _ in comms.messages(1.0) if t == "status/d-probe"]
    assert restarted == []  # the broker was not sent again, so display did not restart
    put_secrets(site, MQTT_USER="rotated-user-1234")
    out = engine(site).sync("production")
    assert {s.key for s in out.done} == {SENSORS, DISPLAY} and not out.failed, out.failed
    assert creds(nr, "mqtt-broker", "c-mqtt").get("user") == "rotated-user-1234", "the rotated user was not sent"
    assert engine(site).sync("production", dry_run=True).plan.changes == ()


def test_a_credential_dropped_from_git_is_dropped_in_node_red(site: Workspace, nr: NodeRed) -> None:
    """A field removed from a node's credentials in git is removed in Node-RED too (sent empty)."""
    push(site, {"flows/sensors/1.json": sensors()})
    assert not engine(site).sync("production").failed
    only_user = sensors()
    only_user["configs"] = [dict(broker("c-mqtt"), credentials={"user": "${secret:MQTT_USER}"})]
    push(site, {"flows/sensors/1.json": only_user})
    assert not engine(site).sync("production").failed
    assert creds(nr, "mqtt-broker", "c-mqtt").get("has_password") is False


def test_subflow_instance_and_global_config_credentials_come_whole_from_git(site: Workspace, nr: NodeRed) -> None:
    """A subflow instance's cred env vars and global-config's credential map, from the store: the flows see
    them (env.get), and a name dropped from git is gone."""
    put_secrets(site, SF_TOKEN="sf-token-4711", SF_OTHER="sf-other-4711", GLOBAL_KEY="global-key-4711")
    sf = {"id": "sf", "type": "subflow", "name": "sf", "info": "", "in": [], "out": [],
          "env": [{"name": "TOKEN", "type": "cred", "value": ""}, {"name": "OTHER", "type": "cred", "value": ""}]}
    # The flows may not hold the values (the scan would refuse them): they show the lengths.
    show = "node.status({text: (env.get('TOKEN') || '').length + '/' + (env.get('OTHER') || '').length});"
    inner = dict(fn("sf-f", "sf"), initialize=show)
    instance = n("i", "subflow:sf", "t-a", env=[{"name": "TOKEN", "type": "cred", "value": ""}],
                 credentials={"TOKEN": "${secret:SF_TOKEN}", "OTHER": "${secret:SF_OTHER}"})
    check = "node.status({text: String(env.get('GLOBAL_KEY').length)});"
    flow = doc("a", "t-a", [instance, dict(fn("g-f", "t-a"), initialize=check)])
    flow["subflows"] = [sf, inner]
    gc = {"id": "gc", "type": "global-config", "modules": {},
          "env": [{"name": "GLOBAL_KEY", "value": "", "type": "cred"}],
          "credentials": {"map": {"GLOBAL_KEY": "${secret:GLOBAL_KEY}"}}}
    with nr.comms("status/#") as comms:
        comms.messages(0.3)
        push(site, {"flows/a/1.json": flow, "flows/_instance/1.json": {"name": "_instance", "version": "1",
                                                                       "configs": [gc]}})
        out = engine(site).sync("production")
        assert not out.failed, out.failed
        statuses = dict(comms.messages(1.0))
    assert statuses.get("status/g-f") == {"text": "15"}
    assert statuses.get("status/i-sf-f") == {"text": "13/13"}
    assert creds(nr, "subflow:sf", "i") == {"has_TOKEN": True, "has_OTHER": True}
    instance["credentials"] = {"TOKEN": "${secret:SF_TOKEN}"}
    push(site, {"flows/a/1.json": flow})
    assert not engine(site).sync("production").failed
    assert creds(nr, "subflow:sf", "i") == {"has_TOKEN": True}  # the whole set was sent: OTHER is gone
    assert b"4711" not in every_git_object(site)


# -- the secret scan on what Node-RED returns ---------------------------------------------------------------


def using(cid: str, tid: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """A tab whose one node uses ``config`` (contrib-like node types: Node-RED stores them as sent)."""
    return [tab(tid, tid), dict(config, id=cid), n(f"{tid}-user", "contrib user", tid, config=cid)]


TELEGRAM = {"type": "telegram bot", "botname": "plant_alert_bot", "usernames": "", "chatids": "", "baseapiurl": "",
            "updatemode": "polling", "pollinterval": "300", "usesocks": False, "sockshost": "", "socksport": "6667",
            "socksusername": "anonymous", "sockspassword": "", "bothost": "", "botpath": "", "localbotport": "8443",
            "publicbotport": "8443", "privatekey": "C:\\Temp\\PRIVATE.key", "certificate": "C:\\Temp\\PUBLIC.pem",
            "useselfsignedcertificate": False, "sslterminated": False, "verboselogging": False}


def test_the_secret_scan_lets_through_what_is_not_secret_shaped_and_refuses_the_rest(ws: Workspace, nr: NodeRed,
                                                                                    monkeypatch) -> None:
    """Key names that look secret holding a file path, an ${ENV} reference, an empty string, a boolean or a port
    are exported; telegram's plaintext sockspassword is refused with how to fix it; a publishable key is
    refused until secret_allow lists its pointer."""
    monkeypatch.setenv(TOKEN_VAR, nr.token)
    nodes = [  # tabs by name: no instance document
        *using("pay", "payments", {"type": "payment-config", "api_key": "pk_live_51Hpublishable000"}),
        *using("pg", "postgres", {"type": "postgreSQLConfig", "host": "db.local", "port": "5432", "database": "plant",
                                  "user": "${PGUSER}", "password": "${PGPASSWORD}", "apikey": ""}),
        *using("sftp-cfg", "sftp", {"type": "sftp", "host": "files.local", "port": 22, "username": "pi",
                                "privateKey": "/home/pi/.ssh/id_rsa", "usePassword": False,
                                "credential": {"file": "~/.ssh/id_rsa.pub", "port": 22}}),
        *using("bot-ok", "telegram", TELEGRAM),
        *using("bot-plain", "telegram-plain", dict(TELEGRAM, sockspassword="hunter2-in-clear")),
    ]
    nr.deploy(nodes)
    write_config(ws, nr)
    out = engine(ws).export("production")
    assert set(out.failed) == {FlowKey("telegram-plain", "1"), FlowKey("payments", "1")}
    plain = out.failed[FlowKey("telegram-plain", "1")]
    assert "/configs/0/sockspassword" in plain and "secret store" in plain and "secret_allow" in plain
    assert "hunter2" not in json.dumps({str(k): v for k, v in out.failed.items()})
    tree = ws.git("ls-tree", "-r", "--name-only", "env/production", cwd=ws.repo).split()
    assert tree == ["flows/postgres/1.json", "flows/sftp/1.json", "flows/telegram/1.json"]
    write_config(ws, nr, secret_allow=["/configs/*/api_key"])
    out = engine(ws).export("production")
    assert list(out.failed) == [FlowKey("telegram-plain", "1")]
    assert "flows/payments/1.json" in ws.git("ls-tree", "-r", "--name-only", "env/production", cwd=ws.repo)


def test_a_cred_env_var_written_inline_is_refused_by_the_scan(ws: Workspace, nr: NodeRed, monkeypatch) -> None:
    """GET /flows returns an inline cred value in clear: it is read as the tab's credential, so the scan refuses
    the tab (the value is no placeholder) and it never reaches git."""
    monkeypatch.setenv(TOKEN_VAR, nr.token)
    nr.deploy([tab("t-k", "keys", [{"name": "API_KEY", "value": "inline-4711", "type": "cred"}])])
    write_config(ws, nr)
    out = engine(ws).export("production")
    why = out.failed[FlowKey("keys", "1")]
    assert "/tab/credentials/API_KEY" in why and "secret store" in why
    assert b"inline-4711" not in every_git_object(ws)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_secret_scan_refuses_none_of_the_examples_shipped_with_node_red(version: str, tmp_path: Path) -> None:
    """No false refusal on real content: the 114 example tabs pass a node-red environment's scan."""
    from reconciler.config import parse_config
    from reconciler.drivers.node_red import flow_documents
    from reconciler.templating import Templating
    from tests.nodered import find_install, unavailable
    from tests.test_node_red import example_batches

    install = find_install(version)
    if isinstance(install, str):
        unavailable(install)
    env = parse_config({"environment": [{"name": "edge", "driver": "node-red", "url": "http://127.0.0.1:1880"}]},
                       base=tmp_path).env("edge")
    scan = Templating(secret_pointers=env.secret_fields, secret_keys=env.secret_keys).scan
    batches, _, tabs = example_batches(install)
    docs = [d for batch in batches for d in flow_documents(batch).values()]
    assert len(docs) == tabs and [(d["name"], scan(d)) for d in docs if scan(d)] == []


def edit_in_the_editor(nr: NodeRed, node_id: str, **fields: Any) -> None:
    """What a person does in Node-RED's editor: change a node and deploy (no credentials sent: Node-RED keeps
    the ones it holds)."""
    status, body = nr.admin("GET", "/flows")
    assert status == 200
    for node in body["flows"]:
        if node.get("id") == node_id:
            node.update(fields)
    status, _ = nr.admin("POST", "/flows", {"flows": body["flows"], "rev": body["rev"]},
                         {"Node-RED-Deployment-Type": "flows"})
    assert status in (200, 204)


def test_an_editor_change_adopted_into_git_keeps_the_credentials_placeholders(ws: Workspace, nr: NodeRed) -> None:
    """Node-RED never returns credentials: an adopt (and an export) takes them from git's version of the flow,
    so git keeps ${secret:} placeholders and a sync into a new instance still sends them."""
    write_config(ws, nr, drift="adopt")
    text = ws.config.read_text().replace('drift = "restore"\n', "")
    ws.config.write_text(text)
    put_secrets(ws, MQTT_USER=USER, MQTT_PASSWORD=PASSWORD)
    push(ws, {"flows/sensors/1.json": sensors()})
    assert not engine(ws).sync("production").failed
    edit_in_the_editor(nr, "s-fn", func="msg.payload = 42;\nreturn msg;")
    out = engine(ws).sync("production")
    assert out.commit is not None and not out.failed, (out.failed, out.problems)
    committed = json.loads(ws.git("show", "env/production:flows/sensors/1.json", cwd=ws.repo))
    # the function's code is a sidecar file in git (the split form)
    assert "msg.payload = 42" in ws.git("show", "env/production:flows/sensors/1/s-fn.func.js", cwd=ws.repo)
    brokers = [c for c in committed.get("configs", []) if c["id"] == "c-mqtt"]
    assert brokers and brokers[0]["credentials"] == SECRET_BROKER["credentials"]
    assert USER.encode() not in every_git_object(ws) and PASSWORD.encode() not in every_git_object(ws)


@pytest.mark.parametrize("drift", ["report", "restore"])
def test_a_rotated_secret_is_deployed_as_a_change_not_reported_as_drift(ws: Workspace, nr: NodeRed, drift: str) -> None:
    """git unchanged, the secret store's password rotated: whatever the drift policy, the plan imports the flow
    ("a parameter or secret value changed"), Node-RED gets the new password, and nothing is saved as drift."""
    write_config(ws, nr)
    ws.config.write_text(ws.config.read_text().replace('drift = "restore"', f'drift = "{drift}"'))
    put_secrets(ws, MQTT_USER=USER, MQTT_PASSWORD=PASSWORD)
    push(ws, {"flows/sensors/1.json": sensors()})
    assert not engine(ws).sync("production").failed
    put_secrets(ws, MQTT_PASSWORD="rotated-" + PASSWORD)
    plan = engine(ws).sync("production", dry_run=True)
    steps = {s.key: s for s in plan.plan.steps}
    assert steps[SENSORS].action.value == "import" and "secret value changed" in steps[SENSORS].reason
    assert plan.states["drifted"] == 0
    out = engine(ws).sync("production")
    assert not out.failed and SENSORS in {s.key for s in out.done}
    memory = json.loads(ws.git("show", "refs/reconciler/driver/production:state.json", cwd=ws.repo))
    assert memory["nodes"]["c-mqtt"]["fields"] == ["password", "user"]
    assert engine(ws).sync("production", dry_run=True).plan.changes == ()
    assert b"rotated-" not in every_git_object(ws)


# -- drift on a flow with credentials: restore, report, and an editor that sets a credential ------------------

CREDENTIAL_SECRET = json.loads(BASE_SETTINGS["credentialSecret"])  # settings.js source: a JSON string
EDITED_KEEPALIVE = "15"  # the broker's own property, changed in its edit dialog (git has "60")
EDITOR_USER, EDITOR_PASSWORD = "editor-user-2323", "editor-pw-2323-typed-in-the-dialog"
DECRYPT = """
const fs = require('fs'), crypto = require('crypto');
const raw = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'))['$'];
const key = crypto.createHash('sha256').update(process.env.CRED_SECRET).digest();
const d = crypto.createDecipheriv('aes-256-ctr', key, Buffer.from(raw.substring(0, 32), 'hex'));
const held = JSON.parse(d.update(raw.substring(32), 'base64', 'utf8') + d.final('utf8'));
process.stdout.write(String(((held[process.argv[2]] || {})[process.argv[3]]) === process.env.WANT));
"""


def holds(nr: NodeRed, nid: str, field_name: str, value: str) -> bool:
    """Whether Node-RED holds ``value`` as credential ``field_name`` of node ``nid``: its flows_cred.json,
    decrypted with the instance's credentialSecret (GET /credentials never shows a password). A boolean only:
    the value is never printed."""
    proc = subprocess.run([str(nr.install.node), "-e", DECRYPT, str(nr.userdir / "flows_cred.json"), nid, field_name],
                          env={"CRED_SECRET": CREDENTIAL_SECRET, "WANT": value,
                               "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, "cannot read the instance's flows_cred.json"
    return proc.stdout == "true"


def drift_saved(ws: Workspace, rel: str = "flows/sensors/1.json") -> dict[str, Any] | None:
    """The file drift/production holds at ``rel``, read with the git CLI (None: no such branch or file)."""
    proc = subprocess.run(["git", "show", f"drift/production:{rel}"], cwd=ws.repo, capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def broker_of(document: dict[str, Any] | None) -> dict[str, Any]:
    assert document is not None, "nothing saved"
    found = [c for c in document.get("configs", []) if c.get("id") == "c-mqtt"]
    assert len(found) == 1, "the broker is not in the document"
    return found[0]


class SavedFirst(Wrapped):
    """The real driver; before its first write, what drift/production then holds of sensors."""

    def __init__(self, inner, ws: Workspace) -> None:
        super().__init__(inner)
        self.ws, self.writes = ws, 0
        self.before_write: dict[str, Any] | None = None

    def apply(self, changes, progress=None):
        if self.writes == 0:
            self.before_write = drift_saved(self.ws)
        self.writes += 1
        return self.inner.apply(changes, progress)


def drifted_site(ws: Workspace, nr: NodeRed, drift: str, **credentials: str) -> str:
    """sensors synced, then its broker edited in the editor (keepalive; ``credentials`` typed in the dialog
    too, if given). Returns Node-RED's rev after the edit."""
    write_config(ws, nr)
    ws.config.write_text(ws.config.read_text().replace('drift = "restore"', f'drift = "{drift}"'))
    put_secrets(ws, MQTT_USER=USER, MQTT_PASSWORD=PASSWORD)
    push(ws, {"flows/sensors/1.json": sensors()})
    assert not engine(ws).sync("production").failed
    assert holds(nr, "c-mqtt", "password", PASSWORD), "the store's password did not reach Node-RED"
    extra = {"credentials": credentials} if credentials else {}
    edit_in_the_editor(nr, "c-mqtt", keepalive=EDITED_KEEPALIVE, **extra)
    assert nr.node("c-mqtt")["keepalive"] == EDITED_KEEPALIVE
    return nr.flows()[0]


def restored_by(ws: Workspace) -> tuple[Any, SavedFirst]:
    driver = SavedFirst(make_driver(load_config(ws.config).env("production")), ws)
    return Engine(load_config(ws.config), drivers={"production": driver}, create_repository=True).sync("production"), driver


def test_an_editor_change_restored_is_saved_to_drift_first_with_the_placeholders(ws: Workspace, nr: NodeRed) -> None:
    """drift = restore, the broker of a flow with credentials edited in the editor (credentials untouched):
    drift/production gets the edited flow before anything is written, with git's ${secret:} placeholders
    (the live flow has none: Node-RED never returns them); git's version goes back; the broker still holds
    the store's user and password; no git object holds a value."""
    drifted_site(ws, nr, "restore")
    out, driver = restored_by(ws)
    assert [(s.key, s.action.value) for s in out.done] == [(SENSORS, "import")] and not out.failed, out.failed
    saved = broker_of(driver.before_write)  # saved before the first write
    assert saved["keepalive"] == EDITED_KEEPALIVE  # the editor's change
    assert saved["credentials"] == SECRET_BROKER["credentials"]  # the placeholders, as git has them
    assert out.drift_commit == ws.git("rev-parse", "drift/production", cwd=ws.repo).strip()
    assert broker_of(drift_saved(ws)) == saved
    assert nr.node("c-mqtt")["keepalive"] == "60"  # git's version is back
    assert creds(nr, "mqtt-broker", "c-mqtt") == {"user": USER, "has_password": True}
    assert holds(nr, "c-mqtt", "password", PASSWORD), "the broker lost the store's password"
    reachable = subprocess.run(["git", "rev-list", "--all", "--objects"], cwd=ws.repo, capture_output=True,
                               text=True, check=True).stdout
    assert out.drift_commit in reachable.split()
    objects = every_git_object(ws)  # every object, reachable or not (a superset of rev-list --all --objects)
    assert USER.encode() not in objects and PASSWORD.encode() not in objects, "a credential value reached git"
    assert engine(ws).sync("production", dry_run=True).plan.changes == ()


def test_an_editor_change_reported_writes_nothing_and_keeps_the_credentials(ws: Workspace, nr: NodeRed) -> None:
    """drift = report: the same edit is drift; nothing is deployed (the rev stays), nothing saved to drift,
    the broker keeps the editor's change and the store's credentials."""
    rev = drifted_site(ws, nr, "report")
    memory = ws.git("show", "refs/reconciler/driver/production:state.json", cwd=ws.repo)
    out, driver = restored_by(ws)
    assert out.states["drifted"] == 1 and not out.failed and out.drift_commit is None
    assert [(s.key, s.action.value) for s in out.plan.notable] == [(SENSORS, "report")] and out.plan.changes == ()
    assert driver.writes == 0 and nr.flows()[0] == rev
    assert drift_saved(ws) is None
    assert nr.node("c-mqtt")["keepalive"] == EDITED_KEEPALIVE
    assert creds(nr, "mqtt-broker", "c-mqtt") == {"user": USER, "has_password": True}
    assert holds(nr, "c-mqtt", "password", PASSWORD), "the broker lost the store's password"
    assert ws.git("show", "refs/reconciler/driver/production:state.json", cwd=ws.repo) == memory


def test_an_editor_change_that_sets_credentials_is_restored_with_the_stores(ws: Workspace, nr: NodeRed) -> None:
    """The hostile edit: in the broker's dialog someone changes keepalive AND types a new user and password.

    We cannot see credentials (Node-RED never returns them), so what the editor typed can be neither
    compared nor saved; what a user of drift = "restore" expects is git's flow back *with the secret
    store's credentials*: git and the store are the desired state, and an instance left on a password
    typed by hand, while the driver's memory says it holds the store's, would never be corrected (the
    next sync would find nothing to do). So: drift/production gets the edited flow with git's placeholders
    (never the editor's values: they are secrets, and unknown); the restore sends the store's credentials
    again, because a node of a flow changed outside the reconciler may hold anything."""
    drifted_site(ws, nr, "restore", user=EDITOR_USER, password=EDITOR_PASSWORD)
    assert creds(nr, "mqtt-broker", "c-mqtt")["user"] == EDITOR_USER  # the editor did set them
    out, driver = restored_by(ws)
    assert [(s.key, s.action.value) for s in out.done] == [(SENSORS, "import")] and not out.failed, out.failed
    saved = broker_of(driver.before_write)
    assert saved["keepalive"] == EDITED_KEEPALIVE and saved["credentials"] == SECRET_BROKER["credentials"]
    assert nr.node("c-mqtt")["keepalive"] == "60"
    assert creds(nr, "mqtt-broker", "c-mqtt") == {"user": USER, "has_password": True}, "the editor's user stayed"
    assert holds(nr, "c-mqtt", "password", PASSWORD), "the editor's password stayed"
    objects = every_git_object(ws)
    for value in (USER, PASSWORD, EDITOR_USER, EDITOR_PASSWORD):
        assert value.encode() not in objects, "a credential value reached git"
    assert engine(ws).sync("production", dry_run=True).plan.changes == ()
