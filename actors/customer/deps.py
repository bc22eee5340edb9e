"""What every customer's actor and its turns share: the settings and the upstream clients.

One ``UserDeps`` per service, built by ``actors.wiring`` and owned (closed) by it; actors and
turns only use what it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from actors.customer.context import ChatInfoCache
from actors.customer.events import InboundMessage
from actors.customer.media import MediaFetcher
from actors.runtime.telemetry import Telemetry
from actors.settings import Settings
from actors.tools import ToolRegistry
from actors.upstream.budget import ModelBudget
from actors.upstream.knowledge_state import StoreIds
from actors.upstream.model import ModelClient
from actors.upstream.whapi import WhapiClient
from actors.validation import Validator
from actors.voice.audio import AudioShelf, OpenAIAudio, Synthesizer
from store import Store


@attrs.define(eq=False)
class UserDeps:
    """What every user actor shares: settings and the clients (each owned by the service)."""

    settings: Settings
    store: Store
    whapi: WhapiClient
    model: ModelClient
    media: MediaFetcher
    audio: OpenAIAudio
    synthesizer: Synthesizer
    chat_info: ChatInfoCache
    tools: ToolRegistry
    #: Parses a stored Whapi message (durable inbox payload) back into an event.
    parse: Callable[[dict[str, Any]], InboundMessage | None]
    shelf: AudioShelf | None = None
    validator: Validator | None = None
    telemetry: Telemetry = attrs.Factory(Telemetry)
    #: Bounds the turns running at once across all actors (``WABOT_MAX_CONCURRENT_TURNS``).
    turn_slots: trio.Semaphore = attrs.Factory(lambda: trio.Semaphore(32))
    #: OpenAI's rate limits, spent fairly by the turns' model calls (its ``run`` is started
    #: by ``actors.wiring``).
    budget: ModelBudget = attrs.Factory(ModelBudget)
    #: The vector stores of the business's documents, searched by the turns' ``file_search``
    #: (None: no document search).
    knowledge: StoreIds | None = None
