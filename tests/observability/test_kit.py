"""The operators' kit in examples/ (Grafana dashboard, Prometheus alerts and scrape
config) names only metrics the daemon exports, and the quickstart turns the endpoint on.
(The files were also checked with promtool and a real Prometheus; see
docs/observability.md.)"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from cat2sync.manifest import load_manifest
from cat2sync.metrics import Metrics
from cat2sync.status import Snapshot
from cat2sync.telemetry import Telemetry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_NAME = re.compile(r"\bcat2sync_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _exported(tmp_path: Path) -> set[str]:
    """Every sample name the daemon's /metrics can carry."""
    manifest = load_manifest(EXAMPLES / "configs" / "quickstart.toml", check_paths=False)
    snap = Snapshot(taken=time.time(), rules=[], states={})
    metrics = Metrics(Telemetry(tmp_path), lambda: (manifest, snap))
    names = set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES)
    return names


def _alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load((EXAMPLES / "prometheus" / "cat2sync-alerts.yml").read_text())
    rules: list[dict[str, Any]] = [r for group in doc["groups"] for r in group["rules"]]
    return rules


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / "grafana" / "cat2sync-dashboard.json").read_text())
    return doc


def test_the_alerts_cover_the_issue(tmp_path: Path) -> None:
    alerts = {rule["alert"]: rule for rule in _alerts()}
    assert {
        "Cat2syncNoSuccess",
        "Cat2syncBacklogGrowing",
        "Cat2syncErrors",
        "Cat2syncServerDown",
    } <= set(alerts)
    assert "3 * cat2sync_rule_interval_seconds" in alerts["Cat2syncNoSuccess"]["expr"]
    exported = _exported(tmp_path)
    for name, rule in alerts.items():
        assert rule["annotations"]["summary"], name
        used = set(_NAME.findall(rule["expr"]))
        assert used <= exported, (name, used - exported)


def test_the_dashboard_uses_exported_metrics(tmp_path: Path) -> None:
    dashboard = _dashboard()
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"  # importable as it is
    exported = _exported(tmp_path)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            used = set(_NAME.findall(target["expr"]))
            assert used and used <= exported, (panel["title"], used - exported)


def test_the_scrape_config_and_the_quickstart_agree() -> None:
    config = yaml.safe_load((EXAMPLES / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert config["rule_files"] == ["cat2sync-alerts.yml"]
    manifest = load_manifest(EXAMPLES / "configs" / "quickstart.toml", check_paths=False)
    assert str(manifest.daemon.http) in job["static_configs"][0]["targets"]
    assert manifest.daemon.http is not None and manifest.daemon.http.host == "127.0.0.1"
