"""Opening and closing what every user actor shares: the upstream clients and caches.

``open_channel_deps`` builds one ``UserDeps`` per channel (``actors.channels``), each with
clients of its own; ``open_user_deps`` is the one-channel case. For each channel it builds the
Whapi client, the OpenAI clients (model, audio, and the speech backend
``WABOT_SPEECH_BACKEND`` selects), the media fetcher, the chat-info cache, the tool registry
(with ``check_availability`` and its Beds24 client when ``BEDS24_*`` credentials are set), the
validator (the booking one first with ``BEDS24_CHECK_ANSWERS``) and the vector stores of the
business's documents (``StoreIds``) from the channel's settings; once for all, the audio shelf
and the sweepers of temporary media. Every client is closed on the way out (shielded, so a
cancelled shutdown still releases its connections). Retries are logged by ``upstream.retry``
alone (stamina's own hooks are off).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import stamina
import trio

from actors.booking.tool import AvailabilityChecker, availability_tool
from actors.booking.validator import check_answer
from actors.channels import DEFAULT, Channel, one_channel
from actors.customer.actor import UserDeps
from actors.customer.context import ChatInfoCache
from actors.customer.deps import ChannelSlots
from actors.customer.events import InboundMessage
from actors.customer.media import MediaFetcher
from actors.runtime.telemetry import Telemetry
from actors.settings import Settings
from actors.tools import Tool, load_registry
from actors.upstream.beds24 import Beds24Client
from actors.upstream.budget import ModelBudget
from actors.upstream.knowledge_state import StoreIds, state_path
from actors.upstream.model import ModelClient
from actors.upstream.retry import RetryPolicy
from actors.upstream.whapi import WhapiClient
from actors.validation import Validator, load_validator
from actors.voice.audio import AudioShelf, OpenAIAudio, Synthesizer
from actors.voice.realtime import RealtimeSynthesizer
from store import Store
from store.tempfiles import TempFiles

log = logging.getLogger("actors.wiring")


def temp_files(settings: Settings) -> TempFiles:
    return TempFiles(
        root=settings.tmp_dir,
        max_total_bytes=int(settings.tmp_max_mb * 2**20),
        max_age_seconds=settings.tmp_max_age_seconds,
    )


def realtime_synthesizer(settings: Settings, telemetry: Telemetry | None) -> RealtimeSynthesizer:
    """The Realtime API speech backend, configured from the settings."""
    return RealtimeSynthesizer(
        api_key=settings.openai_api_key or "",
        base_url=settings.openai_base_url,
        model=settings.speech_model,
        voice=settings.speech_voice,
        speed=settings.speech_speed,
        timeout=settings.speech_timeout_seconds,
        connect_timeout=settings.speech_connect_timeout_seconds,
        event_timeout=settings.speech_event_timeout_seconds,
        max_sockets=settings.speech_max_sockets,
        chunk_chars=settings.speech_chunk_chars,
        max_output_tokens=settings.speech_max_output_tokens,
        max_distance=settings.speech_max_distance,
        encode_threads=settings.speech_encode_threads,
        max_seconds=settings.voice_max_seconds,
        max_bytes=int(settings.voice_max_mb * 2**20),
        telemetry=telemetry,
    )


def beds24_client(settings: Settings, policy: RetryPolicy) -> Beds24Client | None:
    """The Beds24 client when its credentials are set (check_availability is on)."""
    if not settings.beds24:
        return None
    return Beds24Client(
        base_url=settings.beds24_api_url,
        token=settings.beds24_token,
        refresh_token=settings.beds24_refresh_token,
        timeout=settings.beds24_timeout_seconds,
        policy=policy,
    )


def booking_tools(settings: Settings, beds24: Beds24Client | None) -> tuple[Tool, ...]:
    if beds24 is None:
        return ()
    checker = AvailabilityChecker.from_settings(beds24, settings)
    return (
        availability_tool(
            checker,
            interim=settings.beds24_interim_message,
            deadline=settings.beds24_deadline_seconds,
        ),
    )


def booking_validator(settings: Settings) -> Validator | None:
    if not settings.beds24_check_answers:
        return None
    if not settings.beds24:
        log.warning(
            "BEDS24_CHECK_ANSWERS is on but no Beds24 credentials are set: "
            "check_availability is off, so no answer is checked"
        )
    return check_answer


@asynccontextmanager
async def open_user_deps(
    settings: Settings,
    store: Store,
    telemetry: Telemetry,
    parse: Callable[[dict[str, Any]], InboundMessage | None],
) -> AsyncIterator[UserDeps]:
    """The deps of a deployment of one channel, ``default`` (``open_channel_deps``)."""
    async with open_channel_deps(settings, one_channel(settings), store, telemetry, parse) as deps:
        yield deps[DEFAULT]


@asynccontextmanager
async def open_channel_deps(
    settings: Settings,
    channels: Mapping[str, Channel],
    store: Store,
    telemetry: Telemetry,
    parse: Callable[..., InboundMessage | None],
) -> AsyncIterator[dict[str, UserDeps]]:
    """Each channel's ``UserDeps``: clients of its own (its Whapi token, its model and tools),
    so that one channel's failing upstream holds none of another's connections; process-wide
    (from ``settings``) the scratch sweepers, the audio shelf, the bound on turns in flight
    (a channel that sets ``max_concurrent_turns`` has its own share inside it) and one OpenAI
    budget per API key. ``parse(raw, allow_groups=..., prefix=...)`` parses an inbox entry."""
    # Each retry is logged by ``upstream.retry`` with the call's name; stamina's own hooks would
    # log it again without it and count it in a Prometheus registry /metrics does not serve.
    stamina.instrumentation.set_on_retry_hooks(())
    bound = settings.turns_in_flight
    slots = trio.Semaphore(bound)
    shelf = AudioShelf(settings.tmp_dir, ttl=settings.audio_ttl_seconds)
    budgets: dict[tuple[str | None, str | None], ModelBudget] = {}
    clients: list[Any] = []
    try:
        deps = {
            name: _channel_deps(
                channel,
                store,
                telemetry,
                partial(
                    parse, allow_groups=not channel.settings.ignore_groups, prefix=channel.prefix
                ),
                shared=(slots, shelf, budgets),
                clients=clients,
            )
            for name, channel in channels.items()
        }
        async with trio.open_nursery() as nursery:
            await nursery.start(
                temp_files(settings).run, max(1.0, settings.tmp_max_age_seconds / 4)
            )
            nursery.start_soon(shelf.run, max(1.0, settings.audio_ttl_seconds / 4))
            for budget in budgets.values():
                await nursery.start(budget.run)
            every = list(budgets.values())
            telemetry.turns_in_flight.set_function(lambda: bound - slots.value)
            telemetry.turns_waiting.set_function(lambda: slots.statistics().tasks_waiting)
            telemetry.budget_waiting.set_function(lambda: sum(b.waiting() for b in every))
            telemetry.budget_oldest_wait.set_function(
                lambda: max((b.oldest_wait() for b in every), default=0.0)
            )
            yield deps
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for client in clients:
                await client.aclose()


def _channel_deps(
    channel: Channel,
    store: Store,
    telemetry: Telemetry,
    parse: Callable[[dict[str, Any]], InboundMessage | None],
    *,
    shared: tuple[trio.Semaphore, AudioShelf, dict[tuple[str | None, str | None], ModelBudget]],
    clients: list[Any],
) -> UserDeps:
    """One channel's deps; every client it opens is appended to ``clients`` at once (the
    caller closes them, also when a later one cannot be made)."""
    settings = channel.settings
    slots, shelf, budgets = shared
    retry = partial(
        RetryPolicy,
        base_seconds=settings.retry_base_seconds,
        max_seconds=settings.retry_max_seconds,
    )
    validator = load_validator(settings.validator_module, booking_validator(settings))
    beds24 = beds24_client(settings, retry(attempts=settings.beds24_max_attempts))
    if beds24 is not None:
        clients.append(beds24)
    tools = load_registry(settings, booking_tools(settings, beds24))
    whapi = WhapiClient(
        base_url=settings.whapi_api_url,
        token=settings.whapi_token or "",
        timeout=settings.whapi_timeout_seconds,
        policy=retry(attempts=settings.whapi_max_attempts),
        pool_size=settings.pool_size,
        keepalive_size=settings.http_keepalive_size,
        on_pool_wait=telemetry.pool_wait_seconds.labels("whapi").observe,
    )
    clients.append(whapi)
    project = (settings.openai_api_key, settings.openai_base_url)
    budget = budgets.get(project)
    if budget is None:
        budget = budgets[project] = ModelBudget(
            requests_per_minute=settings.openai_requests_per_minute,
            tokens_per_minute=settings.openai_tokens_per_minute,
        )
    model = ModelClient(
        api_key=settings.openai_api_key or "",
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        instructions=settings.instructions,
        timeout=settings.openai_timeout_seconds,
        policy=retry(attempts=settings.openai_max_attempts),
        pool_size=settings.pool_size,
        keepalive_size=settings.http_keepalive_size,
        budget=budget,
        on_pool_wait=telemetry.pool_wait_seconds.labels("openai").observe,
    )
    clients.append(model)
    audio = OpenAIAudio(
        api_key=settings.openai_api_key or "",
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_seconds,
        policy=retry(attempts=settings.openai_max_attempts),
        transcription_model=settings.transcription_model,
        transcription_language=settings.transcription_language,
        speech_model=settings.speech_model,
        speech_voice=settings.speech_voice,
    )
    clients.append(audio)
    synthesizer: Synthesizer = audio
    if settings.speech_backend == "realtime":
        synthesizer = realtime_synthesizer(settings, telemetry)
    media = MediaFetcher(
        whapi_base_url=settings.whapi_api_url,
        whapi_token=settings.whapi_token or "",
        max_bytes=int(settings.media_max_mb * 2**20),
        timeout=settings.media_timeout_seconds,
    )
    clients.append(media)
    # A channel that sets max_concurrent_turns has that share within the process-wide bound.
    turn_slots: trio.Semaphore | ChannelSlots = slots
    if "max_concurrent_turns" in channel.overrides and settings.max_concurrent_turns:
        turn_slots = ChannelSlots(trio.Semaphore(settings.max_concurrent_turns), slots)
    return UserDeps(
        settings=settings,
        store=store,
        whapi=whapi,
        model=model,
        media=media,
        audio=audio,
        synthesizer=synthesizer,
        chat_info=ChatInfoCache(
            whapi,
            ttl=settings.chat_info_ttl_seconds,
            max_size=settings.chat_info_max,
            timeout=settings.whapi_timeout_seconds,
        ),
        tools=tools,
        parse=parse,
        shelf=shelf,
        validator=validator,
        telemetry=telemetry,
        turn_slots=turn_slots,
        budget=budget,
        knowledge=StoreIds(
            configured=settings.vector_store_ids,
            path=state_path(settings.data_dir),
            max_results=settings.file_search_max_results,
        ),
        channel=channel.name,
    )
