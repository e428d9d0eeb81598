"""The container image, the compose files and the systemd units say what the READMEs promise.

The Dockerfile is read here; tests/test_agent_image.py builds it on the test bed's Debian base and runs
it. The compose files are checked against RAGFlow v0.27's own (testbed/ragflow_docker/v0.27).
"""
from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from core.clients import compose_override

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "docker-compose.backup.yml"
STANDALONE = ROOT / "docker" / "docker-compose.standalone.yml"
RAGFLOW_V027 = ROOT / "testbed" / "ragflow_docker" / "v0.27"
UNITS = {name: ROOT / "systemd" / f"ragflow-backup-{name}.service" for name in ("agent", "worker")}
DEPLOYMENT_FILES = [DOCKERFILE, COMPOSE, STANDALONE, *UNITS.values(), ROOT / "docker" / "README.md", ROOT / "systemd" / "README.md"]
STORAGE_ROOT = "/share/backups/ragflow"
CONFIG = "/etc/ragflow-backup/config.yml"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def compose_service() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["ragflow-backup"]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNITS[name].read_text())
    return parser


# ---------------------------------------------------------------- Dockerfile


def test_the_image_is_built_from_python_slim_unless_a_base_image_is_given_and_runs_as_a_non_root_user():
    instructions = dockerfile_instructions()
    assert instructions[:2] == [("ARG", "BASE_IMAGE=python:3.11-slim"), ("FROM", "${BASE_IMAGE}")]
    users = [args for op, args in instructions if op == "USER"]
    assert users, "the image must switch to its own user"
    assert users[-1].split(":")[0] not in ("root", "0"), "the last USER decides who runs the agent"
    assert users[-1].split(":")[0] in ("ragflow-backup", "10001")
    created = " ".join(args for op, args in instructions if op == "RUN")
    assert "useradd" in created and "--uid 10001" in created and "ragflow-backup" in created


def test_the_image_has_the_tools_a_backup_needs_and_installs_the_package_from_the_checkout():
    instructions = dockerfile_instructions()
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert re.search(r"apt-get install .*(default-mysql-client|mariadb-client)", runs)
    assert re.search(r"apt-get install .*\bgit\b", runs), "the config history is a Git repository"
    assert re.search(r"apt-get install .*\brestic\b", runs), "the offsite copy is a restic repository"
    assert re.search(r"apt-get install .*\bage\b", runs), "encryption at rest uses age"
    assert re.search(r"python3 -m venv /opt/ragflow-backup\b", runs), "Debian's python3 refuses a system-wide pip"
    assert re.search(r"/opt/ragflow-backup/bin/pip install /src\b", runs)
    copied = [args.split()[0] for op, args in instructions if op == "COPY"]
    assert {"agent", "actors"} <= set(copied) and "." not in copied, "only the package, never the whole context"


def test_the_image_starts_the_agent_at_a_lower_priority_with_the_config_and_checks_its_health_endpoint():
    instructions = dict(dockerfile_instructions())
    assert json.loads(instructions["ENTRYPOINT"]) == ["nice", "-n", "10", "ragflow-backup"]
    assert json.loads(instructions["CMD"]) == ["--config", CONFIG, "run"]
    health = instructions["HEALTHCHECK"]
    assert "CMD" in health and "urllib.request" in health and "http://127.0.0.1:9108/healthz" in health
    # The probe itself must be valid Python: run its code against nothing listening and expect a failure.
    code = json.loads(health[health.index("CMD") + 3:].strip())[2].replace("127.0.0.1:9108", "127.0.0.1:9")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert probe.returncode != 0 and "SyntaxError" not in probe.stderr


# ---------------------------------------------------------------- compose override


def test_the_compose_service_joins_ragflows_network_and_mounts_its_folder_read_only():
    service = compose_service()
    assert service["networks"] == ["ragflow"]
    mounts = {volume.split(":")[1]: volume for volume in service["volumes"]}
    assert mounts["/ragflow/docker"] == "./:/ragflow/docker:ro"
    assert mounts[STORAGE_ROOT] == f"{STORAGE_ROOT}:{STORAGE_ROOT}", "the storage root is read-write"
    assert mounts[CONFIG].endswith(":ro")
    assert service["environment"]["RAGFLOW_BACKUP_RAGFLOW_DIR"] == "/ragflow/docker"
    assert service["environment"]["RAGFLOW_BACKUP_STORAGE_ROOT"] == STORAGE_ROOT


def test_the_compose_service_restarts_waits_for_ragflows_services_and_stops_gracefully():
    service = compose_service()
    assert service["restart"] == "unless-stopped"
    assert set(service["depends_on"]) == {"mysql", "minio", "redis"}, "es01/opensearch01 are behind profiles"
    assert service["stop_grace_period"] == "660s"


