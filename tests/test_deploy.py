"""The deployment files under deploy/: Kubernetes manifests, the container image and
the systemd unit agree with each other and with the service's own constants."""

from __future__ import annotations

import configparser
import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from reconciler.cli import build_parser
from reconciler.config import DirectoryEnvironment, parse_config
from reconciler.http import DEFAULT_PORT, HEALTH_PATH, METRICS_PATH, READY_PATH

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "flow-reconciler.service"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"

SHUTDOWN_GRACE = 30  # seconds the service takes to finish a step after SIGTERM (default)
SECRET_KEYS = {"RECONCILER_API_TOKEN", "RECONCILER_WEBHOOK_SECRET"}


# ---------------------------------------------------------------- helpers


def yaml_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))


def load_yaml(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    """Every Kubernetes object of the manifests (the kustomization excluded)."""
    return [doc for p in yaml_files() if p.name != "kustomization.yaml" for doc in load_yaml(p)]


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture(scope="module")
def statefulset(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return only(objects, "StatefulSet")


@pytest.fixture(scope="module")
def container(statefulset: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "reconciler"]
    return c


def container_ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in container}


def option(argv: list[str], name: str) -> str:
    """The value following ``name`` in an argument list."""
    assert argv.count(name) == 1, f"{name} must appear exactly once in {argv}"
    return argv[argv.index(name) + 1]


def host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """volumeMounts by mount path."""
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def mount_of(container: dict[str, Any], path: PurePosixPath) -> dict[str, Any] | None:
    """The deepest volume mount containing ``path``."""
    best = None
    for mount_path, m in mounts(container).items():
        if path == PurePosixPath(mount_path) or PurePosixPath(mount_path) in path.parents:
            if best is None or len(mount_path) > len(best["mountPath"]):
                best = m
    return best


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module")
def config_text(objects: list[dict[str, Any]], container: dict[str, Any], statefulset: dict[str, Any]) -> str:
    """The reconciler.toml the StatefulSet's --config points at, from its ConfigMap."""
    config = PurePosixPath(option(container["args"], "--config"))
    mount = mounts(container)[str(config.parent)]
    (volume,) = [v for v in statefulset["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    (cm,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"] == volume["configMap"]["name"]]
    return cm["data"][config.name]


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNIT, encoding="utf-8")
    return parser


def unit_values(key: str) -> list[str]:
    """Every assignment of ``key`` in [Service] (configparser keeps only the last)."""
    values, section = [], None
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith(f"{key}="):
            values.append(line.split("=", 1)[1])
    return values


def instructions() -> list[tuple[str, str]]:
    """The Containerfile as (INSTRUCTION, arguments), continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def instruction(name: str) -> list[str]:
    return [args for word, args in instructions() if word == name]


def image_cmd() -> list[str]:
    (cmd,) = instruction("CMD")
    return json.loads(cmd)


def healthcheck_code() -> str:
    """The Python program the HEALTHCHECK runs."""
    (hc,) = instruction("HEALTHCHECK")
    argv = json.loads(hc[hc.index("CMD") + len("CMD") :].strip())
    assert argv[:2] == ["python", "-c"], argv
    return argv[2]


# ---------------------------------------------------------------- every YAML file


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.name)
def test_every_yaml_document_is_a_named_kubernetes_object(path: Path) -> None:
    """Each YAML file parses, and every document in it has apiVersion, kind and metadata.name."""
    docs = load_yaml(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


def test_manifests_are_namespace_agnostic(objects: list[dict[str, Any]]) -> None:
    """No object pins a namespace, so the manifests can be applied into any of them."""
    assert [o["metadata"]["name"] for o in objects if "namespace" in o["metadata"]] == []


def test_kustomization_lists_every_other_yaml_file() -> None:
    """kustomization.yaml lists exactly the other YAML files of its folder."""
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    others = {p.name for p in yaml_files()} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(others)


# ---------------------------------------------------------------- StatefulSet


def test_statefulset_selector_matches_its_pod_labels(statefulset: dict[str, Any]) -> None:
    """The StatefulSet's selector selects the pods of its own template."""
    selector = statefulset["spec"]["selector"]["matchLabels"]
    assert selector and selects(selector, statefulset["spec"]["template"]["metadata"]["labels"])


