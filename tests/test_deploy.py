"""The deployment files under deploy/: Kubernetes manifests, the container image and
the systemd unit agree with each other, with the service's own constants and with the
steps deploy/README.md gives an operator; the image's health check and the refusal of
placeholder secrets are run for real against `reconciler run`."""

from __future__ import annotations

import base64
import configparser
import json
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from reconciler.cli import build_parser
from reconciler.config import Config, find_config, parse_config
from reconciler.drivers.directory import DirectoryEnvironment
from reconciler.runner import listen_address
from reconciler.server import DEFAULT_PORT, HEALTH_PATH, METRICS_PATH, READY_PATH

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
MONITORING = K8S / "monitoring"
UNIT = DEPLOY / "systemd" / "flow-reconciler.service"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
README = DEPLOY / "README.md"

SHUTDOWN_GRACE = 30  # seconds the service takes to finish a step after SIGTERM (default)
SECRET_KEYS = {"RECONCILER_API_TOKEN", "RECONCILER_WEBHOOK_SECRET"}
CONFIG_PATH = "/etc/flow-reconciler/reconciler.toml"  # where every deployment keeps the config


# ---------------------------------------------------------------- helpers


def yaml_files(folder: Path = K8S) -> list[Path]:
    return sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))


def kustomization(folder: Path) -> dict[str, Any]:
    (k,) = load_yaml(folder / "kustomization.yaml")
    return k


def load_yaml(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def manifests(folder: Path) -> list[dict[str, Any]]:
    """Every Kubernetes object of a kustomization's folder (the kustomization excluded)."""
    return [doc for p in yaml_files(folder) if p.name != "kustomization.yaml" for doc in load_yaml(p)]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    """The objects of the base, deploy/kubernetes."""
    return manifests(K8S)


@pytest.fixture(scope="module")
def monitoring_objects() -> list[dict[str, Any]]:
    """The objects of the optional deploy/kubernetes/monitoring."""
    return manifests(MONITORING)


@pytest.fixture(scope="module")
def namespace() -> str:
    return kustomization(K8S)["namespace"]


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


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


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
    """The reconciler.toml the StatefulSet's RECONCILER_CONFIG points at, from its ConfigMap."""
    assert "--config" not in container["args"]  # one place says where the config is
    config = PurePosixPath(container_env(container)["RECONCILER_CONFIG"])
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


def unit_env() -> dict[str, str]:
    """The variables the unit's Environment= lines set."""
    pairs = [word.split("=", 1) for value in unit_values("Environment") for word in shlex.split(value)]
    return dict(pairs)  # type: ignore[arg-type]


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


def image_env() -> dict[str, str]:
    """The variables the image's ENV instructions set (KEY=VALUE form only)."""
    out: dict[str, str] = {}
    for args in instruction("ENV"):
        for word in shlex.split(args):
            key, eq, value = word.partition("=")
            assert eq, f"ENV {args!r}: use the KEY=VALUE form"
            out[key] = value
    return out


def healthcheck_argv() -> list[str]:
    """The exec-form command the HEALTHCHECK runs."""
    (hc,) = instruction("HEALTHCHECK")
    return json.loads(hc[hc.index("CMD") + len("CMD") :].strip())


def readme_section(title: str) -> str:
    """The text under a heading of deploy/README.md, up to the next heading (code blocks are not headings)."""
    lines, out, inside, fenced = README.read_text(encoding="utf-8").splitlines(), [], False, False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{2,4} ", line):
            if inside:
                break
            inside = line.lstrip("#").strip() == title
            continue
        if inside:
            out.append(line)
    assert out, f"deploy/README.md has no section {title!r}"
    return "\n".join(out)


def sh_commands(section: str, block: int = 0) -> list[str]:
    """The commands of a section's ``block``-th sh code block: comments and here-document bodies
    dropped, continuation lines joined."""
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.M | re.S)
    commands, pending, heredoc = [], "", None
    for line in blocks[block].splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        command, pending = (pending + line).strip(), ""
        m = re.search(r"<<-?'?(\w+)'?", command)
        heredoc = m.group(1) if m else None
        commands.append(command)
    return commands


