"""Who a log line is about: the user key and the turn id, carried in context variables.

Trio copies the context into every task it spawns, so binding the user in an actor's task
and the turn in its turn task labels every log line written under them, down to the HTTP
clients. ``gateway.logs`` reads these variables into each record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

user_key: ContextVar[str | None] = ContextVar("wabot_user_key", default=None)
turn_id: ContextVar[str | None] = ContextVar("wabot_turn_id", default=None)


@contextmanager
def bind(*, user: str | None = None, turn: str | None = None) -> Iterator[None]:
    """Label log lines written inside the block (and in tasks spawned from it)."""
    tokens = []
    if user is not None:
        tokens.append((user_key, user_key.set(user)))
    if turn is not None:
        tokens.append((turn_id, turn_id.set(turn)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