# ---------------------------------------------------------------- against RAGFlow v0.27's compose files


def ragflow_services() -> dict[str, dict]:
    """RAGFlow v0.27's services, docker-compose.yml with what it includes."""
    services: dict[str, dict] = {}
    for name in ("docker-compose-base.yml", "docker-compose.yml"):
        services.update(yaml.safe_load((RAGFLOW_V027 / name).read_text())["services"])
    return services


def ragflow_env_names() -> set[str]:
    lines = (RAGFLOW_V027 / ".env").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z_][A-Z0-9_]*=", line)}


def ragflow_network() -> str:
    """The network RAGFlow's compose creates: <project>_<network>, the project being the folder's name
    ("docker") as neither a top-level name: nor COMPOSE_PROJECT_NAME sets another."""
    main = yaml.safe_load((RAGFLOW_V027 / "docker-compose.yml").read_text())
    assert "name" not in main and "COMPOSE_PROJECT_NAME" not in ragflow_env_names()
    networks = yaml.safe_load((RAGFLOW_V027 / "docker-compose-base.yml").read_text())["networks"]
    assert list(networks) == ["ragflow"] and "name" not in networks["ragflow"]
    return "docker_ragflow"


def standalone() -> dict:
    return yaml.safe_load(STANDALONE.read_text())


def test_the_override_waits_only_for_services_ragflow_always_starts_and_mysql_only_when_its_profile_runs():
    services = ragflow_services()
    for name, condition in compose_service()["depends_on"].items():
        assert name in services, f"RAGFlow v0.27 has no service {name}"
        if services[name].get("profiles"):
            assert condition.get("required") is False, f"{name} runs under profiles {services[name]['profiles']}"
        else:
            assert condition.get("required", True) is True
    assert "metadata-mysql" in services["mysql"]["profiles"]


def test_the_time_zone_is_ragflows_tz_in_both_compose_files():
    assert "TZ" in ragflow_env_names() and "TIMEZONE" not in ragflow_env_names()
    for path in (COMPOSE, STANDALONE):
        assert "TIMEZONE" not in path.read_text(), path.name
    assert compose_service()["environment"]["TZ"] == "${TZ:-UTC}"
    assert standalone()["services"]["ragflow-backup"]["environment"]["TZ"] == "${TZ:-UTC}"


def test_the_standalone_stack_joins_the_network_ragflows_compose_creates_as_an_external_network():
    stack = standalone()
    service = stack["services"]["ragflow-backup"]
    assert service["networks"] == ["ragflow"]
    assert stack["networks"]["ragflow"] == {"name": ragflow_network(), "external": True}
    services = ragflow_services()
    for name in ("mysql", "minio", "redis", "es01", "opensearch01"):  # the hosts `init --network compose` writes
        assert name in services and "ragflow" in services[name]["networks"]
        assert name in STANDALONE.read_text(), f"the header names {name}"
    assert "depends_on" not in service, "another stack's services cannot be waited for"


def test_the_standalone_stack_runs_as_puid_pgid_with_the_overrides_mounts_and_stop_settings():
    service = standalone()["services"]["ragflow-backup"]
    assert service["user"] == "${PUID:-1000}:${PGID:-100}"
    assert not {"PUID", "PGID"} & ragflow_env_names(), "our names must not take RAGFlow's meaning"
    override = compose_service()
    for key in ("init", "restart", "stop_grace_period"):
        assert service[key] == override[key], key
    assert {k: v for k, v in service["environment"].items()} == override["environment"]
    mounts = {volume.split(":")[1]: volume for volume in service["volumes"]}
    assert set(mounts) == {"/ragflow/docker", STORAGE_ROOT, CONFIG}
    assert mounts["/ragflow/docker"].endswith(":ro") and mounts[CONFIG].endswith(":ro")
    assert mounts[STORAGE_ROOT] == f"{STORAGE_ROOT}:{STORAGE_ROOT}"


def test_the_docker_socket_is_not_mounted_unless_the_operator_uncomments_it_and_the_risk_is_said():
    text = COMPOSE.read_text()
    assert not any("docker.sock" in volume for volume in compose_service()["volumes"])
    socket_line = next(line for line in text.splitlines() if "/var/run/docker.sock" in line)
    assert socket_line.lstrip().startswith("#")
    assert "mysql.mode: docker" in text and "root on the host" in text


def commented_block(text: str, begin: str, end: str) -> dict:
    """The YAML of a commented-out block between two marker comments, as if uncommented."""
    lines = text[text.index(begin) + len(begin):text.index(end)].splitlines()
    body = "\n".join(re.sub(r"^(\s*)# ?", r"\1", line) for line in lines if line.strip())
    return yaml.safe_load(textwrap.dedent(body))


