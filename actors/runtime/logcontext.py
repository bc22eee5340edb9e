"""Which customer and which turn the running code is about, for every log line it writes.

Two context variables: ``user_key`` (the customer's key: the phone digits, prefixed by the
channel for a channel other than ``default``, ``sales:573001234567``) and ``turn_id``; a log
line of such a key also carries ``channel``. A trio task
inherits the context of the task that spawned it, so binding them where a user actor starts
and where a turn starts labels everything those tasks (and their children, and their worker
threads) log. ``gateway.logs`` reads them in a logging filter; nothing else needs to pass them.

    with bind(user=key):
        ...
        with bind(turn=turn_id):
            ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

user_key: ContextVar[str | None] = ContextVar("wabot_user_key", default=None)
turn_id: ContextVar[str | None] = ContextVar("wabot_turn_id", default=None)


@contextmanager
def bind(*, user: str | None = None, turn: str | None = None) -> Iterator[None]:
    """Set the user key and/or turn id for the block (``None`` leaves a variable as it is)."""
    tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = []
    if user is not None:
        tokens.append((user_key, user_key.set(user)))
    if turn is not None:
        tokens.append((turn_id, turn_id.set(turn)))
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def label_task(*, user: str) -> None:
    """Set the user key for the rest of the current task, with no undo.

    For a task that is about one customer from start to end (a user actor): each trio task
    runs in its own copy of the context, so nothing outside it sees the value, and there is
    no token or context manager to keep alive for the task's whole life.
    """
    user_key.set(user)


def current() -> dict[str, str]:
    """The bound values, for a log line: ``{"user": ..., "turn": ...}`` (unset ones left out),
    and ``channel`` when the user key names one (``actors.channels``: ``<channel>:<digits>``)."""
    user = user_key.get()
    values = {"user": user, "turn": turn_id.get()}
    if user is not None and ":" in user:
        values["channel"] = user.partition(":")[0]
    return {key: value for key, value in values.items() if value is not None}