def test_shard_count_equals_the_replica_count(statefulset: dict[str, Any], container: dict[str, Any]) -> None:
    """RECONCILER_SHARDS equals spec.replicas, so every shard has exactly one replica."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert int(env["RECONCILER_SHARDS"]) == statefulset["spec"]["replicas"] == 2


def test_health_probes_ask_for_the_health_path(container: dict[str, Any]) -> None:
    """The liveness (and start-up) probes ask for HEALTH_PATH."""
    found = probes(container)
    assert found["livenessProbe"]["httpGet"]["path"] == HEALTH_PATH
    if "startupProbe" in found:
        assert found["startupProbe"]["httpGet"]["path"] == HEALTH_PATH


def test_readiness_probe_asks_for_the_ready_path(container: dict[str, Any]) -> None:
    """The readiness probe asks for READY_PATH."""
    assert container["readinessProbe"]["httpGet"]["path"] == READY_PATH


def test_probe_ports_name_the_container_port_of_the_default_port(container: dict[str, Any]) -> None:
    """Every probe names a container port, and that port is DEFAULT_PORT."""
    ports = container_ports(container)
    for kind, probe in probes(container).items():
        port = probe["httpGet"]["port"]
        assert isinstance(port, str) and ports.get(port) == DEFAULT_PORT, (kind, port, ports)


def test_listen_argument_binds_every_interface_on_the_default_port(container: dict[str, Any]) -> None:
    """The container is started with --listen 0.0.0.0:DEFAULT_PORT (the default, loopback, is unreachable)."""
    assert host_port(option(container["args"], "--listen")) == ("0.0.0.0", DEFAULT_PORT)


def test_statefulset_runs_the_image_default_command(container: dict[str, Any]) -> None:
    """The StatefulSet's args are the image's CMD, spelled out, so both start the service the same way."""
    assert "command" not in container  # keeps the image's ENTRYPOINT ["reconciler"]
    assert container["args"] == image_cmd()


def test_container_runs_as_non_root_with_a_read_only_root_filesystem(
    statefulset: dict[str, Any], container: dict[str, Any]
) -> None:
    """The container runs as uid 10001, non-root, read-only, without privilege escalation or capabilities."""
    pod = statefulset["spec"]["template"]["spec"]["securityContext"]
    ctx = {**pod, **container["securityContext"]}
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add")
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"


def test_pod_gets_no_service_account_token(statefulset: dict[str, Any]) -> None:
    """The reconciler never calls the Kubernetes API, so no token is mounted."""
    assert statefulset["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_termination_grace_exceeds_the_shutdown_grace(statefulset: dict[str, Any]) -> None:
    """Kubernetes waits longer than the service needs to finish the step in flight."""
    assert statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45 > SHUTDOWN_GRACE


def test_memory_is_requested_and_limited(container: dict[str, Any]) -> None:
    """The container requests CPU and memory and is limited to 512Mi of memory."""
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"] == "512Mi"


def test_every_volume_mount_has_a_volume(statefulset: dict[str, Any], container: dict[str, Any]) -> None:
    """Each volumeMount names a pod volume or a volume claim template."""
    spec = statefulset["spec"]
    names = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
    names |= {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    assert {m["name"] for m in container["volumeMounts"]} <= names


def test_state_directory_is_a_persistent_volume_claim(statefulset: dict[str, Any], container: dict[str, Any]) -> None:
    """/var/lib/reconciler is mounted from a volume claim template, one per replica."""
    claims = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    assert mounts(container)["/var/lib/reconciler"]["name"] in claims


def test_tmp_is_writable_despite_the_read_only_root(container: dict[str, Any]) -> None:
    """/tmp is a volume, since the root file system is read-only."""
    assert "/tmp" in mounts(container) and not mounts(container)["/tmp"].get("readOnly")


def test_secret_is_loaded_into_the_container_environment(objects: list[dict[str, Any]], container: dict[str, Any]) -> None:
    """The StatefulSet loads the Secret of secret.yaml with envFrom."""
    secret = only(objects, "Secret")
    refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
    assert refs == [secret["metadata"]["name"]]


def test_secret_holds_the_token_and_webhook_secret_as_placeholders(objects: list[dict[str, Any]]) -> None:
    """The Secret defines both variables, with values clearly marked to be replaced."""
    data = only(objects, "Secret")["stringData"]
    assert set(data) == SECRET_KEYS
    assert all(value.startswith("REPLACE-ME") for value in data.values())


# ---------------------------------------------------------------- ConfigMap


def test_configmap_config_is_valid(config_text: str) -> None:
    """The ConfigMap's reconciler.toml parses and loads with the service's own config loader."""
    config = parse_config(tomllib.loads(config_text), base=Path("/etc/flow-reconciler"))
    assert len(config.environments) >= 1


def test_configmap_holds_no_secret(config_text: str) -> None:
    """Tokens come from the Secret, never from the config file."""
    assert not any(key in config_text for key in ("token =", "secret =", "password"))


def test_repository_lives_on_the_persistent_volume(
    config_text: str, statefulset: dict[str, Any], container: dict[str, Any]
) -> None:
    """The configured git repository is on the volume claim template, so it survives restarts."""
    config = parse_config(tomllib.loads(config_text), base=Path("/etc/flow-reconciler"))
    mount = mount_of(container, PurePosixPath(config.repository.path))
    claims = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    assert mount is not None and mount["name"] in claims and not mount.get("readOnly")


def test_directory_environments_live_on_writable_volumes(config_text: str, container: dict[str, Any]) -> None:
    """Each directory environment's folder is on a writable volume (the root file system is read-only)."""
    config = parse_config(tomllib.loads(config_text), base=Path("/etc/flow-reconciler"))
    for env in config.environments:
        if isinstance(env, DirectoryEnvironment):
            mount = mount_of(container, PurePosixPath(env.path))
            assert mount is not None and not mount.get("readOnly"), env.name


