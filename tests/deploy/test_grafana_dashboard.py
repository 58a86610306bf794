"""deploy/grafana: the dashboard is well-formed, has the panels the issue asks for, every query parses
(promtool) and selects only metrics that serving/metrics.py exports; provisioning finds it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, needs_promtool
from tests.deploy.promql import exported_metric_names, grafana_to_promql, metric_names, promtool, rules_file

yaml = pytest.importorskip("yaml")

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "pycemaker.json"
PANEL_TYPES = {"stat", "timeseries", "state-timeline", "row", "text", "gauge", "table", "bargauge"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # collapsed rows hold theirs
    return out


def queries(dashboard: dict) -> dict[str, str]:
    """Every PromQL expression of the dashboard: panel targets, annotations, template variables."""
    found = {}
    for panel in panels(dashboard):
        for t in panel.get("targets", []):
            found[f"panel {panel['id']} ({panel['title']}) {t['refId']}"] = t["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            found[f"annotation {annotation['name']}"] = annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = variable["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
            found[f"variable {variable['name']}"] = inner
    return found


def test_the_dashboard_is_well_formed(dashboard):
    assert dashboard["uid"] == "pycemaker-health" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    occupied = set()
    for panel in panels(dashboard):
        assert panel["type"] in PANEL_TYPES, panel["type"]
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] != "row":
            # One data source variable: the dashboard imports into any Grafana with a Prometheus.
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            for t in panel["targets"]:
                assert t["datasource"] == panel["datasource"] and t["expr"].strip()
                refs = [x["refId"] for x in panel["targets"]]
                assert len(refs) == len(set(refs))


def test_every_query_selects_only_metrics_serving_exports(dashboard):
    exported = exported_metric_names()
    for where, expr in queries(dashboard).items():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} not exported by serving/metrics.py"


def test_every_metric_shown_is_filtered_by_the_job_and_replica_variables(dashboard):
    for panel in panels(dashboard):
        for t in panel.get("targets", []):
            assert 'job=~"$job"' in t["expr"] and 'instance=~"$instance"' in t["expr"], (panel["title"], t["expr"])


@needs_promtool
def test_every_query_parses(dashboard, tmp_path):
    expressions = {f"dashboard_query_{i}": grafana_to_promql(expr) for i, expr in enumerate(queries(dashboard).values())}
    path = rules_file(expressions, tmp_path / "dashboard_rules.yml")
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_panels_the_issue_asks_for(dashboard):
    by_title = {p["title"]: p for p in panels(dashboard)}
    exprs = lambda title: " ".join(t["expr"] for t in by_title[title]["targets"])  # noqa: E731

    health = by_title["Health: observed vs forecast (P10-P90 band)"]
    legends = {t["legendFormat"] for t in health["targets"]}
    assert {"observed", "forecast P50", "P10", "P90"} <= legends
    assert "pycemaker_health{" in exprs(health["title"]) and "pycemaker_predicted_health_band{" in exprs(health["title"])
    fills = {
        o["matcher"]["options"]: p["value"]
        for o in health["fieldConfig"]["overrides"] for p in o["properties"] if p["id"] == "custom.fillBelowTo"
    }
    assert fills == {"P90": "P10"}, "the band is the area between P90 and P10"
    assert "pycemaker_time_to_failure_seconds" in exprs("Time to failure")
    assert "pycemaker_time_to_failure_seconds" in exprs("Time to failure (P50)")
    assert "pycemaker_health_flag" in exprs("Flags per stream")
    assert "pycemaker_model_info" in exprs("Model version")
    assert "pycemaker_http_request_duration_seconds_bucket" in exprs("Request latency")


def test_provisioning_loads_the_dashboard_from_where_the_compose_overlay_mounts_it():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "pycemaker.yml").read_text())["providers"][0]
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert provider["type"] == "file" and datasource["type"] == "prometheus"
    grafana = yaml.safe_load((REPO / "deploy" / "compose.grafana.yml").read_text())["services"]["grafana"]
    stack = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert grafana["depends_on"] == ["prometheus"] and "prometheus" in stack  # the overlay's data source
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert datasource["url"] == "http://prometheus:9090"
