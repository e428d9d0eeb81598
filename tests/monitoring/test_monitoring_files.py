"""monitoring/: the Prometheus alert rules pass promtool, the Grafana dashboard is importable JSON, and every
metric either of them names is served by a real agent's /metrics."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from actors.actions.offsite import audited
from core import audit
from core.atomic import write_bytes_atomic
from core.config import load_settings
from core.manifest import ComponentRecord
from core.points import Storage
from testbed.polling import wait_for
from tests.faults.harness import kill, start_cli, text_of, write_config

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
METRIC = re.compile(r"\bragflow_backup_[a-z0-9_]+\b")


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def rule_queries() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_the_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (scripts/testbed installs it)"

    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rule_queries())} rules found" in checked.stdout


def test_every_rule_has_a_severity_and_a_summary():
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_dashboard_asks_its_prometheus_on_import_and_every_panel_has_a_query():
    dashboard = json.loads(DASHBOARD.read_text())

    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["panels"] and all(panel["targets"] for panel in dashboard["panels"])
    assert all(panel["datasource"]["uid"] == "${DS_PROMETHEUS}" for panel in dashboard["panels"])
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def served_metrics(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def a_storage_root_with_everything_to_report(root: Path, settings) -> None:
    """A complete point in the history, a drill, a mirror reconcile and an offsite copy: what a month of the
    agent leaves, so every metric that depends on one is there."""
    storage = Storage(root)
    at = datetime.now(timezone.utc) - timedelta(hours=1)
    point = storage.new_point(["redis"], at=at)
    point.save_record(ComponentRecord(component="redis", status="ok", started_at=at, finished_at=at + timedelta(seconds=3)))
    point.log_history()
    audit.record(root, "drill", point.ref, "ok", point=point.ref, seconds=12.5)
    (root / "state").mkdir(exist_ok=True)
    write_bytes_atomic(root / "state" / "reconcile.json",
                       json.dumps({"time": at.isoformat(), "complete": True, "errors": []}).encode())
    with audited(settings, "offsite-copy", point.ref):
        pass


def test_every_metric_the_rules_and_the_dashboard_name_is_served_by_the_agent(tmp_path, redis_url):
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "broker": {"url": redis_url, "namespace": "monitoring-files"},
        "mysql": {"enabled": False}, "minio": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False}, "metrics": {"port": 0},
        "offsite": {"enabled": True, "repository": str(tmp_path / "offsite")},
        "schedule": {name: "" for name in ("backup", "verify", "reconcile", "versions_prune", "drill",
                                           "offsite_mirror", "offsite_check", "offsite_check_data")}})
    a_storage_root_with_everything_to_report(tmp_path / "backups", load_settings(config))
    log = tmp_path / "agent.log"
    agent = start_cli(config, log, "agent")
    try:
        wait_for(lambda: re.search(r"http://127\.0\.0\.1:(\d+)/metrics", text_of(log)), f"the agent (log {log})")
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics", text_of(log)).group(1))
        served = served_metrics(port)
    finally:
        kill(agent, signal.SIGTERM)

    named = {name for query in [*rule_queries(), *dashboard_queries()] for name in METRIC.findall(query)}
    assert named, "the rules and the dashboard name ragflow_backup_* metrics"
    assert sorted(named - served) == [], f"named but not served; the agent serves {sorted(served)}"