# ---------------------------------------------------------------- Services and ServiceMonitor


def test_statefulset_is_governed_by_a_headless_service(objects: list[dict[str, Any]], statefulset: dict[str, Any]) -> None:
    """serviceName names a headless Service (clusterIP None) that selects the pods."""
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    headless = services[statefulset["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(headless["spec"]["selector"], statefulset["spec"]["template"]["metadata"]["labels"])


def test_cluster_ip_service_exposes_the_container_port_by_name(
    objects: list[dict[str, Any]], statefulset: dict[str, Any], container: dict[str, Any]
) -> None:
    """The ClusterIP Service selects the pods and forwards port http to the container port of that name."""
    (service,) = [s for s in of_kind(objects, "Service") if s["spec"].get("clusterIP") != "None"]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert selects(service["spec"]["selector"], statefulset["spec"]["template"]["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http" and port["port"] == DEFAULT_PORT
    assert port["targetPort"] in container_ports(container)


def test_servicemonitor_scrapes_the_metrics_path(objects: list[dict[str, Any]]) -> None:
    """The ServiceMonitor scrapes METRICS_PATH."""
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == [METRICS_PATH]


def test_servicemonitor_selects_one_service_that_has_its_port(objects: list[dict[str, Any]]) -> None:
    """The ServiceMonitor selects exactly one Service (no double scrape) and names one of its ports."""
    monitor = only(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [s for s in of_kind(objects, "Service") if selects(selector, s["metadata"].get("labels", {}))]
    names = {p["name"] for p in service["spec"]["ports"]}
    assert all(e["port"] in names for e in monitor["spec"]["endpoints"])


def test_kustomize_builds_the_manifests() -> None:
    """`kubectl kustomize` (or `kustomize build`) renders the folder, when either tool is installed."""
    if shutil.which("kustomize"):
        argv = ["kustomize", "build", str(K8S)]
    elif shutil.which("kubectl"):
        argv = ["kubectl", "kustomize", str(K8S)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{argv[0]} cannot run here: {exc}")
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds == ["ConfigMap", "Secret", "Service", "Service", "ServiceMonitor", "StatefulSet"]


# ---------------------------------------------------------------- systemd


def test_systemd_unit_has_the_hardening_settings() -> None:
    """The unit sets every sandboxing option of the hardening checklist."""
    service = unit()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0027",
        "Restart": "on-failure",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert unit_values("SystemCallFilter")[0] == "@system-service"


def test_systemd_unit_runs_as_a_dedicated_user_with_a_state_directory() -> None:
    """The service runs as its own user, and its state directory is the writable one."""
    service = unit()["Service"]
    assert service.get("DynamicUser") == "yes" or service.get("User") == "reconciler"
    assert service["StateDirectory"] == "reconciler"
    assert "/var/lib/reconciler" in service["ReadWritePaths"].split()


def test_systemd_unit_starts_the_service_with_json_logs() -> None:
    """ExecStart runs `reconciler run` from the virtualenv with the /etc config and JSON logs."""
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert argv[:2] == ["/opt/flow-reconciler/bin/reconciler", "run"]
    assert option(argv, "--config") == "/etc/flow-reconciler/reconciler.toml"
    assert option(argv, "--log-format") == "json"


def test_systemd_unit_keeps_the_loopback_default() -> None:
    """The unit passes no --listen, so the service listens on 127.0.0.1 unless the config says otherwise."""
    assert "--listen" not in shlex.split(unit()["Service"]["ExecStart"])


def test_systemd_unit_reads_secrets_from_an_optional_environment_file() -> None:
    """Secrets come from /etc/flow-reconciler/secrets.env, and the service starts without it."""
    assert unit()["Service"]["EnvironmentFile"] == "-/etc/flow-reconciler/secrets.env"


def test_systemd_stop_timeout_exceeds_the_shutdown_grace() -> None:
    """systemd waits a bit longer than the service needs to finish the step in flight."""
    timeout = unit()["Service"]["TimeoutStopSec"]
    seconds = int(re.fullmatch(r"(\d+)s?", timeout).group(1))  # type: ignore[union-attr]
    assert SHUTDOWN_GRACE < seconds <= SHUTDOWN_GRACE + 30


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    try:
        return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"systemd-analyze cannot run here: {exc}")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds no problem in the unit (its binary path replaced by one that exists here)."""
    probe = tmp_path / "probe" / "deploy-test-probe.service"
    probe.parent.mkdir()
    probe.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    if systemd_analyze("verify", str(probe)).returncode != 0:
        pytest.skip("systemd-analyze verify does not work in this sandbox")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/flow-reconciler/bin/reconciler", sys.executable))
    result = systemd_analyze("verify", str(copy))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_analyze_security_rates_the_sandbox_ok() -> None:
    """`systemd-analyze security --offline` rates the unit's exposure at most 2.0 ("OK")."""
    result = systemd_analyze("security", "--offline=yes", str(UNIT))
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if m is None:
        pytest.skip(f"systemd-analyze security --offline is unavailable here: {result.stderr.strip()[:200]}")
    assert float(m.group(1)) <= 2.0, result.stdout


# ---------------------------------------------------------------- Containerfile


def test_containerfile_is_multi_stage_on_python_3_11_slim() -> None:
    """The image is built in two stages, both on python:3.11-slim."""
    froms = instruction("FROM")
    assert len(froms) >= 2 and "AS build" in froms[0]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in [f"ARG {a}" for a in instruction("ARG")]
    assert all(f.split()[0] in ("${PYTHON_IMAGE}", "python:3.11-slim") for f in froms)


def test_containerfile_copies_only_files_that_exist_in_the_build_context() -> None:
    """Every COPY source from the build context (the repository root) exists, so `docker build .` finds it."""
    for args in instruction("COPY"):
        if args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source


def test_containerfile_installs_the_project_with_pip() -> None:
    """The build stage pip-installs the project into the virtualenv the runtime stage copies."""
    assert any("/opt/flow-reconciler/bin/pip install ." in r for r in instruction("RUN"))
    assert "--from=build /opt/flow-reconciler /opt/flow-reconciler" in instruction("COPY")


def test_containerfile_runs_as_a_non_root_uid() -> None:
    """The last USER is numeric, non-zero, and the uid the Kubernetes manifests expect."""
    user = instruction("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) == 10001


def test_containerfile_works_in_the_state_directory() -> None:
    """The working directory is /var/lib/reconciler, where the state volume is mounted."""
    assert instruction("WORKDIR")[-1] == "/var/lib/reconciler"


def test_containerfile_exposes_the_default_port() -> None:
    """EXPOSE names DEFAULT_PORT."""
    assert instruction("EXPOSE") == [str(DEFAULT_PORT)]


def test_containerfile_healthcheck_asks_for_the_health_path() -> None:
    """HEALTHCHECK requests http://127.0.0.1:DEFAULT_PORT/HEALTH_PATH with Python's urllib."""
    code = healthcheck_code()
    assert "urllib.request" in code
    assert f"http://127.0.0.1:{DEFAULT_PORT}{HEALTH_PATH}" in code


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(self.status if self.path == HEALTH_PATH else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_containerfile_healthcheck_fails_unless_the_health_path_answers_ok(
    health_server: tuple[int, type[_Health]], status: int, healthy: bool
) -> None:
    """The HEALTHCHECK program exits 0 on a 200 answer and non-zero otherwise (run against a stand-in server)."""
    port, handler = health_server
    handler.status = status
    code = healthcheck_code().replace(f":{DEFAULT_PORT}/", f":{port}/")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy


def test_containerfile_starts_the_service_on_every_interface() -> None:
    """ENTRYPOINT is reconciler; CMD runs the service with --listen 0.0.0.0:DEFAULT_PORT and JSON logs."""
    assert json.loads(instruction("ENTRYPOINT")[-1]) == ["reconciler"]
    cmd = image_cmd()
    assert cmd[0] == "run"
    assert option(cmd, "--config") == "/etc/flow-reconciler/reconciler.toml"
    assert host_port(option(cmd, "--listen")) == ("0.0.0.0", DEFAULT_PORT)
    assert option(cmd, "--log-format") == "json"


# ---------------------------------------------------------------- all three against the CLI


def start_commands() -> dict[str, list[str]]:
    k8s = [d for d in load_yaml(K8S / "statefulset.yaml") if d["kind"] == "StatefulSet"][0]
    (c,) = [c for c in k8s["spec"]["template"]["spec"]["containers"] if c["name"] == "reconciler"]
    return {
        "systemd": shlex.split(unit()["Service"]["ExecStart"])[1:],
        "container": image_cmd(),
        "kubernetes": c["args"],
    }


@pytest.mark.parametrize("where", ["systemd", "container", "kubernetes"])
def test_start_command_is_accepted_by_the_cli(where: str) -> None:
    """The command each deployment starts is valid for the real `reconciler` argument parser."""
    args = build_parser().parse_args(start_commands()[where])
    assert (args.command, args.config, args.log_format) == ("run", "/etc/flow-reconciler/reconciler.toml", "json")
