"""Crashes: SIGKILL of a real server process at random moments during traffic, then restart.

Every webhook the bot acknowledged (200) must be answered in the end, by this process or a
later one (the durable inbox). A turn cut by a kill is resumed from its stored intent, so no
customer message reaches the model twice (each one sits in its OpenAI conversation once) and
a reply part goes out twice only if its send was in flight at a kill: each duplicate must
have a kill between its two sends, at most one per kill, and they are counted and printed.
Kills: 3 with 8 customers in ``make test``, 16 with 40 customers in ``make crash`` and ``make
chaos`` (about 5 s a kill); ``WABOT_PROCESS_KILLS`` overrides the count.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import httpx
import trio

from sandbox import payloads
from tests.chaos_helpers import scale
from tests.harness import OPENAI_KEY, SECRET, WHAPI_TOKEN, open_fakes
from tests.process import open_bot_process

TAG = re.compile(r"<c\d+-u\d+-m\d+>")


async def test_chaos_crash_sigkill_during_traffic_loses_nothing(tmp_path: Path) -> None:
    cycles = scale(3, 16, env="WABOT_PROCESS_KILLS")
    users = [f"5730088{n:05d}" for n in range(scale(8, 40))]
    rng = random.Random(2026)
    data_dir = tmp_path / "data"
    acked: set[str] = set()
    #: (signal sent, exit seen) per kill: a send the fake records in between may still come
    #: from the dying process.
    kills: list[tuple[float, float]] = []
    logs: list[str] = []
    hook_headers = {"X-Webhook-Secret": SECRET}
    timings = {"buffer_seconds": 0.2, "max_wait_seconds": 1.0, "drain_seconds": 2.0}

    async with open_fakes() as fakes:
        for cycle in range(cycles):
            async with open_bot_process(fakes, data_dir, **timings) as bot:

                async def user(index: int, bot_url: str = bot.url, cycle: int = cycle) -> None:
                    async with httpx.AsyncClient(timeout=3) as http:
                        for n in range(1000):
                            tag = f"<c{cycle}-u{index}-m{n}>"
                            body = payloads.webhook([payloads.text_message(users[index], tag)])
                            try:
                                response = await http.post(
                                    f"{bot_url}/hook",
                                    json=body,
                                    headers=hook_headers,
                                )
                            except httpx.HTTPError:
                                return  # the process is gone: not acknowledged
                            if response.status_code == 200:
                                acked.add(tag)
                            await trio.sleep(rng.uniform(0.02, 0.4))

                async with trio.open_nursery() as traffic:
                    before = len(acked)
                    for index in range(len(users)):
                        traffic.start_soon(user, index)
                    # Kill in the traffic, however slowly a busy machine gets it going.
                    with trio.move_on_after(15):
                        while len(acked) < before + len(users) // 2:
                            await trio.sleep(0.02)
                    await trio.sleep(rng.uniform(0.3, 2.0))
                    killed_at = trio.current_time()
                    bot.kill()
                    assert await bot.wait_exit(10) == -9
                    kills.append((killed_at, trio.current_time()))
                logs.append(bot.logs)
        # A last, clean run answers whatever was acknowledged and not yet answered.
        async with open_bot_process(fakes, data_dir, **timings) as bot:

            def answered() -> set[str]:
                return {t for m in fakes.whapi.sent for t in TAG.findall(m.body or "")}

            with trio.move_on_after(90):  # a loaded machine answers the backlog slowly
                while not acked <= answered():
                    await trio.sleep(0.1)
            missing = acked - answered()
            assert not missing, (
                f"{len(missing)} acknowledged messages never answered, e.g. {sorted(missing)[:5]}; "
                f"the last run's log ends:\n{bot.logs[-4000:]}\n"
                + _where(fakes, sorted(missing)[:2], [*logs, bot.logs])
            )
            await trio.sleep(0.5)
            logs.append(bot.logs)

    assert len(acked) >= cycles * len(users) // 2, (
        f"too little traffic to mean anything: {len(acked)} acknowledged"
    )
    sends: dict[str, list[float]] = {}
    for message in fakes.whapi.sent:
        for tag in TAG.findall(message.body or ""):
            sends.setdefault(tag, []).append(message.at)
    duplicated = {tag: times for tag, times in sends.items() if len(times) > 1}
    for tag, times in duplicated.items():
        first, *later = sorted(times)
        # Only a turn in flight at a kill may be answered twice: a kill between the sends.
        for again in later:
            detail = [(m.at, m.body) for m in fakes.whapi.sent if tag in (m.body or "")]
            assert any(first <= dead and killed <= again for killed, dead in kills), (
                tag,
                detail,
                kills,
            )
    assert len(duplicated) <= len(kills), (duplicated, kills)
    # No customer input reached the model twice: each tag is in one user item of one
    # conversation (a resumed turn recovers the answer instead of asking again).
    inputs: dict[str, int] = {}
    for items in fakes.openai.conversations.values():
        for item in items:
            if item.get("role") == "user":
                for tag in set(TAG.findall(str(item.get("content")))):
                    inputs[tag] = inputs.get(tag, 0) + 1
    asked_twice = sorted(tag for tag, count in inputs.items() if count > 1)
    assert not asked_twice, (
        f"{len(asked_twice)} messages reached the model twice: {asked_twice}\n"
        + _where(fakes, asked_twice[:3], logs)
    )
    # Even a SIGKILLed process's output never shows a credential.
    for text in logs:
        for secret in (WHAPI_TOKEN, OPENAI_KEY, SECRET):
            assert secret not in text
    print(
        f"\ncrash: {cycles} kills, {len(users)} customers, {len(acked)} acknowledged, 0 lost, "
        f"0 asked twice, {len(duplicated)} answered twice (send in flight at a kill), "
        f"{sum(len(v) - 1 for v in duplicated.values())} duplicate sends"
    )


def _where(fakes: Any, tags: list[str], logs: list[str]) -> str:
    """For a failure: where each tag sits in the fake's conversations, and the bots' log lines
    about its customer."""
    lines: list[str] = []
    for tag in tags:
        for conversation, items in fakes.openai.conversations.items():
            for index, item in enumerate(items):
                if tag in str(item.get("content")):
                    lines.append(
                        f"{tag} in {conversation}[{index}] {item.get('role')}: "
                        f"{str(item.get('content'))[:300]}"
                    )
        user = f"5730088{int(tag.split('-u')[1].split('-')[0]):05d}"
        for run, text in enumerate(logs):
            lines += [f"run {run}: {line[:300]}" for line in text.splitlines() if user in line][:60]
        lines += [f"sent to {tag}'s customer: {m.body!r}" for m in fakes.whapi.sent if user in m.to]
    return "\n".join(lines)
