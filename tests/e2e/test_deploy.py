"""deploy/: the image, compose file, systemd unit, Kubernetes manifests and settings example.

Each file is parsed and its required keys checked; where a tool can check a file offline it is
used (the Compose Specification and Kubernetes JSON schemas, `systemd-analyze`, `kubectl
kustomize`), and the test skips cleanly when the tool is not installed.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from bot.runtime.directory_file import check_directory
from bot.runtime.settings import Settings
from bot.store.connection import parse_sentinel_url

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
CONTAINERFILE = DEPLOY / "Containerfile"
UNIT = DEPLOY / "ankomst.service"
ENV_EXAMPLE = DEPLOY / ".env.example"

SETTING_NAMES = {f"ANKOMST_{name.upper()}" for name in Settings.model_fields}
SECRET_SETTINGS = {
    f"ANKOMST_{name.upper()}"
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation)
}
UNPRIVILEGED_UID = 10001


@pytest.fixture(autouse=True)
def _no_ankomst_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built here see only what a test gives them."""
    for name in list(os.environ):
        if name.startswith("ANKOMST_"):
            monkeypatch.delenv(name)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def compiles_as_python(command: list[str]) -> None:
    """A `python -c CODE` health check is valid Python."""
    assert command[:2] == ["python", "-c"], command
    compile(command[2], "<healthcheck>", "exec")


# -- .env.example -----------------------------------------------------------------------------

ASSIGNMENT = re.compile(r"^(#\s*)?(ANKOMST_[A-Z0-9_]+)=(.*)$")


def env_example() -> tuple[dict[str, str], set[str]]:
    """Every ANKOMST_ assignment in .env.example (commented or not), and the commented ones."""
    lines, commented = [], set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            lines.append(f"{match[2]}={match[3]}")
            if match[1]:
                commented.add(match[2])
    values = dotenv_values(stream=io.StringIO("\n".join(lines)))
    assert len(values) == len(lines), "a setting is listed twice in .env.example"
    return {k: v or "" for k, v in values.items()}, commented


def test_env_example_lists_exactly_the_settings_the_code_knows() -> None:
    values, _ = env_example()
    assert sorted(set(values) - SETTING_NAMES) == [], "not settings (typo, or removed from code)"
    assert sorted(SETTING_NAMES - set(values)) == [], "settings missing from deploy/.env.example"


def test_env_example_shows_the_true_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    values, _ = env_example()
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for name, shown in values.items():
        field = name.removeprefix("ANKOMST_").lower()
        if shown == "":
            assert getattr(defaults, field) is None, f"{name}: the default is not unset"
            continue
        with monkeypatch.context() as patch:
            patch.setenv(name, shown)
            parsed = getattr(Settings(_env_file=None), field)  # type: ignore[call-arg]
        assert parsed == getattr(defaults, field), f"{name}={shown} is not the default"


def test_env_example_leaves_secrets_commented_out_and_empty() -> None:
    values, commented = env_example()
    assert {
        "ANKOMST_SECRET_KEY",
        "ANKOMST_SMTP_PASSWORD",
        "ANKOMST_TELEGRAM_TOKEN",
        "ANKOMST_TELEGRAM_WEBHOOK_SECRET",
    } <= SECRET_SETTINGS
    for name in SECRET_SETTINGS:
        # An active empty line would set the secret to "" (not unset): an empty signing key.
        assert name in commented and values[name] == "", name


def test_env_example_loads_as_it_is(tmp_path: Path) -> None:
    copy = tmp_path / ".env"
    copy.write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    Settings(_env_file=copy)  # type: ignore[call-arg]


# -- Containerfile ----------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile_is_the_containerfile() -> None:
    dockerfile = DEPLOY / "Dockerfile"
    assert dockerfile.read_bytes() == CONTAINERFILE.read_bytes()


def test_containerfile_is_multi_stage_on_python_slim() -> None:
    steps = instructions(CONTAINERFILE)
    args = dict(arg.split("=", 1) for word, arg in steps if word == "ARG" and "=" in arg)
    assert "python:3.11-slim" in args["PYTHON_IMAGE"]
    froms = [arg for word, arg in steps if word == "FROM"]
    assert len(froms) >= 2
    assert all(arg.startswith("${PYTHON_IMAGE}") for arg in froms)
    assert any("--from=build" in arg for word, arg in steps if word == "COPY")
    assert any(re.search(r"pip .*install \.(\s|$)", arg) for word, arg in steps if word == "RUN")


