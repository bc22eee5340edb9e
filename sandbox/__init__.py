"""Loopback fakes of Whapi.Cloud, OpenAI and Beds24 for tests, benchmarks and the sandbox.

`FakeWhapi` and `FakeOpenAI` are real HTTP servers on 127.0.0.1 (hypercorn on trio) that check
bearer auth, validate request bodies against the schemas in ``sandbox/schemas/``, record every
call, and inject latency and faults on demand (`Faults`); `Realism` gives them lognormal
latencies and OpenAI's per-minute rate limits (off by default). `FakeOpenAI` also serves the
Realtime API's websocket on its port (`FakeRealtime`, ``fake.realtime``), with faults of its own.
`FakeBeds24` serves Beds24 API v2's authentication and rooms' calendar. `run_sandbox` starts
all three; ``python -m sandbox`` runs them as a separate process.
"""

from sandbox.base import Call
from sandbox.beds24 import FakeBeds24
from sandbox.faults import FaultRule, Faults
from sandbox.openai import FakeOpenAI, ModelCall, ResponseRequest
from sandbox.realism import Lognormal, RateLimiter, Realism
from sandbox.realtime import FakeRealtime, RealtimeFaults
from sandbox.run import SandboxURLs, run_sandbox
from sandbox.whapi import FakeWhapi, SentMessage

__all__ = [
    "Call",
    "FakeBeds24",
    "FakeOpenAI",
    "FakeRealtime",
    "FakeWhapi",
    "FaultRule",
    "Faults",
    "Lognormal",
    "ModelCall",
    "RateLimiter",
    "Realism",
    "RealtimeFaults",
    "ResponseRequest",
    "SandboxURLs",
    "SentMessage",
    "run_sandbox",
]
