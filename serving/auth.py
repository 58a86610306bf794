"""Bearer token for the write routes (``POST``): from ``api_token``; unset disables them."""

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
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            abort(401, message="missing or wrong bearer token", headers={"WWW-Authenticate": 'Bearer realm="pycemaker"'})
        return view(*args, **kwargs)

    return wrapper
