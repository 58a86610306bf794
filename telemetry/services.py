"""Service names: which service a sample belongs to, and how a store query selects one service's samples.

Every sample may carry a ``service`` field. Samples without one (the seed's documents, the
collector's, the importer's) belong to the default service (setting ``default_service``), so a
deployment watching one app keeps its collections, routes and document shapes unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A service name: a letter or digit, then up to 62 letters, digits, ``_``, ``.`` or ``-``.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
#: The default service's name when the settings do not say otherwise.
DEFAULT_NAME = "default"


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


@dataclass(frozen=True)
class Service:
    """One service, as the store selects its samples.

    The default service's samples are those without a ``service`` field (or null) and those
    that name it explicitly; another service's are those that name it.
    """

    name: str = DEFAULT_NAME
    default: bool = True

    def filters(self) -> list[dict]:
        """Alternative filters, queried one by one and merged: the embedded server answers
        ``{"service": {"$in": [None, name]}}`` by a collection scan, each of these from the index."""
        if self.default:
            return [{"service": None}, {"service": self.name}]
        return [{"service": self.name}]

    def field(self) -> str | None:
        """The ``service`` value written on this service's samples (None: written without one)."""
        return None if self.default else self.name


DEFAULT_SERVICE = Service()


def service_named(name: str | None, default_name: str = DEFAULT_NAME) -> Service:
    """The service called ``name`` (None: the default one); raises ValueError for a malformed name."""
    if name is None or name == default_name:
        return Service(default_name, True)
    if not valid_name(name):
        raise ValueError(f"not a valid service name: {name!r} (letters, digits, '_', '.', '-'; at most 63)")
    return Service(name, False)
