"""Loopback fakes of Whapi.Cloud and OpenAI for tests, benchmarks and the credential-free mode.

`FakeWhapi` and `FakeOpenAI` are real HTTP servers on 127.0.0.1 (hypercorn on trio) that check
bearer auth, validate request bodies against the schemas in ``sandbox/schemas/``, record every
call, and inject latency and faults on demand (`Faults`). `run_sandbox` starts both;
``python -m sandbox`` runs them as a separate process.
"""

from sandbox.base import Call
from sandbox.faults import FaultRule, Faults
from sandbox.openai import FakeOpenAI, ResponseRequest
from sandbox.run import SandboxURLs, run_sandbox
from sandbox.whapi import FakeWhapi, SentMessage

__all__ = [
    "Call",
    "FakeOpenAI",
    "FakeWhapi",
    "FaultRule",
    "Faults",
    "ResponseRequest",
    "SandboxURLs",
    "SentMessage",
    "run_sandbox",
]
