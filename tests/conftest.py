"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
import trio

from sandbox.openai import FakeOpenAI
from sandbox.testing import start_fake_openai, start_fake_whapi
from sandbox.whapi import FakeWhapi


@pytest.fixture
async def fake_whapi(nursery: trio.Nursery) -> FakeWhapi:
    """A running FakeWhapi (token ``fake_whapi.token``, base URL ``fake_whapi.url``)."""
    return await start_fake_whapi(nursery)


@pytest.fixture
async def fake_openai(nursery: trio.Nursery) -> FakeOpenAI:
    """A running FakeOpenAI (key ``fake_openai.api_key``, base URL with /v1 ``fake_openai.url``)."""
    return await start_fake_openai(nursery)
