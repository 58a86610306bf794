"""Collector targets without Prometheus: the setting, the query building and the series-to-service mapping.

The same queries against a real Prometheus: tests/e2e/test_collector_targets.py.
"""

from __future__ import annotations

import pytest

from telemetry.collector import stream_queries
from telemetry.prometheus import Sample
from telemetry.settings import Settings, SettingsError, load_settings
from telemetry.targets import (
    SERVICE_LABEL,
    Target,
    TargetError,
    by_service,
    combined_query,
    parse_selector,
    parse_targets,
    restrict,
)


def test_targets_are_read_in_order_with_their_matchers() -> None:
    text = """
    # one a line, or separated by ';'
    checkout = {job="checkout"}
    api-eu={job="api", instance=~"eu-.*"}; legacy.v1={job='legacy', path!~"a;b}c"}
    """
    targets = parse_targets(text)
    assert targets == (
        Target("checkout", ('job="checkout"',)),
        Target("api-eu", ('job="api"', 'instance=~"eu-.*"')),
        Target("legacy.v1", ("job='legacy'", 'path!~"a;b}c"')),
    )
    assert str(targets[1]) == 'api-eu={job="api", instance=~"eu-.*"}'
    assert parse_targets("") == () and parse_targets("  # nothing\n") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('checkout=job="checkout"', "not a label selector in braces"),
        ('checkout={job="checkout"', "not a label selector in braces"),
        ("checkout={job=checkout}", "cannot read a matcher"),
        ('checkout={job="a" instance="b"}', "expected ','"),
        ("checkout={}", "at least one label matcher"),
        ('checkout={job=~".*"}', "accepts an empty label"),
        ('checkout={job=~"(unclosed"}', "not a valid regular expression"),
        ('checkout={__name__="up"}', "not by metric name"),
        ('checkout={job="a"}; checkout={job="b"}', "given twice"),
        ('-bad={job="a"}', "not a valid service name"),
        ('a b={job="a"}', "not a valid service name"),
        ('{job="a"}', "not a valid service name"),
        ("checkout", "write service="),
        ('checkout={job="a"} extra', "unexpected"),
    ],
)
def test_a_bad_target_is_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_targets(text)


def test_the_setting_is_read_from_the_environment_or_a_file_and_validated(tmp_path) -> None:
    env = {"PYCEMAKER_COLLECTOR_TARGETS": 'a={job="a"};b={job="b"}'}
    assert [t.service for t in load_settings(env).targets()] == ["a", "b"]
    path = tmp_path / "targets.txt"
    path.write_text('# the fleet\nc={job="c"}\n')
    assert [t.service for t in load_settings({"PYCEMAKER_COLLECTOR_TARGETS_FILE": str(path)}).targets()] == ["c"]
    with pytest.raises(SettingsError, match=r"collector_targets: target 'a' is given twice"):
        load_settings({"PYCEMAKER_COLLECTOR_TARGETS": 'a={job="a"};a={job="b"}'})
    with pytest.raises(SettingsError, match="both set"):
        load_settings({**env, "PYCEMAKER_COLLECTOR_TARGETS_FILE": str(path)})
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({"PYCEMAKER_COLLECTOR_TARGETS_FILE": str(tmp_path / "absent.txt")})
    assert load_settings({}).targets() == ()


def test_collect_refuses_a_bad_target_flag_before_touching_anything(tmp_path, caplog) -> None:
    from pycemaker.cli import main

    config = tmp_path / "pycemaker.toml"
    config.write_text(f'collector_spill_path = "{tmp_path / "spill.jsonl"}"\nmongo_uri = "mongodb://127.0.0.1:1/"\n')
    assert main(["--config", str(config), "collect", "--once", "--target", 'checkout={job="a"', "--target", "b"]) == 2
    assert "not a label selector in braces" in caplog.text
    assert main(["--config", str(config), "collect", "--once", "--target", 'a={job="a"}', "--targets-file", "x"]) == 2
    assert "use one" in caplog.text
    assert not (tmp_path / "spill.jsonl").exists()


def test_selectors_keep_their_matchers_as_written() -> None:
    assert parse_selector(' { job = "a" , instance!="b",} ') == ('job="a"', 'instance!="b"')
    assert parse_selector('{path=~`a\\d+`}') == ("path=~`a\\d+`",)


