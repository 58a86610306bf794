"""Credentials come only from the environment or secret files, and are never logged or answered.

Already proven elsewhere: secrets read from ``*_FILE`` and masked by ``Settings.redacted``
(tests/telemetry/test_settings.py::test_secrets_from_files); an unreachable database's error names
the host, never the password (tests/telemetry/test_store.py::test_unreachable_database_fails_fast_with_the_host_never_the_password).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import urllib.parse

import pytest
from hypothesis import assume, given, strategies as st

from telemetry.settings import SettingsError, load_settings
from telemetry.settings import mask_uri
from tests.conftest import REPO
from tests.properties.strategies import PROPERTY
from tests.ports import free_port
from tests.serving.onnx_models import persistence_model

PASSWORD = "hunter2-Pa55"
ROUTES = ("/api/v1/status", "/api/v1/health", "/api/v1/forecast", "/health_data/1", "/current_health/1", "/predicted_data/1",
          "/readyz", "/metrics", "/api/v1/models")


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        (f'api_token = "{PASSWORD}"', True),
        (f'mongo_uri = "mongodb://admin:{PASSWORD}@db.example:27017/"', True),
        ('mongo_uri = "mongodb://db.example:27017/"', False),  # no credential in it: fine in a file
        ('mongo_uri = "mongodb://x509-user@db.example:27017/?authMechanism=MONGODB-X509"', False),
    ],
)
def test_a_config_file_may_not_hold_a_credential(tmp_path, line, refused):
    config = tmp_path / "pycemaker.toml"
    config.write_text(f"[pycemaker]\n{line}\n")
    if not refused:
        load_settings(environ={}, config_file=config)
        return
    with pytest.raises(SettingsError) as err:
        load_settings(environ={}, config_file=config)
    assert PASSWORD not in str(err.value) and "_FILE" in str(err.value)


def test_credentials_from_the_environment_and_secret_files(tmp_path):
    uri = f"mongodb://admin:{PASSWORD}@db.example:27017/"
    (tmp_path / "uri").write_text(uri + "\n")
    (tmp_path / "token").write_text(PASSWORD + "\n")
    from_files = load_settings(environ={"MONGO_URI_FILE": str(tmp_path / "uri"), "PYCEMAKER_API_TOKEN_FILE": str(tmp_path / "token")})
    from_env = load_settings(environ={"MONGO_URI": uri, "PYCEMAKER_API_TOKEN": PASSWORD})
    assert (from_files.mongo_uri, from_files.api_token) == (from_env.mongo_uri, from_env.api_token) == (uri, PASSWORD)
    assert PASSWORD not in repr(from_env.redacted())
    with pytest.raises(SettingsError, match="PYCEMAKER_API_TOKEN_FILE"):
        load_settings(environ={"PYCEMAKER_API_TOKEN_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize("where", ["auth_refused", "unreachable"])
def test_the_database_password_is_in_no_response_and_no_log_line(settings, make_app, caplog, where):
    """Everything a request can make the service say, logged at DEBUG (pymongo included), with a password in the URI."""
    host = settings.mongo_uri.split("//", 1)[1].rstrip("/") if where == "auth_refused" else f"127.0.0.1:{free_port()}"
    uri = f"mongodb://admin:{PASSWORD}@{host}/?connectTimeoutMS=300"  # the embedded server refuses authentication
    settings = dataclasses.replace(settings, mongo_uri=uri, mongo_timeout_ms=300, api_token="t0ken")
    persistence_model(settings.models_dir, "v1", L=30, H=15)
    with caplog.at_level(logging.DEBUG):
        client = make_app(settings).test_client()
        bodies = []
        for url in ROUTES:
            response = client.get(url)
            assert response.status_code in (200, 503), (url, response.status_code)
            bodies.append(response.get_data(as_text=True))
        bodies.append(client.post("/api/v1/train", headers={"Authorization": "Bearer t0ken"}).get_data(as_text=True))
    status = client.get("/api/v1/status")
    assert status.status_code == 503 and "database unavailable" in status.get_json()["message"]
    logged = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    for text in (*bodies, logged):
        assert PASSWORD not in text and urllib.parse.quote_plus(PASSWORD) not in text


def test_commands_never_print_the_password(tmp_path):
    """A command that cannot reach its database says where, at DEBUG too, without the password."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MONGO_URI": f"mongodb://admin:{PASSWORD}@127.0.0.1:{port}/",
           "PYCEMAKER_MONGO_TIMEOUT_MS": "300"}
    result = subprocess.run([sys.executable, "-m", "pycemaker", "--log-level", "DEBUG", "health", "--hours", "1"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert f"127.0.0.1:{port}" in output and "Traceback" not in output
    assert PASSWORD not in output


@PROPERTY
@given(
    user=st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True),
    password=st.text(min_size=4, max_size=24).filter(lambda p: "\x00" not in p),
    hosts=st.lists(st.from_regex(r"[a-z]{1,10}\.example:[1-9][0-9]{3}", fullmatch=True), min_size=1, max_size=3),
    tail=st.sampled_from(["/", "/pycemaker", "/db?authSource=admin", "/?replicaSet=rs0&tls=true", ""]),
    escaped=st.booleans(),
    scheme=st.sampled_from(["mongodb", "mongodb+srv"]),
)
def test_a_masked_uri_never_shows_its_password(user, password, hosts, tail, escaped, scheme):
    """Whatever the password (escaped as MongoDB wants, or not: a log line must not leak either)."""
    secret = urllib.parse.quote_plus(password) if escaped else password
    uri = f"{scheme}://{user}:{secret}@{','.join(hosts)}{tail}"
    masked = mask_uri(uri)
    visible = f"{scheme}://{user}:***@{','.join(hosts)}{tail}"
    assume(secret not in visible)  # a password that is also part of the host name cannot be hidden by masking
    assert secret not in masked
    if "@" not in tail:
        assert masked == visible  # user, hosts and options stay readable
