"""The one control path of an operator's pause, resume or reset, for the admin API and the console.

``control_actor(service, user, action, seconds, create=...)`` sends a ``Control`` event through
the supervisor to the customer's actor (which owns the record, so the change goes through its
mailbox like everything else), waits for it to be carried out and returns ``(status, body)``:

- 200 and the actor's result (``ok``, ``user``, ``action``, ``paused_until``, ``paused_by``,
  ``conversation_id``) once it is done; 500 with the actor's ``error`` when it failed;
- 503 while the service is not started or is draining; 404 for a channel that is not
  configured, and for a number that never wrote to the channel, unless ``create`` (pause
  only) asks to pause it before it does; 504 when the actor did not answer within 10 s.

``channel`` names the channel (``actors.channels``) of the customer; ``default`` unless given.

Callers check their own input first: ``user`` is the phone number's digits (at most 20) and
``action`` one of ``ACTIONS`` (``ValueError`` otherwise), ``seconds`` is None (the default
pause, ``WABOT_HANDOFF_PAUSE_SECONDS``) or a checked number of seconds. Each carried-out
command is one ``operator:`` log line.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from actors.channels import DEFAULT, key_for
from actors.customer.events import Control

if TYPE_CHECKING:
    from gateway.service import Service

log = logging.getLogger("gateway.control")

ACTIONS = ("pause", "resume", "reset")
#: How long a control request waits for room in the actor's mailbox, then for the result.
MAILBOX_WAIT_SECONDS = 5.0
ANSWER_WAIT_SECONDS = 10.0


def valid_user(user: str) -> bool:
    """A customer key as the admin API and the console accept it: the number's digits."""
    return user.isdigit() and len(user) <= 20


async def control_actor(
    service: Service,
    user: str,
    action: str,
    seconds: float | None = None,
    *,
    create: bool = False,
    channel: str = DEFAULT,
) -> tuple[int, dict[str, Any]]:
    """Carry out ``action`` for ``user`` through its actor; ``(HTTP status, JSON body)``."""
    if action not in ACTIONS or not valid_user(user):
        raise ValueError(f"not a control request: {action!r} for {user!r}")
    if channel not in service.channels:
        return 404, {"error": f"unknown channel: {channel}"}
    supervisor = service.supervisor
    if supervisor is None or service.draining:
        return 503, {"error": "not ready"}
    key = key_for(channel, user)
    known = supervisor.cell(key) is not None or (
        service.store is not None and service.store.get(key) is not None
    )
    if not known and not (action == "pause" and create):
        return 404, {
            "error": "unknown customer: this number never wrote to the bot"
            + ("; add ?create=1 to pause it before it does" if action == "pause" else "")
        }
    command = Control(action, seconds)
    await supervisor.tell(key, command, wait=MAILBOX_WAIT_SECONDS)
    with trio.move_on_after(ANSWER_WAIT_SECONDS):
        await command.done.wait()
    if not command.done.is_set():
        return 504, {"error": "the actor did not answer in time"}
    log.info("operator: %s %s%s", action, key, f" for {seconds:g} s" if seconds else "")
    return (200 if command.result.get("ok") else 500), {**command.result, "channel": channel}
