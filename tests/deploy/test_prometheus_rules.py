"""deploy/prometheus: the alert rules are valid, each one is unit-tested with promtool, they read only
metrics the API exports, and the compose Prometheus loads them and scrapes the API."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, needs_promtool
from tests.deploy.promql import PROMETHEUS_SERIES, exported_metric_names, metric_names, promtool

yaml = pytest.importorskip("yaml")

DEPLOY = REPO / "deploy" / "prometheus"
ALERTS = DEPLOY / "alerts.yml"
ALERT_TESTS = REPO / "tests" / "deploy" / "alerts_test.yml"


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_promtool_checks_the_alert_rules():
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass():
    done = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_is_unit_tested_firing_and_quiet():
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == ["../../deploy/prometheus/alerts.yml"]
    cases = [case for group in tests["tests"] for case in group.get("alert_rule_test", [])]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case.get("exp_alerts") for case in mine), f"{rule['alert']}: no case where it fires"
        # Every `for` is exercised: some case expects it not to fire yet (or ever) on some series.
        assert any(not case.get("exp_alerts") for case in mine) or "absent(" in rule["expr"], f"{rule['alert']}: no quiet case"


def test_alerts_read_only_metrics_the_api_exports():
    allowed = exported_metric_names() | PROMETHEUS_SERIES
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= allowed, f"{rule['alert']}: {sorted(names - allowed)} not on /metrics (serving/metrics.py)"
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_issue_s_alerts_are_there_with_their_thresholds():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    soon = rules["PycemakerFailurePredictedSoon"]
    assert 'bound="expected"' in soon["expr"] and "< 1800" in soon["expr"] and soon["for"] == "1m"
    unknown = rules["PycemakerHealthUnknown"]
    assert 'state="unknown"' in unknown["expr"] and unknown["for"] == "5m"
    assert "12 * 3600" in rules["PycemakerNoModelPromoted"]["expr"]


def test_compose_prometheus_loads_the_rules_and_scrapes_the_api():
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "target" in jobs  # the original scrape of the test bed is kept
    api = jobs["pycemaker-api"]  # the job PycemakerApiDown watches
    assert api["metrics_path"] == "/metrics"
    assert 'job="pycemaker-api"' in next(r["expr"] for r in alert_rules() if r["alert"] == "PycemakerApiDown")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert api["dns_sd_configs"][0]["names"] == ["api"] and "api" in compose["services"]