# --- the query -------------------------------------------------------------------------


def test_every_default_query_is_restricted_in_every_selector() -> None:
    s = Settings()
    m = ('job="api"', 'instance=~"eu-.*"')
    assert restrict(s.query_cpu, m) == 'process_cpu_usage{job="api",instance=~"eu-.*"}'
    assert restrict(s.query_memory, m) == (
        'sum(jvm_memory_used_bytes{job="api",instance=~"eu-.*"})/sum(jvm_memory_max_bytes{job="api",instance=~"eu-.*"})'
    )
    assert restrict(s.query_success, m) == (
        'sum(irate(http_server_requests_seconds_count{job="api",instance=~"eu-.*",'
        'outcome="SUCCESS",uri!~"/actuator.*"}[1m]))'
    )
    rt = restrict(s.query_response_time, m)
    assert rt.count('{job="api",instance=~"eu-.*",uri!~"/actuator.*"}[1m]') == 2


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # keywords, label lists, ranges, offsets, numbers and strings are left alone
        (
            'sum by (job) (rate(x[5m] offset 1m)) / on(job) group_left() count without(instance)(up{a="}"}) > bool 1e3',
            'sum by (job) (rate(x{t="1"}[5m] offset 1m)) / on(job) group_left() count without(instance)(up{t="1",a="}"}) > bool 1e3',
        ),
        ("histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m:1m])))",
         'histogram_quantile(0.9, sum by (le) (rate(h_bucket{t="1"}[5m:1m])))'),
        ('{__name__=~"a.*"}', '{t="1",__name__=~"a.*"}'),
        ('label_replace(up, "a", "$1", "b", "(.*)")', 'label_replace(up{t="1"}, "a", "$1", "b", "(.*)")'),
        ("a:rate5m{} and ignoring(x) b or c unless d", 'a:rate5m{t="1"} and ignoring(x) b{t="1"} or c{t="1"} unless d{t="1"}'),
        ("max(x @ end()) - Inf", 'max(x{t="1"} @ end()) - Inf'),
    ],
)
def test_restrict_finds_the_selectors_of_any_expression(expr: str, expected: str) -> None:
    assert restrict(expr, ['t="1"']) == expected


def test_an_expression_without_a_selector_cannot_be_restricted() -> None:
    with pytest.raises(TargetError, match="selects no series"):
        restrict("vector(1) * 2", ['job="a"'])


def test_the_combined_query_stamps_each_target_and_unites_them_with_or() -> None:
    targets = parse_targets('a={job="a"}; b={job="b"}')
    assert combined_query("sum(x)/sum(y)", targets) == (
        f'label_replace(sum(x{{job="a"}})/sum(y{{job="a"}}), "{SERVICE_LABEL}", "a", "", "")'
        f' or label_replace(sum(x{{job="b"}})/sum(y{{job="b"}}), "{SERVICE_LABEL}", "b", "", "")'
    )
    s = Settings(collector_targets='a={job="a"}; b={job="b"}')
    queries = {q.stream.collection: dict(q.exprs) for q in stream_queries(s)}
    assert sum(len(e) for e in queries.values()) == 5  # one query per column, whatever the number of targets
    assert queries["cpu_usage"]["cpu"] == combined_query(s.query_cpu, targets)
    assert {q.stream.collection: dict(q.exprs) for q in stream_queries(Settings())}["cpu_usage"] == {"cpu": "process_cpu_usage"}


# --- the result ------------------------------------------------------------------------


def test_series_map_to_their_service_and_ambiguous_ones_to_none() -> None:
    one, two, three = (Sample(None, v) for v in (1.0, 2.0, 3.0))  # type: ignore[arg-type]
    series = [
        ({SERVICE_LABEL: "a"}, one),
        ({SERVICE_LABEL: "b", "instance": "x"}, two),
        ({SERVICE_LABEL: "b", "instance": "y"}, three),
        ({SERVICE_LABEL: "c"}, None),
        ({"job": "unlabelled"}, three),
    ]
    found, several = by_service(series)
    assert found == {"a": one, "c": None}
    assert several == ("b",)
