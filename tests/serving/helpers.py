"""Test-side HTTP helpers: a real server around an app (for browsers and concurrent clients), and a checked GET."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from werkzeug.serving import make_server


@contextmanager
def serving(app) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port, threaded); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def get_json(client, url: str, schema=None, status: int = 200):
    """GET ``url`` through a Flask test client: the status code must be ``status``, the body valid for ``schema`` (if
    given); returns the JSON body."""
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    if schema is not None:
        assert schema().validate(body) == {}
    return body
