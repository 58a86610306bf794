"""The demo target and the load shape, in-process (no servers): fast, and not marked e2e."""

from __future__ import annotations

import time

import pytest

from telemetry.simulator import STAGE_SECONDS, STAGE_USERS
from testbed.config import TargetConfig
from testbed.shape import stage_at
from testbed.target import CpuUsage, burn_cpu, create_app, outcome, uri_template

FORM = {"name": "Ada", "email": "ada@example.com", "password": "pw", "cellphoneNumber": "1"}


def metric_lines(client, name: str) -> dict[str, float]:
    """``{labels: value}`` for one metric family in the target's exposition."""
    text = client.get("/actuator/prometheus", headers={"Accept": "text/plain"}).get_data(as_text=True)
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            out[key[len(name) :]] = float(value)
    return out


def test_the_form_server_routes_register_list_and_delete() -> None:
    client = create_app(TargetConfig(work_ms=0.1, hash_iterations=10)).test_client()
    created = client.post("/registrar", json=FORM)
    assert created.status_code == 200
    user = created.get_json()
    assert user == {"id": 1, "name": "Ada", "email": "ada@example.com", "cellphoneNumber": "1"}
    assert client.get("/usuarios").get_json() == [user]  # never the password hash
    assert client.delete("/usuario/delete/1").status_code == 200
    assert client.delete("/usuario/delete/1").status_code == 404
    assert client.get("/usuarios").get_json() == []
    assert client.post("/registrar", json={"name": "no email"}).status_code == 400


def test_requests_are_counted_with_micrometers_names_and_labels() -> None:
    # The target runs inside pytest here, whose memory (torch and all) is far above the demo's
    # 512 MiB "heap": give it a ceiling this process cannot reach.
    heap = 64 * 2**30
    client = create_app(TargetConfig(work_ms=0.1, hash_iterations=10, heap_max_bytes=heap)).test_client()
    client.post("/registrar", json=FORM)
    for _ in range(3):
        client.get("/usuarios")
    client.delete("/usuario/delete/7")
    client.get("/nowhere")

    counts = metric_lines(client, "http_server_requests_seconds_count")
    assert counts == {
        '{exception="None",method="POST",outcome="SUCCESS",status="200",uri="/registrar"}': 1.0,
        '{exception="None",method="GET",outcome="SUCCESS",status="200",uri="/usuarios"}': 3.0,
        '{exception="None",method="DELETE",outcome="CLIENT_ERROR",status="404",'
        'uri="/usuario/delete/{user_id}"}': 1.0,
        '{exception="None",method="GET",outcome="CLIENT_ERROR",status="404",uri="NOT_FOUND"}': 1.0,
    }
    # The scrape above is counted by the next one, as Micrometer counts /actuator/prometheus
    # (which is why the default queries exclude uri=~"/actuator.*").
    sums = metric_lines(client, "http_server_requests_seconds_sum")
    assert set(sums) == set(counts) | {
        '{exception="None",method="GET",outcome="SUCCESS",status="200",uri="/actuator/prometheus"}'
    }
    assert all(v > 0 for v in sums.values())

    [cpu] = metric_lines(client, "process_cpu_usage").values()
    assert 0.0 <= cpu <= 1.0
    used = metric_lines(client, "jvm_memory_used_bytes")
    limit = metric_lines(client, "jvm_memory_max_bytes")
    assert list(used) == list(limit) == ['{area="heap",id="resident"}']
    assert 0 < sum(used.values()) < sum(limit.values()) == heap


def test_an_overloaded_target_sheds_requests_as_server_errors_but_still_reports() -> None:
    client = create_app(TargetConfig(max_inflight=0, work_ms=0.1)).test_client()
    response = client.get("/usuarios")
    assert response.status_code == 503
    assert client.get("/actuator/prometheus").status_code == 200
    counts = metric_lines(client, "http_server_requests_seconds_count")
    assert (
        counts['{exception="None",method="GET",outcome="SERVER_ERROR",status="503",uri="/usuarios"}'] == 1.0
    )


def test_labels_follow_micrometer() -> None:
    assert [outcome(s) for s in (101, 200, 204, 302, 404, 500, 503)] == [
        "INFORMATIONAL",
        "SUCCESS",
        "SUCCESS",
        "REDIRECTION",
        "CLIENT_ERROR",
        "SERVER_ERROR",
        "SERVER_ERROR",
    ]
    assert uri_template("/usuario/delete/<int:user_id>", 200) == "/usuario/delete/{user_id}"
    assert uri_template("/a/<name>/b/<path:rest>", 200) == "/a/{name}/b/{rest}"
    assert uri_template(None, 404) == "NOT_FOUND"


def test_cpu_usage_follows_the_work_done() -> None:
    usage = CpuUsage(min_window_s=0.05)
    time.sleep(0.1)
    idle = usage()
    started = time.thread_time()
    burn_cpu(150)
    assert time.thread_time() - started >= 0.15  # CPU time, not wall time
    busy = usage()
    assert 0.0 <= idle < busy <= 1.0


def test_the_shape_is_the_original_hourly_cycle() -> None:
    starts = [STAGE_SECONDS * k + 1 for k in range(len(STAGE_USERS))]
    assert [stage_at(t)[0] for t in starts] == [10, 50, 100, 200, 400, 800, 1000, 800, 400, 200, 100, 10]
    assert stage_at(0) == (10, 1.0)
    assert stage_at(3600 + 301) == (50, 1.0)  # repeats hourly


def test_the_shape_compresses_time_and_scales_users_for_tests() -> None:
    # One cycle per minute: 5 s stages; 1/50 of the users, never fewer than one.
    assert [stage_at(5 * k + 1, time_scale=60, user_scale=0.02)[0] for k in range(12)] == [
        1,
        1,
        2,
        4,
        8,
        16,
        20,
        16,
        8,
        4,
        2,
        1,
    ]
    assert stage_at(0, time_scale=60, user_scale=0.02)[1] == pytest.approx(1.2)
    with pytest.raises(ValueError):
        stage_at(0, time_scale=0)


def test_the_compose_file_only_sets_settings_that_exist() -> None:
    import dataclasses

    from telemetry.settings import Settings, env_name
    from tests.conftest import REPO

    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    known = {env_name(f.name) for f in dataclasses.fields(Settings)}
    services = compose["services"]
    assert set(services) == {"mongo", "prometheus", "target", "locust", "collector", "trainer", "api"}
    for name, service in services.items():
        for variable in service.get("environment") or {}:
            assert variable in known, f"{name} sets {variable}, which no setting reads"
    assert services["collector"]["environment"]["MONGO_URI"] == "mongodb://mongo:27017/"
    assert services["collector"]["environment"]["PYCEMAKER_PROMETHEUS_URL"] == "http://prometheus:9090"