def test_containerfile_runs_unprivileged_without_baked_secrets() -> None:
    steps = instructions(CONTAINERFILE)
    users = [arg for word, arg in steps if word == "USER"]
    assert users, "no USER: the container would run as root"
    last = users[-1].split(":")[0]
    assert last not in ("root", "0") and int(last) == UNPRIVILEGED_UID
    text = CONTAINERFILE.read_text(encoding="utf-8")
    assert "ANKOMST_SECRET_KEY=" not in text
    for word, arg in steps:
        if word in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|PASSWORD|TOKEN)\w*=", arg), arg


def test_containerfile_runtime_contract() -> None:
    steps = instructions(CONTAINERFILE)
    env = " ".join(arg for word, arg in steps if word == "ENV")
    assert "ANKOMST_DATA_DIR=/var/lib/ankomst" in env
    assert "ANKOMST_HTTP_HOST=0.0.0.0" in env
    assert ("EXPOSE", "8080") in steps
    assert ("CMD", '["ankomst", "serve"]') in steps
    (healthcheck,) = [arg for word, arg in steps if word == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "curl" not in healthcheck
    _, _, command = healthcheck.partition("CMD ")
    compiles_as_python(json.loads(command))


def test_containerfile_copies_only_what_exists_and_the_ignore_file_lets_through() -> None:
    steps = instructions(CONTAINERFILE)
    ignore = (DEPLOY / "Containerfile.dockerignore").read_text(encoding="utf-8")
    allowed = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    assert (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8") == ignore
    for word, arg in steps:
        if word == "COPY" and "--from=" not in arg:
            *sources, _target = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the context"
                assert source.rstrip("/") in allowed, f"{source} is excluded from the context"


# -- compose.yaml -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_matches_the_compose_specification() -> None:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is not installed")
    result = run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_redis_keeps_an_append_only_file(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert "ping" in redis["healthcheck"]["test"]
    assert "ports" not in redis, "Redis must not be published"
    assert all(compose["networks"][net].get("internal") for net in redis["networks"])


def test_compose_service_waits_for_redis_and_runs_unprivileged(compose: dict[str, Any]) -> None:
    service = compose["services"]["ankomst"]
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert service["build"]["context"] == ".."
    assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert service["env_file"] in (".env", [".env"])
    env = environment(service)
    assert env["ANKOMST_REDIS_URL"] == "redis://redis:6379/0"
    assert env["ANKOMST_DATA_DIR"] == "/var/lib/ankomst"
    assert env["ANKOMST_SECRET_KEY"].startswith("${ANKOMST_SECRET_KEY:?")
    assert str(service["user"]).split(":")[0] == str(UNPRIVILEGED_UID)
    assert service["read_only"] is True
    assert any(str(t).startswith("/tmp") for t in service["tmpfs"])
    assert service["cap_drop"] == ["ALL"]
    assert service["restart"] == "unless-stopped"
    assert any(str(p).endswith(":8080") for p in service["ports"])
    assert any(str(v).endswith(":/var/lib/ankomst") for v in service["volumes"])
    compiles_as_python(service["healthcheck"]["test"][1:])


def test_compose_second_replica_is_an_opt_in_profile(compose: dict[str, Any]) -> None:
    replicas = [s for s in compose["services"].values() if "replicas" in s.get("profiles", [])]
    assert replicas
    first = compose["services"]["ankomst"]
    for replica in replicas:
        assert replica["image"] == first["image"]
        assert environment(replica) == environment(first)
        assert replica["depends_on"] == first["depends_on"]
        assert replica["ports"] != first["ports"]


def test_compose_environment_names_real_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(compose["services"]["ankomst"])
    assert set(env) <= SETTING_NAMES
    env["ANKOMST_SECRET_KEY"] = "x" * 64
    settings = settings_from(env, monkeypatch)
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - in a container, by design


# -- systemd ----------------------------------------------------------------------------------


def unit_entries() -> dict[tuple[str, str], list[str]]:
    """Every value of every key; systemd allows a key more than once."""
    entries: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault((section, key), []).append(value)
    return entries


def test_systemd_unit_parses_and_is_hardened() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    service = parser["Service"]
    assert service["User"] == "ankomst"
    assert service["ExecStart"] == "/opt/ankomst/.venv/bin/ankomst serve"
    assert service["EnvironmentFile"] == "/etc/ankomst/ankomst.env"
    assert service["Restart"] == "on-failure"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert "/var/lib/ankomst" in service["ReadWritePaths"].split()
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    environment = " ".join(unit_entries()[("Service", "Environment")])
    assert "ANKOMST_DATA_DIR=/var/lib/ankomst" in environment


@pytest.fixture
def unit_for_verify(tmp_path: Path) -> Path:
    """The unit with its programs pointed at one that exists here (verify checks they do)."""
    text = UNIT.read_text(encoding="utf-8").replace(
        "/opt/ankomst/.venv/bin/ankomst", sys.executable
    )
    path = tmp_path / UNIT.name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(unit_for_verify: Path) -> None:
    result = run(["systemd-analyze", "verify", str(unit_for_verify)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert UNIT.name not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_security_rates_the_unit_ok(unit_for_verify: Path) -> None:
    # --threshold is on a 0-100 scale: 25 is an exposure level of 2.5, still "OK".
    result = run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=25", str(unit_for_verify)]
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# -- Kubernetes -------------------------------------------------------------------------------

MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of every manifest, by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects


def kubernetes_versions() -> list[str]:
    try:
        from kubernetes_validate.utils import latest_version
    except ImportError:
        return ["latest"]
    return ["1.28", latest_version()]


@pytest.mark.parametrize("version", kubernetes_versions())
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_matches_the_kubernetes_schema(path: Path, version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed"
    )
    errors = []
    for doc in documents(path):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
    assert errors == [], f"{path.name} against Kubernetes {version}"


def test_kustomization_lists_every_manifest_but_the_examples() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    expected = {p.name for p in MANIFESTS if not p.name.endswith(".example.yaml")}
    assert listed == expected
    assert "secret.example.yaml" not in listed, "placeholders must never be applied"
    assert kustomization["namespace"] == "ankomst"
    assert all(
        doc["metadata"].get("namespace", "ankomst") == "ankomst"
        for p in MANIFESTS
        for doc in documents(p)
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")
def test_kustomize_builds_offline() -> None:
    result = run(["kubectl", "kustomize", str(K8S)])
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = {d["kind"] for d in built}
    assert {"Namespace", "ConfigMap", "Deployment", "StatefulSet", "Service"} <= kinds
    assert "Secret" not in kinds


def test_deployment_runs_several_replicas_with_probes(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = k8s[("Deployment", "ankomst")]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    assert "memory" in container["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 8080
    refs = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert refs == ["ankomst-config", "ankomst-secrets"]
    assert ("ConfigMap", "ankomst-config") in k8s and ("Secret", "ankomst-secrets") in k8s


def pod_specs(k8s: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = {}
    for (kind, name), doc in k8s.items():
        if kind == "Pod":
            specs[name] = doc["spec"]
        elif kind in ("Deployment", "StatefulSet"):
            specs[name] = doc["spec"]["template"]["spec"]
    return specs


def test_every_pod_meets_the_restricted_pod_security_standard(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    assert k8s[("Namespace", "ankomst")]["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"
    ] == ("restricted")
    specs = pod_specs(k8s)
    assert {"ankomst", "ankomst-redis"} <= set(specs)
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            label = f"{name}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, label
            assert context["readOnlyRootFilesystem"] is True, label
            assert context["capabilities"]["drop"] == ["ALL"], label
            assert "limits" in container["resources"], label
    assert specs["ankomst"]["securityContext"]["runAsUser"] == UNPRIVILEGED_UID


def test_services_and_budgets_select_existing_pods(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    labels = {
        name: doc["spec"]["template"]["metadata"]["labels"]
        for (kind, name), doc in k8s.items()
        if kind in ("Deployment", "StatefulSet")
    }
    port_names = {
        name: {
            p["name"]
            for c in doc["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for (kind, name), doc in k8s.items()
        if kind in ("Deployment", "StatefulSet")
    }

    def selected(selector: dict[str, str]) -> list[str]:
        return [n for n, lab in labels.items() if selector.items() <= lab.items()]

    for (kind, name), doc in k8s.items():
        if kind == "Service":
            (target,) = selected(doc["spec"]["selector"])
            for port in doc["spec"]["ports"]:
                assert port["targetPort"] in port_names[target], f"Service {name}: {port}"
        elif kind == "PodDisruptionBudget":
            assert len(selected(doc["spec"]["selector"]["matchLabels"])) == 1, name
            assert doc["spec"]["maxUnavailable"] == 1
        elif kind == "NetworkPolicy":
            assert selected(doc["spec"]["podSelector"]["matchLabels"]), name


def test_service_reaches_redis_through_sentinel(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    config = k8s[("ConfigMap", "ankomst-config")]["data"]
    url = config["ANKOMST_REDIS_URL"]
    assert url.startswith("redis+sentinel://")
    target = parse_sentinel_url(url)
    (host, port), *_ = target.sentinels
    sentinel_service = k8s[("Service", host)]
    assert port in [p["port"] for p in sentinel_service["spec"]["ports"]]
    statefulset = k8s[("StatefulSet", "ankomst-redis")]
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["volumeClaimTemplates"]
    containers = {c["name"]: c for c in statefulset["spec"]["template"]["spec"]["containers"]}
    assert "--sentinel" in containers["sentinel"]["command"]
    script = k8s[("ConfigMap", "ankomst-redis-scripts")]["data"]["configure.sh"]
    assert f'MASTER_NAME="${{MASTER_NAME:-{target.service_name}}}"' in script
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert re.search(rf"^\s*{line}$", script, re.M), line
    # Several replicas cannot all poll Telegram: the updates come by webhook.
    assert config["ANKOMST_TELEGRAM_MODE"] == "webhook"


def test_k8s_settings_load(
    k8s: dict[tuple[str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = k8s[("ConfigMap", "ankomst-config")]["data"]
    secret = k8s[("Secret", "ankomst-secrets")]["stringData"]
    assert set(config) <= SETTING_NAMES and set(secret) <= SETTING_NAMES
    assert set(secret) <= SECRET_SETTINGS, "a secret setting in the ConfigMap, or vice versa"
    assert not set(config) & SECRET_SETTINGS
    settings = settings_from({**config, **secret}, monkeypatch)
    assert settings.telegram_mode == "webhook"
    assert str(settings.directory) == "/etc/ankomst/directory.toml"
    deployment = k8s[("Deployment", "ankomst")]["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in deployment["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    assert mounts["directory"] == str(settings.directory.parent)
    directory_map = volumes["directory"]["configMap"]["name"]
    assert settings.directory.name in k8s[("ConfigMap", directory_map)]["data"]
    assert mounts["data"] == str(settings.data_dir)


def test_secret_example_holds_placeholders_only(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    secret = k8s[("Secret", "ankomst-secrets")]
    assert "data" not in secret
    assert set(secret["stringData"]) == {
        "ANKOMST_SECRET_KEY",
        "ANKOMST_SMTP_PASSWORD",
        "ANKOMST_TELEGRAM_TOKEN",
        "ANKOMST_TELEGRAM_WEBHOOK_SECRET",
    }
    for name, value in secret["stringData"].items():
        assert value.startswith("CHANGE-ME"), f"{name} does not look like a placeholder"


def test_k8s_directory_is_valid(k8s: dict[tuple[str, str], dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text(k8s[("ConfigMap", "ankomst-directory")]["data"]["directory.toml"], "utf-8")
    assert check_directory(path) == []


# -- README -----------------------------------------------------------------------------------


def test_readme_covers_what_an_operator_needs() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for needle in (
        "secrets.token_urlsafe(48)",
        "ankomst directory check",
        "ankomst token create",
        "ankomst invite",
        "ANKOMST_TELEGRAM_MODE=webhook",
        "/telegram/webhook",
        "X-Telegram-Bot-Api-Secret-Token",
        "setWebhook",
        "secret_token",
        "BGREWRITEAOF",
        "--rdb",
        "rediss://",
        "/readyz",
        "/healthz",
    ):
        assert needle in text, needle
    for name in set(re.findall(r"`([\w.-]+\.(?:yaml|service|conf))`", text)):
        assert (DEPLOY / name).exists() or (K8S / name).exists(), f"README names {name}"