def argv_of(command: str) -> list[str]:
    """A command line as words, without a trailing `&` or `# comment`."""
    words = shlex.split(command, comments=True)
    return words[:-1] if words and words[-1] == "&" else words


# ---------------------------------------------------------------- every YAML file


@pytest.mark.parametrize("path", yaml_files(K8S) + yaml_files(MONITORING), ids=lambda p: str(p.relative_to(K8S)))
def test_every_yaml_document_is_a_named_kubernetes_object(path: Path) -> None:
    """Each YAML file parses, and every document in it has apiVersion, kind and metadata.name."""
    docs = load_yaml(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


def test_every_object_lands_in_the_namespace_the_base_creates(objects: list[dict[str, Any]], namespace: str) -> None:
    """The kustomization's namespace is the one Namespace object's name, and no object pins another."""
    assert only(objects, "Namespace")["metadata"]["name"] == namespace
    assert {o["metadata"].get("namespace", namespace) for o in objects} == {namespace}


@pytest.mark.parametrize("folder", [K8S, MONITORING], ids=["base", "monitoring"])
def test_kustomization_lists_every_other_yaml_file(folder: Path) -> None:
    """Each kustomization.yaml lists exactly the other YAML files of its folder."""
    others = {p.name for p in yaml_files(folder)} - {"kustomization.yaml"}
    assert sorted(kustomization(folder)["resources"]) == sorted(others)


def test_base_applies_on_a_cluster_without_the_prometheus_operator(objects: list[dict[str, Any]]) -> None:
    """The base holds no ServiceMonitor, and every object is of a built-in API group (no CRD needed)."""
    assert of_kind(objects, "ServiceMonitor") == []
    groups = {o["apiVersion"].rpartition("/")[0] for o in objects}
    assert all(g == "" or "." not in g or g.endswith(".k8s.io") for g in groups), groups


def test_base_holds_no_secret_with_placeholder_values(objects: list[dict[str, Any]]) -> None:
    """No Secret of the base (nor a secretGenerator) carries a REPLACE-ME value that `apply -k` would install."""
    values = [v for s in of_kind(objects, "Secret") for v in s.get("stringData", {}).values()]
    values += [base64.b64decode(v).decode() for s in of_kind(objects, "Secret") for v in s.get("data", {}).values()]
    values += [lit.partition("=")[2] for g in kustomization(K8S).get("secretGenerator", []) for lit in g.get("literals", [])]
    assert not [v for v in values if str(v).upper().startswith("REPLACE-ME")]


def test_monitoring_kustomization_holds_the_servicemonitor_in_the_base_namespace(
    monitoring_objects: list[dict[str, Any]], namespace: str
) -> None:
    """deploy/kubernetes/monitoring puts its one ServiceMonitor in the base's namespace, and nothing else."""
    assert kustomization(MONITORING)["namespace"] == namespace
    assert [o["kind"] for o in monitoring_objects] == ["ServiceMonitor"]
    assert monitoring_objects[0]["metadata"].get("namespace", namespace) == namespace


def test_kustomization_sets_the_image_the_statefulset_names(container: dict[str, Any]) -> None:
    """The images: entry (what `kustomize edit set image` changes) names the StatefulSet's image."""
    names = [i["name"] for i in kustomization(K8S)["images"]]
    assert names == [container["image"].rpartition(":")[0] or container["image"]]


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


def test_listen_variable_binds_every_interface_on_the_named_container_port(container: dict[str, Any]) -> None:
    """RECONCILER_LISTEN is 0.0.0.0 (loopback is unreachable) on the port of the containerPort `http`."""
    assert "--listen" not in container["args"]  # it would win over the variable
    host, port = host_port(container_env(container)["RECONCILER_LISTEN"])
    assert host == "0.0.0.0" and port == container_ports(container)["http"] == DEFAULT_PORT


def test_statefulset_runs_the_image_default_command(container: dict[str, Any]) -> None:
    """The StatefulSet's args are the image's CMD, spelled out, so both start the service the same way."""
    assert "command" not in container  # keeps the image's ENTRYPOINT ["reconciler"]
    assert container["args"] == image_cmd()


def test_statefulset_spells_out_the_image_environment(container: dict[str, Any]) -> None:
    """RECONCILER_CONFIG and RECONCILER_LISTEN have the image's values, written where an operator reads them."""
    env, image = container_env(container), image_env()
    assert {k: env.get(k) for k in ("RECONCILER_CONFIG", "RECONCILER_LISTEN")} == {
        k: image[k] for k in ("RECONCILER_CONFIG", "RECONCILER_LISTEN")
    }


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


def test_secret_is_loaded_into_the_container_environment(container: dict[str, Any]) -> None:
    """The StatefulSet loads, with envFrom, the Secret the README has the operator create."""
    refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
    assert refs == [readme_secret()[0]]


# ---------------------------------------------------------------- ConfigMap


def test_configmap_config_is_valid(config_text: str) -> None:
    """The ConfigMap's reconciler.toml parses and loads with the service's own config loader."""
    config = parse_config(tomllib.loads(config_text), base=Path("/etc/flow-reconciler"))
    assert len(config.environments) >= 1


def test_configmap_names_a_git_server(config_text: str) -> None:
    """The example has a [repository] remote: on an empty volume the service finds no repository and
    refuses to start unless it can clone one, and nobody could push to a pod's volume anyway."""
    config = parse_config(tomllib.loads(config_text), base=Path("/etc/flow-reconciler"))
    assert config.repository.remote


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


def test_servicemonitor_scrapes_the_metrics_path(monitoring_objects: list[dict[str, Any]]) -> None:
    """The ServiceMonitor scrapes METRICS_PATH."""
    monitor = only(monitoring_objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == [METRICS_PATH]


def test_servicemonitor_selects_one_service_that_has_its_port(
    objects: list[dict[str, Any]], monitoring_objects: list[dict[str, Any]]
) -> None:
    """The ServiceMonitor selects exactly one Service of the base (no double scrape) and names one of its ports."""
    monitor = only(monitoring_objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [s for s in of_kind(objects, "Service") if selects(selector, s["metadata"].get("labels", {}))]
    names = {p["name"] for p in service["spec"]["ports"]}
    assert all(e["port"] in names for e in monitor["spec"]["endpoints"])


def kustomize_build(folder: Path) -> list[dict[str, Any]]:
    if shutil.which("kustomize"):
        argv = ["kustomize", "build", str(folder)]
    elif shutil.which("kubectl"):
        argv = ["kubectl", "kustomize", str(folder)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{argv[0]} cannot run here: {exc}")
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [(K8S, ["ConfigMap", "Namespace", "Service", "Service", "StatefulSet"]), (MONITORING, ["ServiceMonitor"])],
    ids=["base", "monitoring"],
)
def test_kustomize_builds_the_manifests(folder: Path, expected: list[str], namespace: str) -> None:
    """`kubectl kustomize` (or `kustomize build`) renders each folder, every namespaced object in the
    namespace, when either tool is installed."""
    docs = kustomize_build(folder)
    assert sorted(d["kind"] for d in docs) == expected
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {namespace}


# ---------------------------------------------------------------- the README's Kubernetes steps


def kubernetes_steps() -> list[str]:
    return sh_commands(readme_section("Kubernetes"))


def readme_secret() -> tuple[str, list[str]]:
    """The name and the argv of the README's `kubectl create secret generic NAME ...`."""
    (argv,) = [a for a in map(argv_of, kubernetes_steps()) if a[:1] == ["kubectl"] and "secret" in a and "create" in a]
    return argv[argv.index("generic") + 1], argv


def test_readme_kubernetes_steps_run_in_order() -> None:
    """Namespace, Secret, image, apply, optional monitoring, rollout, port-forward, /readyz: in that order."""
    steps = kubernetes_steps()

    def at(what: str, pattern: str) -> int:
        found = [i for i, c in enumerate(steps) if re.search(pattern, c)]
        assert found, f"no {what} step in the README's Kubernetes block"
        return found[0]

    order = [
        at("namespace", r"^kubectl apply -f deploy/kubernetes/namespace\.yaml$|kubectl create namespace "),
        at("secret", r"^kubectl .*create secret generic "),
        at("image", r"kustomize edit set image "),
        at("apply", r"^kubectl apply -k deploy/kubernetes$"),
        at("monitoring", r"^kubectl apply -k deploy/kubernetes/monitoring$"),
        at("rollout", r"^kubectl .*rollout status statefulset/"),
        at("port-forward", r"^kubectl .*port-forward svc/.* &$"),
        at("readiness", rf"^curl .*{re.escape(READY_PATH)}$"),
    ]
    assert order == sorted(order), order


def test_readme_kubernetes_steps_name_the_namespace(namespace: str) -> None:
    """Every kubectl step but `apply` (the kustomization sets the namespace) passes `-n NAMESPACE`."""
    for argv in map(argv_of, kubernetes_steps()):
        if argv[:1] == ["kubectl"] and argv[1] != "apply":
            assert option(argv, "-n") == namespace, argv


def test_readme_kubernetes_secret_holds_both_generated_secrets() -> None:
    """The Secret gets both variables, each from `openssl rand -hex 32` (long enough, never a placeholder)."""
    _name, argv = readme_secret()
    literals = dict(a.removeprefix("--from-literal=").split("=", 1) for a in argv if a.startswith("--from-literal="))
    assert literals == {key: "$(openssl rand -hex 32)" for key in SECRET_KEYS}


def test_readme_kubernetes_steps_stay_at_the_repository_root() -> None:
    """A `cd` only happens inside a `( … )` subshell, and every deploy/ path the steps name exists from the root."""
    for command in kubernetes_steps():
        if re.search(r"(^|[;&|(]\s*)cd\s", command):
            assert command.startswith("(") and command.endswith(")"), command
        for word in argv_of(command.strip("()")):
            if word.startswith("deploy/"):
                assert (ROOT / word).exists(), word


def test_readme_kubernetes_image_step_sets_the_kustomization_image() -> None:
    """`kustomize edit set image NAME=…` names the kustomization's image, in the base's folder."""
    (command,) = [c for c in kubernetes_steps() if "kustomize edit set image" in c]
    assert command.startswith(f"(cd {K8S.relative_to(ROOT)} && ")
    name = argv_of(command.strip("()"))[-1].split("=", 1)[0]
    assert [i["name"] for i in kustomization(K8S)["images"]] == [name]


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
    """ExecStart runs `reconciler run` from the virtualenv with JSON logs; the config comes from RECONCILER_CONFIG."""
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert argv[:2] == ["/opt/flow-reconciler/bin/reconciler", "run"]
    assert "--config" not in argv  # one place says where the config is: Environment=
    assert unit_env()["RECONCILER_CONFIG"] == CONFIG_PATH
    assert option(argv, "--log-format") == "json"


def test_systemd_unit_keeps_the_loopback_default() -> None:
    """The unit passes no --listen and sets no RECONCILER_LISTEN, so the service listens on 127.0.0.1
    unless the config says otherwise."""
    assert "--listen" not in shlex.split(unit()["Service"]["ExecStart"])
    assert "RECONCILER_LISTEN" not in unit_env()


def test_systemd_unit_reads_the_config_the_readme_installs() -> None:
    """The unit's RECONCILER_CONFIG is the file the README's install step writes."""
    installs = [a for a in map(argv_of, sh_commands(readme_section("systemd"))) if "install" in a and "/dev/stdin" in a]
    (dest,) = [a[a.index("/dev/stdin") + 1] for a in installs if a[a.index("/dev/stdin") + 1].endswith(".toml")]
    assert unit_env()["RECONCILER_CONFIG"] == dest


def readme_cli_calls() -> list[list[str]]:
    """Every `reconciler` command the systemd part of the README runs by hand."""
    binary = shlex.split(unit()["Service"]["ExecStart"])[0]
    commands = sh_commands(readme_section("systemd")) + sh_commands(readme_section("Running the CLI against the systemd instance"))
    return [argv for argv in map(argv_of, commands) if binary in argv]


def test_readme_runs_the_cli_as_the_service_user_with_the_unit_config() -> None:
    """Each CLI call is `sudo -u USER RECONCILER_CONFIG=<the unit's> <the unit's binary> …`, valid for the parser."""
    service = unit()["Service"]
    binary = shlex.split(service["ExecStart"])[0]
    calls = readme_cli_calls()
    assert calls
    for argv in calls:
        at = argv.index(binary)
        assert argv[:3] == ["sudo", "-u", service["User"]], argv
        assert argv[3:at] == [f"RECONCILER_CONFIG={unit_env()['RECONCILER_CONFIG']}"], argv
        build_parser().parse_args(argv[at + 1 :])


def test_readme_shows_the_cli_commands_an_operator_needs() -> None:
    """status, plan, sync, history and healthcheck against the systemd instance, and its journal."""
    commands = {argv[argv.index(shlex.split(unit()["Service"]["ExecStart"])[0]) + 1] for argv in readme_cli_calls()}
    assert {"status", "plan", "sync", "history", "healthcheck"} <= commands
    section = sh_commands(readme_section("Running the CLI against the systemd instance"))
    assert any(argv_of(c)[:3] == ["journalctl", "-u", UNIT.stem] for c in section)


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


def test_containerfile_healthcheck_runs_reconciler_healthcheck() -> None:
    """HEALTHCHECK runs `reconciler healthcheck` (which asks HEALTH_PATH where `run` listens), valid for the parser."""
    argv = healthcheck_argv()
    assert argv[:2] == ["reconciler", "healthcheck"]
    args = build_parser().parse_args(argv[1:])
    assert args.listen is None and not args.ready  # the address follows RECONCILER_LISTEN / the config


def test_containerfile_starts_the_service_on_every_interface() -> None:
    """ENTRYPOINT is reconciler; CMD runs the service with JSON logs; ENV has it listen on 0.0.0.0:DEFAULT_PORT."""
    assert json.loads(instruction("ENTRYPOINT")[-1]) == ["reconciler"]
    cmd = image_cmd()
    assert cmd[0] == "run"
    assert "--listen" not in cmd and "--config" not in cmd  # they would win over ENV (and -e)
    assert option(cmd, "--log-format") == "json"
    assert host_port(image_env()["RECONCILER_LISTEN"]) == ("0.0.0.0", DEFAULT_PORT)


def test_containerfile_points_at_the_config_the_readme_mounts() -> None:
    """RECONCILER_CONFIG in the image is the path the README's `docker run -v` mounts the config at."""
    targets = re.findall(r'-v\s+"?[^"\s:]+:([^"\s:]+):ro', readme_section("Container"))
    assert image_env()["RECONCILER_CONFIG"] == CONFIG_PATH
    assert CONFIG_PATH in targets, targets


# ---------------------------------------------------------------- the service, for real


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reconciler_env(config: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the CLI: this interpreter's scripts first on PATH, as in the image."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RECONCILER_CONFIG"] = str(config)
    env["RECONCILER_API_TOKEN"] = secrets.token_hex(32)
    env["RECONCILER_WEBHOOK_SECRET"] = secrets.token_hex(32)
    return {**env, **extra}


@pytest.fixture(scope="module")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid config: one directory environment whose folder and git repository exist, one flow exported."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    root = tmp_path_factory.mktemp("service")
    subprocess.run(["git", "init", "-q", "--bare", str(root / "flows.git")], check=True, timeout=30)
    (root / "envs" / "acceptance").mkdir(parents=True)
    (root / "envs" / "acceptance" / "orders.json").write_text('{"name": "orders", "version": "1.0", "steps": []}\n')
    config = root / "reconciler.toml"
    config.write_text('[repository]\npath = "flows.git"\n\n[[environment]]\nname = "acceptance"\n'
                      'driver = "directory"\npath = "envs/acceptance"\n')
    exported = subprocess.run(["reconciler", "export", "acceptance"], env=reconciler_env(config),
                              capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    return config


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(healthcheck_argv(), env=env, capture_output=True, text=True, timeout=30)


def test_image_healthcheck_follows_the_address_of_a_real_service(small_config: Path) -> None:
    """With RECONCILER_LISTEN on a free port, the image's HEALTHCHECK command exits 0 while the image's
    CMD runs, and 1 once it has stopped."""
    env = reconciler_env(small_config, RECONCILER_LISTEN=f"127.0.0.1:{free_port()}")
    service = subprocess.Popen([*json.loads(instruction("ENTRYPOINT")[-1]), *image_cmd()], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # drain stderr so the service never blocks on a full pipe
        for line in service.stderr:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:  # the "listening" log line says the port is bound
            line = lines.get(timeout=60)
            assert line is not None, f"the service exited with {service.wait()}"
            if json.loads(line).get("event") == "listening":
                break
        alive = run_healthcheck(env)
        assert alive.returncode == 0, alive.stderr
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=SHUTDOWN_GRACE + 15) == 0
        stopped = run_healthcheck(env)
        assert stopped.returncode == 1, stopped.stdout
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RECONCILER_API_TOKEN", "REPLACE-ME-api-token"),
        ("RECONCILER_API_TOKEN", "0123456789"),
        ("RECONCILER_WEBHOOK_SECRET", "REPLACE-ME-webhook-secret"),
        ("RECONCILER_WEBHOOK_SECRET", "abcdefghij"),
    ],
    ids=["api-token-placeholder", "api-token-10-chars", "webhook-placeholder", "webhook-10-chars"],
)
def test_service_refuses_a_placeholder_or_short_secret(small_config: Path, variable: str, value: str) -> None:
    """`reconciler run` exits 1 before listening, naming the variable and never printing its value."""
    env = reconciler_env(small_config, RECONCILER_LISTEN=f"127.0.0.1:{free_port()}", **{variable: value})
    result = subprocess.run(["reconciler", *image_cmd()], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert variable in result.stderr and '"listening"' not in result.stderr
    assert value not in result.stdout + result.stderr


# ---------------------------------------------------------------- all three against the CLI


def start_commands() -> dict[str, tuple[list[str], dict[str, str]]]:
    """Per deployment: the arguments of `reconciler` and the variables it sets."""
    k8s = [d for d in load_yaml(K8S / "statefulset.yaml") if d["kind"] == "StatefulSet"][0]
    (c,) = [c for c in k8s["spec"]["template"]["spec"]["containers"] if c["name"] == "reconciler"]
    return {
        "systemd": (shlex.split(unit()["Service"]["ExecStart"])[1:], unit_env()),
        "container": (image_cmd(), image_env()),
        "kubernetes": (c["args"], container_env(c)),
    }


@pytest.mark.parametrize(("where", "host"), [("systemd", "127.0.0.1"), ("container", "0.0.0.0"), ("kubernetes", "0.0.0.0")])
def test_start_command_is_accepted_by_the_cli(where: str, host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command each deployment starts is valid for the real `reconciler` argument parser and, with the
    deployment's environment, finds the config at CONFIG_PATH and listens on HOST:DEFAULT_PORT."""
    argv, env = start_commands()[where]
    for key in [k for k in os.environ if k.startswith("RECONCILER_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = build_parser().parse_args(argv)
    assert (args.command, args.log_format) == ("run", "json")
    assert str(find_config(args.config)) == CONFIG_PATH
    assert listen_address(Config(), args.listen) == (host, DEFAULT_PORT)
