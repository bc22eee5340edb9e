"""The ``wabot`` command as a real process: configuration errors, the sandbox, ``say``, the
data-directory lock, and ``make run`` handing SIGTERM to the server."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from sandbox import payloads
from tests.harness import open_fakes, wait_until
from tests.process import (
    ADMIN_TOKEN,
    REPO,
    SERVE,
    bot_environ,
    clean_environ,
    open_bot_process,
)

USER = "573001234567"
CLI = (sys.executable, "-m", "gateway.cli")


async def run_cli(
    args: tuple[str, ...], env: dict[str, str], cwd: Path, timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout):
        return await trio.run_process(
            [*CLI, *args],
            env=env,
            cwd=str(cwd),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("WABOT_BUFFER_SECONDS", "soon"),
        ("PORT", "-1"),
        ("WABOT_ENV", "staging"),
        ("WHAPI_API_URL", "gate.whapi.cloud"),
        ("WABOT_LOG_LEVEL", "LOUD"),
    ],
)
async def test_an_invalid_setting_stops_serve_with_exit_2(
    tmp_path: Path, variable: str, raw: str
) -> None:
    env = bot_environ(None, tmp_path / "data")
    env[variable] = raw
    done = await run_cli(("serve",), env, tmp_path)
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert variable in stderr and "configuration error" in stderr
    assert not (tmp_path / "data").exists(), "nothing may start with a bad setting"


async def test_production_without_credentials_refuses_and_never_starts_a_sandbox(
    tmp_path: Path,
) -> None:
    env = bot_environ(None, tmp_path / "data", env="production")
    done = await run_cli(("serve",), env, tmp_path)
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert "WHAPI_TOKEN" in stderr and "OPENAI_API_KEY" in stderr
    assert b"SANDBOX" not in done.stdout + done.stderr


async def test_sandbox_serve_then_say_prints_a_reply(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = bot_environ(None, data)  # no credentials: the sandbox
    async with open_bot_process(None, data, env=env) as bot:
        await bot.wait_for_line("LOCAL SANDBOX", stream="stdout", timeout=10)
        said = await run_cli(("say", USER, "hola sandbox"), env, tmp_path)
        assert said.returncode == 0, said.stderr.decode()
        assert "hola sandbox" in said.stdout.decode()

        second = await run_cli(("serve",), env, tmp_path)  # same data directory
        assert second.returncode == 2
        assert "lock" in second.stderr.decode().lower()

        bot.terminate()
        assert await bot.wait_exit(8) == 0, bot.logs[-3000:]
    gone = await run_cli(("say", USER, "¿sigues?"), env, tmp_path)
    assert gone.returncode == 1 and "no running sandbox" in gone.stderr.decode()


async def test_say_from_a_subdirectory_when_paused_and_when_the_sandbox_died(
    tmp_path: Path,
) -> None:
    env = bot_environ(None, tmp_path / "data")
    env["WABOT_DATA_DIR"] = "data"  # relative, as in a checkout
    deep = tmp_path / "docs" / "deeper"
    deep.mkdir(parents=True)
    async with open_bot_process(None, tmp_path / "data", env=env, cwd=tmp_path) as bot:
        await bot.wait_for_line("LOCAL SANDBOX", stream="stdout", timeout=10)
        said = await run_cli(("say", USER, "hola desde abajo"), env, deep)
        assert said.returncode == 0, said.stderr.decode()
        assert "hola desde abajo" in said.stdout.decode()
        assert "waiting for the reply" in said.stderr.decode()

        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        paused = await bot.http.post(f"{bot.url}/actors/{USER}/pause", headers=headers)
        assert paused.status_code == 200, paused.text
        quiet = await run_cli(("say", USER, "¿hola?"), env, deep)
        assert quiet.returncode == 0
        assert f"the bot is paused for {USER}" in quiet.stderr.decode()
        assert "by operator" in quiet.stderr.decode()

        bot.kill()  # the marker file stays behind
        await bot.wait_exit(10)
    refused = await run_cli(("say", USER, "¿sigues?"), env, deep)
    assert refused.returncode == 1
    lines = refused.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "does not answer" in lines[0], lines


MAKE = shutil.which("make")
VENV = Path(sys.executable).parent.parent


@pytest.mark.skipif(
    MAKE is None or not (VENV / "bin" / "wabot").exists(), reason="needs make and the wabot script"
)
async def test_sigterm_to_make_run_process_group_drains_the_server(tmp_path: Path) -> None:
    assert MAKE is not None
    command = (
        MAKE,
        "-s",
        "-f",
        str(REPO / "Makefile"),
        "-o",
        str(VENV / ".installed"),
        f"VENV={VENV}",
        "run",
    )
    async with open_fakes() as fakes:
        async with open_bot_process(fakes, tmp_path / "data", command=command) as bot:
            # The recipe execs the server with the allocator the Makefile's run target names.
            pid = bot.process.pid
            (server,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            environ = Path(f"/proc/{server}/environ").read_bytes().split(b"\0")
            assert b"PYTHONMALLOC=malloc" in environ
            fakes.openai.faults.delay("/v1/responses$", 1.0, times=1)
            assert (
                await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            ).status_code == 200
            await wait_until(
                lambda: bool(fakes.openai.calls_to("/v1/responses$", "POST")), timeout=5
            )
            bot.signal_group(signal.SIGTERM)  # what Ctrl-C or a supervisor does to the group
            await fakes.whapi.wait_sent(1, to=USER, timeout=8)
            code = await bot.wait_exit(10)
        # GNU make waits for the recipe, then re-raises the signal on itself; the recipe
        # (the exec'ed server) drained and exited 0, so make reports no error for it.
        assert code in {0, -signal.SIGTERM}
        assert "stopped cleanly" in bot.logs
        assert "make: ***" not in bot.stderr.text  # make's report of a failed/killed recipe


def test_serve_command_is_the_module_entry_point() -> None:
    assert SERVE[-2:] == ("gateway.cli", "serve")
    assert "WABOT_ENV" not in clean_environ()


@pytest.mark.parametrize("problem", ["under a file", "read-only"])
async def test_an_unusable_data_directory_is_one_line_and_exit_2(
    tmp_path: Path, problem: str
) -> None:
    if problem == "under a file":
        (tmp_path / "plain-file").write_text("not a directory")
        data = tmp_path / "plain-file" / "data"
    else:
        data = tmp_path / "ro"
        data.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(data)],
            capture_output=True,
            check=False,
        )
        if mounted.returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        done = await run_cli(("serve",), bot_environ(None, data), tmp_path)
    finally:
        if problem == "read-only":
            subprocess.run(["umount", "-l", str(data)], check=False)
    lines = [line for line in done.stderr.decode().splitlines() if line.startswith("wabot:")]
    assert done.returncode == 2, done.stderr.decode()[-2000:]
    assert len(lines) == 1 and "WABOT_DATA_DIR" in lines[0], lines
    assert "Traceback" not in done.stderr.decode()
