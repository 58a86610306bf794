"""Bearer token for the write routes (``POST``): from ``api_token``; unset disables them.

No token configured: 403 (disabled). No ``Authorization: Bearer`` header: 401 (with
``WWW-Authenticate``). A wrong token: 403. The comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import functools
import hmac

from flask import request
from flask_smorest import abort

from serving.runtime import runtime

SECURITY = [{"bearerAuth": []}]
SCHEME = {"type": "http", "scheme": "bearer", "description": "The value of `PYCEMAKER_API_TOKEN` (or `..._FILE`)."}


def require_token(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = runtime().settings.api_token
        if not token:
            abort(403, message="write routes are disabled: set PYCEMAKER_API_TOKEN (or PYCEMAKER_API_TOKEN_FILE) to enable them")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            abort(401, message="missing bearer token: send `Authorization: Bearer <token>`",
                  headers={"WWW-Authenticate": 'Bearer realm="pycemaker"'})
        # Constant time: how long the comparison takes says nothing about how much of the token was right.
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            abort(403, message="wrong bearer token")
        return view(*args, **kwargs)

    return wrapper
