"""Fault injection shared by the sandbox fakes: latency, error statuses, dropped connections.

A `Faults` object holds an ordered list of `FaultRule`s. Each request the fake handles takes the
first live rule whose path regex (``re.search``) and method match it; the rule is then used up
once. A rule can delay the request, answer it with an error status (in the vendor's error shape,
with ``Retry-After`` when asked), perform the request's real effect first and fail afterwards
(``after_processing``), or drop the request (``drop``: no response at all; the fake holds the
request until the client disconnects, or answers 500 after `DROP_HOLD_SECONDS` if it never does).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

#: How long a dropped request is held open, waiting for the client to give up, before the
#: server gives up too (hypercorn then answers 500 because the app sent nothing).
DROP_HOLD_SECONDS = 60.0

FAULT_FIELDS = frozenset(
    {
        "path",
        "method",
        "status",
        "times",
        "delay",
        "retry_after",
        "body",
        "after_processing",
        "drop",
    }
)


@attrs.define
class FaultRule:
    """One injected fault; applies to the next `times` requests matching `path` and `method`."""

    path: str
    method: str | None = None
    status: int = 500
    times: float = 1
    delay: float = 0.0
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    after_processing: bool = False
    drop: bool = False
    used: int = 0
    pattern: re.Pattern[str] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.pattern = re.compile(self.path)
        if self.method is not None:
            self.method = self.method.upper()

    @property
    def exhausted(self) -> bool:
        """True once the rule has been applied `times` times."""
        return self.used >= self.times

    @property
    def is_error(self) -> bool:
        """True when the rule answers with something other than the real response."""
        return self.drop or self.status != 200

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request (ignoring how often it was used)."""
        if self.method is not None and self.method != method.upper():
            return False
        return self.pattern.search(path) is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe description (``times`` may be the string ``"inf"``)."""
        return {
            "path": self.path,
            "method": self.method,
            "status": self.status,
            "times": "inf" if math.isinf(self.times) else self.times,
            "delay": self.delay,
            "retry_after": self.retry_after,
            "body": self.body,
            "after_processing": self.after_processing,
            "drop": self.drop,
            "used": self.used,
        }


@attrs.define
class Faults:
    """The ordered fault rules of one fake instance."""

    _rules: list[FaultRule] = attrs.field(factory=list)

    def add(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int = 500,
        times: float = 1,
        delay: float = 0.0,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
        after_processing: bool = False,
        drop: bool = False,
    ) -> FaultRule:
        """Add a rule for the next `times` requests whose path matches the regex `path`."""
        if times <= 0:
            raise ValueError("times must be positive")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        rule = FaultRule(
            path=path,
            method=method,
            status=status,
            times=times,
            delay=delay,
            retry_after=retry_after,
            body=body,
            after_processing=after_processing,
            drop=drop,
        )
        self._rules.append(rule)
        return rule

    def delay(
        self, path: str, seconds: float, *, method: str | None = None, times: float = math.inf
    ) -> FaultRule:
        """Add latency only (the real response follows) to matching requests."""
        return self.add(path, method=method, status=200, times=times, delay=seconds)

    def add_from_json(self, spec: Mapping[str, Any]) -> FaultRule:
        """`add` from a JSON body (the control API); ``times`` may be ``"inf"`` or null."""
        unknown = set(spec) - FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "path" not in spec or not isinstance(spec["path"], str):
            raise ValueError("fault needs a 'path' regex string")
        kwargs = dict(spec)
        times = kwargs.get("times", 1)
        if times is None or times == "inf":
            kwargs["times"] = math.inf
        elif not isinstance(times, int | float):
            raise ValueError("times must be a number, null or 'inf'")
        re.compile(kwargs["path"])
        return self.add(**kwargs)

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        """The live rules, in the order they are tried."""
        return tuple(self._rules)

    def take(self, method: str, path: str) -> FaultRule | None:
        """Use up and return the first live rule matching this request, if any."""
        for index, rule in enumerate(self._rules):
            if rule.matches(method, path):
                rule.used += 1
                if rule.exhausted:
                    del self._rules[index]
                return rule
        return None
