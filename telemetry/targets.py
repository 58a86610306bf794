"""Collector targets: many services from one Prometheus, one query per stream column per tick.

A target is a service name and a Prometheus label selector (``checkout={job="checkout"}``). For
each stream column the collector sends **one** query for all targets (see docs/collector.md,
"Many services"):

    label_replace(<expr restricted to target 1>, "pycemaker_service", "checkout", "", "")
    or label_replace(<expr restricted to target 2>, "pycemaker_service", "api-eu", "", "")

"Restricted" means the target's matchers are added to every vector selector of the configured
expression, so each target's part is evaluated on that target's series alone: a ``sum`` or a
ratio never mixes targets, whatever the expression aggregates by. ``label_replace`` with an
empty source label and an empty regex always matches and stamps the service name on the
result; ``or`` keeps every series of both sides because the stamped label differs. Each
returned series is mapped back to its service by that label; a target with no series has no
value at that instant (missing, never 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

from telemetry.services import valid_name

#: The label the combined query stamps on each target's series (read back to map series to services).
SERVICE_LABEL = "pycemaker_service"
_T = TypeVar("_T")

_LABEL = r"[A-Za-z_][A-Za-z0-9_]*"
_STRING = r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`'
_MATCHER = re.compile(rf"\s*({_LABEL})\s*(=~|!~|!=|=)\s*({_STRING})\s*")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"[0-9.][0-9A-Za-z_.]*")
#: Aggregation operators: never a metric name, also when ``by``/``without`` follows them.
_AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio".split()
)
#: Keywords followed by a label list in parentheses (skipped whole).
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = _AGGREGATIONS | _LABEL_LISTS | frozenset({"and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"})


class TargetError(ValueError):
    """The targets setting cannot be used (the message says which entry and why)."""


@dataclass(frozen=True)
class Target:
    """One service and the label matchers that select its series in Prometheus."""

    service: str
    #: Each matcher as written (``job="checkout"``, ``instance=~"eu-.*"``).
    matchers: tuple[str, ...]

    @property
    def selector(self) -> str:
        return "{" + ", ".join(self.matchers) + "}"

    def __str__(self) -> str:
        return f"{self.service}={self.selector}"


# --- the setting -------------------------------------------------------------------------


def parse_selector(text: str) -> tuple[str, ...]:
    """``{job="a", instance=~"eu-.*"}`` -> its matchers; raises :class:`TargetError` if it is not one."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise TargetError(f"{text!r} is not a label selector: write it in braces, e.g. {{job=\"checkout\"}}")
    body = body[1:-1]
    matchers: list[str] = []
    pos = 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise TargetError(f"{text!r}: cannot read a matcher at {body[pos:pos + 20]!r} (label=\"value\", !=, =~ or !~)")
        label, op, value = m.groups()
        if label == "__name__":
            raise TargetError(f"{text!r}: a target selects series by labels, not by metric name")
        if op in ("=~", "!~"):
            try:
                re.compile(_unquote(value))
            except re.error as exc:
                raise TargetError(f"{text!r}: {label}{op}{value} is not a valid regular expression ({exc})") from None
        matchers.append(f"{label}{op}{value}")
        pos = m.end()
        if pos < len(body):
            if body[pos] != ",":
                raise TargetError(f"{text!r}: expected ',' between matchers at {body[pos:pos + 20]!r}")
            pos += 1
    if not matchers:
        raise TargetError(f"{text!r}: a target needs at least one label matcher, e.g. {{job=\"checkout\"}}")
    if all(_matches_empty(m) for m in matchers):
        # Prometheus refuses such a selector on its own, and it would select every target's series.
        raise TargetError(f"{text!r}: every matcher accepts an empty label; add one that names the target, e.g. job=\"checkout\"")
    return tuple(matchers)


def _unquote(value: str) -> str:
    inner = value[1:-1]
    return inner if value[0] == "`" else re.sub(r"\\(.)", r"\1", inner)


def _matches_empty(matcher: str) -> bool:
    m = _MATCHER.fullmatch(matcher)
    assert m is not None
    _, op, value = m.groups()
    text = _unquote(value)
    if op == "=":
        return text == ""
    if op == "!=":
        return text != ""
    full = re.fullmatch(text, "") is not None
    return full if op == "=~" else not full


def parse_targets(text: str) -> tuple[Target, ...]:
    """The ``collector_targets`` setting -> targets, in order.

    Entries are ``service={matchers}``, separated by ``;`` or new lines (a comma separates matchers);
    ``#`` starts a comment outside a selector. Raises :class:`TargetError` for a malformed entry,
    an invalid or repeated service name.
    """
    targets: list[Target] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and (text[pos].isspace() or text[pos] == ";"):
            pos += 1
        if pos < n and text[pos] == "#":
            pos = text.find("\n", pos) if "\n" in text[pos:] else n
            continue
        if pos >= n:
            break
        eq = text.find("=", pos)
        stop = min((i for i in (text.find(";", pos), text.find("\n", pos)) if i >= 0), default=n)
        if eq < 0 or eq > stop:
            raise TargetError(f"target {text[pos:stop].strip()!r}: write service={{label=\"value\"}}")
        name = text[pos:eq].strip()
        if not valid_name(name):
            raise TargetError(f"target {name!r}: not a valid service name (a letter or digit, then letters, digits, '_', '.', '-'; at most 63)")
        end = _selector_end(text, eq + 1)
        if end is None:
            raise TargetError(f"target {name!r}: {text[eq + 1:stop].strip()!r} is not a label selector in braces, e.g. {{job=\"{name}\"}}")
        target = Target(name, parse_selector(text[eq + 1:end]))
        if any(t.service == name for t in targets):
            raise TargetError(f"target {name!r} is given twice: each service needs one selector")
        targets.append(target)
        pos = end
        rest = text[pos:].lstrip(" \t")
        if rest and rest[0] not in ";\n#":
            raise TargetError(f"target {name!r}: unexpected {rest[:20]!r} after its selector (separate targets with ';')")
    return tuple(targets)


def _selector_end(text: str, pos: int) -> int | None:
    """The index after the ``}`` closing a selector starting (after blanks) at ``pos``; None if there is none."""
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if pos >= len(text) or text[pos] != "{":
        return None
    end = _skip_block(text, pos, "}")
    return end if text[end - 1] == "}" else None


def _skip_block(text: str, pos: int, close: str) -> int:
    """From the opening bracket at ``pos`` to just after its ``close`` (strings skipped); len(text) if unclosed."""
    pos += 1
    while pos < len(text):
        c = text[pos]
        if c in "\"'`":
            pos = _skip_string(text, pos)
            continue
        if c == close:
            return pos + 1
        pos += 1
    return len(text)


def _skip_string(text: str, pos: int) -> int:
    quote = text[pos]
    pos += 1
    while pos < len(text) and text[pos] != quote:
        pos += 2 if text[pos] == "\\" and quote != "`" else 1
    return pos + 1


# --- the query ---------------------------------------------------------------------------


def restrict(expr: str, matchers: Sequence[str]) -> str:
    """``expr`` with ``matchers`` added to each of its vector selectors.

    ``sum(jvm_memory_used_bytes)/sum(jvm_memory_max_bytes{area="heap"})`` with ``job="a"`` ->
    ``sum(jvm_memory_used_bytes{job="a"})/sum(jvm_memory_max_bytes{job="a",area="heap"})``.
    A light PromQL scan: strings, ranges (``[1m]``), label lists (``by (...)``), numbers and
    durations are skipped; an identifier that is not a keyword, an aggregation or a function call
    is a metric name. Raises :class:`TargetError` when the expression selects no series.
    """
    extra = ",".join(matchers)
    out: list[str] = []
    pos, n, injected = 0, len(expr), 0
    while pos < n:
        c = expr[pos]
        if c in "\"'`":
            end = _skip_string(expr, pos)
        elif c == "#":
            end = expr.find("\n", pos)
            end = n if end < 0 else end
        elif c == "[":
            end = _skip_block(expr, pos, "]")
        elif c == "{":  # a selector without a metric name
            end = _skip_block(expr, pos, "}")
            out.append(_with_matchers(expr[pos:end], extra))
            injected += 1
            pos = end
            continue
        elif c.isdigit() or (c == "." and pos + 1 < n and expr[pos + 1].isdigit()):
            end = _NUMBER.match(expr, pos).end()
        elif _IDENT.match(expr, pos):
            end = _IDENT.match(expr, pos).end()
            word = expr[pos:end]
            after = end
            while after < n and expr[after].isspace():
                after += 1
            following = expr[after] if after < n else ""
            if word.lower() in _LABEL_LISTS and following == "(":
                end = _skip_block(expr, after, ")")
            elif word.lower() in _KEYWORDS or following == "(":
                pass  # a keyword, an aggregation or a function
            elif following == "{":
                block_end = _skip_block(expr, after, "}")
                out.append(word + _with_matchers(expr[after:block_end], extra))
                injected += 1
                pos = block_end
                continue
            else:
                out.append(word + "{" + extra + "}")
                injected += 1
                pos = end
                continue
        else:
            end = pos + 1
        out.append(expr[pos:end])
        pos = end
    if not injected:
        raise TargetError(f"query {expr!r} selects no series, so it cannot be restricted to a target")
    return "".join(out)


def _with_matchers(block: str, extra: str) -> str:
    """``{area="heap"}`` -> ``{<extra>,area="heap"}``; ``{}`` -> ``{<extra>}``."""
    inner = block[1:-1]
    return "{" + extra + ("," + inner if inner.strip() else "") + "}"


def combined_query(expr: str, targets: Sequence[Target]) -> str:
    """One query whose result holds one series per target, labelled ``pycemaker_service``."""
    parts = [
        f'label_replace({restrict(expr, t.matchers)}, "{SERVICE_LABEL}", "{t.service}", "", "")' for t in targets
    ]
    return " or ".join(parts)


def by_service(series: Sequence[tuple[Mapping[str, str], _T]]) -> tuple[dict[str, _T], tuple[str, ...]]:
    """Series of a combined query -> (service -> its value, services with several series).

    A service with several series (its selector matches several instances of a per-instance
    expression) has no value: mixing them silently would be wrong; the caller reports it.
    """
    found: dict[str, _T] = {}
    several: list[str] = []
    for labels, value in series:
        name = labels.get(SERVICE_LABEL)
        if name is None:
            continue
        if name in found or name in several:
            found.pop(name, None)
            if name not in several:
                several.append(name)
            continue
        found[name] = value
    return found, tuple(several)


__all__ = [
    "SERVICE_LABEL",
    "Target",
    "TargetError",
    "by_service",
    "combined_query",
    "parse_selector",
    "parse_targets",
    "restrict",
]