@pytest.mark.parametrize("engine, service", [("elasticsearch", "es01"), ("opensearch", "opensearch01")])
def test_the_commented_path_repo_override_is_the_one_doctor_prints(engine, service):
    block = commented_block(COMPOSE.read_text(), "# BEGIN path.repo", "# END path.repo")
    advice = compose_override(engine)
    # doctor's advice: a line of prose, the indented YAML, then a line of prose.
    yaml_lines = [line for line in advice.splitlines() if line.startswith(" ")]
    expected = yaml.safe_load(textwrap.dedent("\n".join(yaml_lines)))["services"][service]
    assert block[service] == expected


# ---------------------------------------------------------------- systemd units


@pytest.mark.parametrize("name", ["agent", "worker"])
def test_each_systemd_unit_runs_its_command_as_ragflow_backup_and_restarts_on_failure(name):
    service = unit(name)["Service"]
    assert service["User"] == "ragflow-backup"
    assert service["Restart"] == "on-failure" and service["RestartSec"] == "10"
    assert service["ExecStart"] == f"/opt/ragflow-backup/.venv/bin/ragflow-backup --config {CONFIG} {name}"
    assert service["KillSignal"] == "SIGTERM" and service["TimeoutStopSec"] == "660"
    assert unit(name)["Unit"]["After"].split() == ["network-online.target", "docker.service"]


@pytest.mark.parametrize("name", ["agent", "worker"])
def test_each_systemd_unit_is_hardened_and_may_write_only_the_storage_root(name):
    service = unit(name)["Service"]
    expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ReadWritePaths": STORAGE_ROOT,
                "ProtectHome": "yes", "PrivateTmp": "yes"}
    assert {key: service.get(key) for key in expected} == expected


@pytest.mark.parametrize("name", ["agent", "worker"])
def test_each_systemd_unit_yields_the_cpu_and_the_disk_to_ragflow(name):
    service = unit(name)["Service"]
    assert int(service["Nice"]) > 0
    assert service["IOSchedulingClass"] == "best-effort" and int(service["IOSchedulingPriority"]) == 7


def test_systemd_accepts_both_units(tmp_path):
    """`systemd-analyze verify` where it exists; ExecStart points at this venv's command so the
    check is about the units, not about this machine lacking /opt/ragflow-backup."""
    for name in UNITS:
        assert unit(name).has_section("Install")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the parse above is the check on machines without systemd
    here = str(Path(sys.executable).parent / "ragflow-backup")
    copies = []
    for path in UNITS.values():
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace("/opt/ragflow-backup/.venv/bin/ragflow-backup", here))
        copies.append(str(copy))
    result = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "ragflow-backup-" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


# ---------------------------------------------------------------- secrets


PLACEHOLDER = re.compile(r"^(\$\{?[A-Z_]+.*|[A-Z_]+|<[^>]+>)$")  # ${REDIS_PASSWORD}, PASSWORD, <password>
ASSIGNED = re.compile(r"(?i)(?:password|passwd|secret_key|secret|_pass)\w*[\"']?\s*[:=]\s*[\"']?([^\s\"'#,)]+)")
FLAG = re.compile(r"--requirepass\s+[\"']?([^\s\"']+)")
URL_CREDENTIALS = re.compile(r"://[^/\s:@]*:([^@\s/]+)@")


def test_no_deployment_file_holds_a_password(testbed_env):
    known = {"infini_rag_flow"}  # RAGFlow's default passwords
    known |= {value for key, value in testbed_env.items() if re.search("PASS|SECRET", key) and len(value) >= 6}
    for path in DEPLOYMENT_FILES:
        text = path.read_text()
        for secret in known:
            assert secret not in text, f"{path.name} holds a password"
        for pattern in (ASSIGNED, FLAG, URL_CREDENTIALS):
            for match in pattern.finditer(text):
                assert PLACEHOLDER.match(match.group(1)), f"{path.name}: {match.group(0)!r} looks like a password"


def test_the_units_create_private_files_and_no_deployment_file_sets_an_offsite_password():
    for name in UNITS:
        assert unit(name)["Service"]["UMask"] == "0077"
    for path in DEPLOYMENT_FILES:
        text = path.read_text()
        assert not re.search(r"^\s*(RESTIC_PASSWORD|RAGFLOW_BACKUP_OFFSITE_PASSWORD)\s*[:=]\s*\S", text, re.MULTILINE), path
        assert not re.search(r"^\s*password:\s*\S", text, re.MULTILINE), path
