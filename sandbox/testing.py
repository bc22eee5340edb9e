"""Helpers behind the ``fake_whapi`` / ``fake_openai`` pytest fixtures (thin wrappers in conftest).

Each starts a fake in the given nursery (pytest-trio's ``nursery`` fixture, cancelled at test
teardown, which closes the sockets) and returns it once it listens: ``fake.url`` is its base URL
(``/v1`` included for OpenAI) and ``fake.token`` its bearer token.
"""

from __future__ import annotations

from typing import Any

import trio

from sandbox.openai import FakeOpenAI
from sandbox.whapi import FakeWhapi

TEST_WHAPI_TOKEN = "test-whapi-token"
TEST_OPENAI_KEY = "sk-test-openai-key"


async def start_fake_whapi(
    nursery: trio.Nursery, token: str = TEST_WHAPI_TOKEN, **kwargs: Any
) -> FakeWhapi:
    """Start a `FakeWhapi` on a free loopback port."""
    fake = FakeWhapi(token, **kwargs)
    await nursery.start(fake.serve)
    return fake


async def start_fake_openai(
    nursery: trio.Nursery, api_key: str = TEST_OPENAI_KEY, **kwargs: Any
) -> FakeOpenAI:
    """Start a `FakeOpenAI` on a free loopback port."""
    fake = FakeOpenAI(api_key, **kwargs)
    await nursery.start(fake.serve)
    return fake
