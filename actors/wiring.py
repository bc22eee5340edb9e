"""Opening and closing what every user actor shares: the upstream clients and caches.

``open_user_deps`` builds the Whapi client, the OpenAI clients (model, audio, and the speech
backend ``WABOT_SPEECH_BACKEND`` selects), the media fetcher, the chat-info cache, the tool
registry (with ``check_availability`` and its Beds24 client when ``BEDS24_*`` credentials are
set), the validator (the booking one first with ``BEDS24_CHECK_ANSWERS``), the audio shelf and
the vector stores of the business's documents (``StoreIds``) from the settings, runs the
sweepers of temporary media, and closes every client on the way out (shielded, so a cancelled
shutdown still releases its connections). Retries are logged by ``upstream.retry`` alone
(stamina's own hooks are off).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import stamina
import trio

from actors.booking.tool import AvailabilityChecker, availability_tool
from actors.booking.validator import check_answer
from actors.customer.actor import UserDeps
from actors.customer.context import ChatInfoCache
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
    # Each retry is logged by ``upstream.retry`` with the call's name; stamina's own hooks would
    # log it again without it and count it in a Prometheus registry /metrics does not serve.
    stamina.instrumentation.set_on_retry_hooks(())
    retry = partial(
        RetryPolicy,
        base_seconds=settings.retry_base_seconds,
        max_seconds=settings.retry_max_seconds,
    )
    validator = load_validator(settings.validator_module, booking_validator(settings))
    beds24 = beds24_client(settings, retry(attempts=settings.beds24_max_attempts))
    try:
        tools = load_registry(settings, booking_tools(settings, beds24))
    except BaseException:
        if beds24 is not None:
            await beds24.aclose()
        raise
    whapi = WhapiClient(
        base_url=settings.whapi_api_url,
        token=settings.whapi_token or "",
        timeout=settings.whapi_timeout_seconds,
        policy=retry(attempts=settings.whapi_max_attempts),
        pool_size=settings.pool_size,
        keepalive_size=settings.http_keepalive_size,
        on_pool_wait=telemetry.pool_wait_seconds.labels("whapi").observe,
    )
    budget = ModelBudget(
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
    synthesizer: Synthesizer = audio
    if settings.speech_backend == "realtime":
        synthesizer = realtime_synthesizer(settings, telemetry)
    media = MediaFetcher(
        whapi_base_url=settings.whapi_api_url,
        whapi_token=settings.whapi_token or "",
        max_bytes=int(settings.media_max_mb * 2**20),
        timeout=settings.media_timeout_seconds,
    )
    shelf = AudioShelf(settings.tmp_dir, ttl=settings.audio_ttl_seconds)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                temp_files(settings).run, max(1.0, settings.tmp_max_age_seconds / 4)
            )
            nursery.start_soon(shelf.run, max(1.0, settings.audio_ttl_seconds / 4))
            await nursery.start(budget.run)
            bound = settings.turns_in_flight
            slots = trio.Semaphore(bound)
            telemetry.turns_in_flight.set_function(lambda: bound - slots.value)
            telemetry.turns_waiting.set_function(lambda: slots.statistics().tasks_waiting)
            telemetry.budget_waiting.set_function(budget.waiting)
            telemetry.budget_oldest_wait.set_function(budget.oldest_wait)
            yield UserDeps(
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
                turn_slots=slots,
                budget=budget,
                knowledge=StoreIds(
                    configured=settings.vector_store_ids,
                    path=state_path(settings.data_dir),
                    max_results=settings.file_search_max_results,
                ),
            )
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for client in (whapi, model, audio, media):
                await client.aclose()
            if beds24 is not None:
                await beds24.aclose()
