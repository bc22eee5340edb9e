"""The customer model of the soak benchmark: a day of WhatsApp traffic, time-compressed.

Session starts are spread over ``duration`` seconds either evenly (``curve="steady"``: the
day's sessions at a constant rate, the load under which memory must stay flat) or along a
daily curve (``curve="day"``: a night trough, a morning and an evening peak of 2.9 times the
mean rate; on one core, a capacity test more than a soak). A session is one to three
bursts; a burst is a "typing" presence, one to four text messages a fraction of a second to
two seconds apart (sometimes another "typing" in between), then an "online" or "offline"
presence (in Whapi's words: stopped typing, still in the chat; left the app); bursts are
separated by gaps of a few seconds (the customer reads the answer and writes again).
Afterwards the customer goes idle for the rest of the day (some come back for a second
session). A small share of message webhooks is delivered twice (Whapi redelivery), which
wabot must answer once.

Deterministic for a seed; all times are offsets in seconds from the start.
"""

from __future__ import annotations

import math
import random
import uuid

import attrs

TEXTS = (
    "Hola",
    "Buenas tardes, quisiera información",
    "¿Cuánto cuesta el envío a Cali?",
    "Tienen el producto en talla M?",
    "ok gracias",
    "Necesito cambiar la dirección de entrega de mi pedido de ayer, por favor",
    "👍",
)


@attrs.frozen
class Event:
    at: float
    user: str
    kind: str  # "text", or a Whapi presence status: "typing", "online", "offline"
    text: str = ""
    message_id: str = ""
    duplicate: bool = False


def day_intensity(x: float) -> float:
    """Relative arrival intensity over a day, ``x`` in [0, 1) (0 = midnight)."""
    morning = math.exp(-(((x - 0.42) / 0.08) ** 2))
    evening = math.exp(-(((x - 0.80) / 0.07) ** 2))
    return 0.15 + morning + 0.8 * evening


def _session_start(rng: random.Random, span: float) -> float:
    while True:  # rejection sampling under the daily curve (max intensity < 1.2)
        x = rng.random()
        if rng.random() * 1.2 <= day_intensity(x):
            return x * span


def build_schedule(
    *,
    users: int,
    duration: float,
    seed: int,
    user_base: int,
    duplicate_rate: float = 0.02,
    curve: str = "steady",
) -> list[Event]:
    if curve not in ("steady", "day"):
        raise ValueError(f"unknown curve {curve!r}")
    rng = random.Random(seed)
    span = duration * 0.85  # leave the tail of the run for the last answers
    events: list[Event] = []
    for index in range(users):
        user = str(user_base + index)
        sessions = 1 + (rng.random() < 0.2)
        for _ in range(sessions):
            t = _session_start(rng, span) if curve == "day" else rng.random() * span
            for _burst in range(rng.choice((1, 1, 2, 2, 3))):
                events.append(Event(t, user, "typing"))
                t += rng.uniform(0.3, 1.5)
                for _m in range(rng.choice((1, 1, 2, 3, 4))):
                    mid = uuid.UUID(int=rng.getrandbits(128)).hex.upper()
                    mid = f"{mid[:20]}-{mid[20:28]}"
                    text = rng.choice(TEXTS)
                    events.append(Event(t, user, "text", text, mid))
                    if rng.random() < duplicate_rate:
                        events.append(
                            Event(t + rng.uniform(0.05, 2.0), user, "text", text, mid, True)
                        )
                    t += rng.uniform(0.2, 2.0)
                    if rng.random() < 0.3:
                        events.append(Event(t, user, "typing"))
                        t += rng.uniform(0.3, 1.0)
                events.append(Event(t, user, rng.choice(("online", "offline"))))
                t += rng.uniform(3.0, 8.0)
    events = [e for e in events if e.at <= duration * 0.95]
    events.sort(key=lambda e: e.at)
    return events
