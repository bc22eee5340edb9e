"""Several WhatsApp numbers in one deployment (issue 23): channels, end to end over loopback.

One fake Whapi stands for two numbers (a token each, ``FakeWhapi.add_channel``): the default
channel (``POST /hook``) and ``sales`` (``POST /hook/sales``), each with its own secret,
instructions and Whapi token, read from a ``WABOT_CHANNELS_FILE``. Every test goes through
real HTTP: webhooks in, the bot's sends and model calls read from the fakes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from actors.channels import (
    CHANNEL_KEYS,
    DEFAULT,
    ChannelsError,
    key_for,
    load_channels,
    split_key,
)
from actors.customer.deps import ChannelSlots
from actors.settings import Settings
from gateway.app import SECRET_HEADER
from gateway.service import StartupError, check_channels
from sandbox import payloads
from tests.harness import (
    SECRET,
    WHAPI_TOKEN,
    Bot,
    Fakes,
    make_settings,
    open_bot,
    open_fakes,
    wait_until,
)
from tests.process import ADMIN_TOKEN, bot_environ

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
SALES_TOKEN = "test-sales-whapi-token-654321"
SALES_SECRET = "test-sales-webhook-secret"
SALES_ID = "SALES-CHANNEL"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

CHANNELS = f"""
[channels.default]
channel_id = "{payloads.DEFAULT_CHANNEL_ID}"
instructions = "Eres el asistente de reservas."

[channels.sales]
channel_id = "{SALES_ID}"
whapi_token = "env:TEST_SALES_WHAPI_TOKEN"
webhook_secret = "env:TEST_SALES_WEBHOOK_SECRET"
instructions_file = "sales.md"
buffer_seconds = 0.1
max_concurrent_turns = 4
"""


@pytest.fixture(autouse=True)
def sales_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SALES_WHAPI_TOKEN", SALES_TOKEN)
    monkeypatch.setenv("TEST_SALES_WEBHOOK_SECRET", SALES_SECRET)


def channels_file(tmp_path: Path, text: str = CHANNELS) -> Path:
    (tmp_path / "sales.md").write_text("Eres el asistente de ventas.\n", encoding="utf-8")
    path = tmp_path / "channels.toml"
    path.write_text(text, encoding="utf-8")
    return path


def channel_settings(fakes: Fakes, tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(
        fakes,
        tmp_path / "data",
        channels_file=channels_file(tmp_path),
        admin_token=ADMIN_TOKEN,
        **overrides,
    )


def connect_sales(fakes: Fakes, bot: Bot) -> None:
    """The fake's second number: its token, its channel id, its echoes to ``/hook/sales``."""
    fakes.whapi.add_channel(
        SALES_TOKEN,
        SALES_ID,
        webhook_url=f"{bot.url}/hook/sales",
        webhook_headers={SECRET_HEADER: SALES_SECRET},
    )


async def post_sales(
    bot: Bot, body: Any, *, secret: str = SALES_SECRET, path: str = "/hook/sales"
) -> Any:
    return await bot.http.post(
        f"{bot.url}{path}",
        json=body,
        headers={"Content-Type": "application/json", SECRET_HEADER: secret},
    )


def sales_webhook(user: str, text: str, **extra: Any) -> dict[str, Any]:
    return payloads.webhook([payloads.text_message(user, text, **extra)], channel_id=SALES_ID)


def responses(fakes: Fakes) -> list[dict[str, Any]]:
    return [call.json for call in fakes.openai.calls_to("/v1/responses$", "POST")]


# ----------------------------------------------------------------------- configuration


def test_without_a_file_there_is_one_default_channel_with_the_deployments_settings(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, whapi_token="t" * 10)
    channels = load_channels(settings)
    assert list(channels) == [DEFAULT]
    default = channels[DEFAULT]
    assert default.settings is settings and default.prefix == "" and default.hook_path == "/hook"
    assert key_for(DEFAULT, USER) == USER and split_key(USER) == (DEFAULT, USER)
    assert key_for("sales", USER) == f"sales:{USER}"
    assert split_key(f"sales:{USER}") == ("sales", USER)


def test_a_channel_is_the_deployments_settings_with_its_overrides(tmp_path: Path) -> None:
    base = Settings(
        data_dir=tmp_path,
        whapi_token=WHAPI_TOKEN,
        channels_file=channels_file(tmp_path),
        buffer_seconds=4.0,
        openai_model="gpt-5-mini",
    )
    channels = load_channels(base)
    assert list(channels) == ["default", "sales"]
    default, sales = channels["default"], channels["sales"]
    assert default.settings.whapi_token == WHAPI_TOKEN
    assert default.settings.instructions == "Eres el asistente de reservas."
    assert default.settings.buffer_seconds == 4.0
    assert sales.settings.whapi_token == SALES_TOKEN  # env:...
    assert sales.settings.webhook_secret == SALES_SECRET
    assert sales.settings.instructions == "Eres el asistente de ventas."  # file, relative
    assert sales.settings.buffer_seconds == 0.1
    assert sales.settings.openai_model == "gpt-5-mini"  # not set: the deployment's
    assert sales.channel_id == SALES_ID and sales.hook_path == "/hook/sales"
    assert sales.key(USER) == f"sales:{USER}"
    assert set(sales.overrides) == {
        "whapi_token",
        "webhook_secret",
        "instructions",
        "buffer_seconds",
        "max_concurrent_turns",
    }
    # Every key a channel may set is a setting, read by that setting's parser.
    assert set(attrs.fields_dict(Settings)) >= CHANNEL_KEYS


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("[channels.sales]\nbufer_seconds = 3", "channel 'sales' key bufer_seconds: not a channel"),
        ("[channels.sales]\nbufer_seconds = 3", "did you mean buffer_seconds?"),
        ("[channels.sales]\ndata_dir = 'x'", "channel 'sales' key data_dir: not a channel setting"),
        ("[channels.sales]\nbuffer_seconds = 'soon'", "channel 'sales' key buffer_seconds must be"),
        ("[channels.sales]\nbuffer_seconds = -1", "channel 'sales' key buffer_seconds must be"),
        (
            "[channels.sales]\ntimezone = 'Mars/Base'",
            "channel 'sales' key timezone must be an IANA",
        ),
        ("[channels.sales]\nvoice_replies = 3", "channel 'sales' key voice_replies must be true"),
        (
            "[channels.sales]\nwhapi_token = 'env:TEST_NOT_SET_ANYWHERE'",
            "channel 'sales' key whapi_token: the environment variable 'TEST_NOT_SET_ANYWHERE'",
        ),
        (
            "[channels.sales]\ninstructions_file = 'missing.md'",
            "channel 'sales' key instructions_file: cannot read",
        ),
        ("[channels.Sales]\n", "channel 'Sales': a name is a lowercase letter"),
        ("[channels.573001]\n", "channel '573001': a name is a lowercase letter"),
        ("[channels]\nsales = 3", "channel 'sales' must be a table"),
        (
            "[channels.a]\nwhapi_token = 'same-token-1'\n"
            "[channels.b]\nwhapi_token = 'same-token-1'",
            "channel 'b' key whapi_token: the same as channel 'a'",
        ),
        (
            "[channels.a]\nchannel_id = 'X'\n[channels.b]\nchannel_id = 'X'",
            "channel 'b' key channel_id: the same as channel 'a'",
        ),
        ("[channels.sales\n", "not valid TOML"),
        ("[numbers.sales]\n", "unknown table 'numbers'"),
        ("", "no channels"),
    ],
)
def test_an_invalid_channels_file_names_the_channel_and_the_key(
    tmp_path: Path, table: str, expected: str
) -> None:
    path = tmp_path / "channels.toml"
    path.write_text(table, encoding="utf-8")
    settings = Settings(data_dir=tmp_path, channels_file=path)
    with pytest.raises(ChannelsError) as error:
        load_channels(settings)
    assert expected in str(error.value)
    assert f"WABOT_CHANNELS_FILE {path}" in str(error.value)
    # The start stops with it: one line, exit status 2 (``StartupError``).
    with pytest.raises(StartupError, match="configuration error: .*" + expected[:20]):
        check_channels(settings)


def test_a_missing_channels_file_and_production_without_a_channels_secret_stop_the_start(
    tmp_path: Path,
) -> None:
    with pytest.raises(StartupError, match="cannot be read"):
        check_channels(Settings(data_dir=tmp_path, channels_file=tmp_path / "nope.toml"))
    path = tmp_path / "channels.toml"
    path.write_text("[channels.default]\n[channels.sales]\nwhapi_token = 'c-token-1'\n")
    production = Settings(
        data_dir=tmp_path,
        channels_file=path,
        env="production",
        whapi_token="a" * 10,
        openai_api_key="b" * 10,
    )
    with pytest.raises(StartupError, match="webhook secret for channel 'default'"):
        check_channels(production)
    path.write_text(
        "[channels.default]\nwebhook_secret = 'one-secret'\n"
        "[channels.sales]\nwhapi_token = 'c-token-1'\n"
    )
    with pytest.raises(StartupError, match="webhook secret for channel 'sales'"):
        check_channels(production)
    assert list(check_channels(attrs.evolve(production, webhook_secret="all-of-them"))) == [
        "default",
        "sales",
    ]


async def wabot(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``wabot ARGS`` as a process: (exit status, stdout, stderr)."""
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "gateway.cli", *args],
            env=env,
            cwd=str(cwd),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_wabot_channels_list_and_a_start_refused_for_an_invalid_file(
    tmp_path: Path,
) -> None:
    env = bot_environ(None, tmp_path / "data", channels_file=channels_file(tmp_path))
    env.update(TEST_SALES_WHAPI_TOKEN=SALES_TOKEN, TEST_SALES_WEBHOOK_SECRET=SALES_SECRET)
    code, out, err = await wabot("channels", "list", "--json", env=env, cwd=tmp_path)
    assert code == 0, err
    listed = json.loads(out)
    assert [(c["name"], c["hook"], c["channel_id"]) for c in listed["channels"]] == [
        ("default", "/hook", payloads.DEFAULT_CHANNEL_ID),
        ("sales", "/hook/sales", SALES_ID),
    ]
    sales = listed["channels"][1]
    assert sales["whapi_token"] == "set" and SALES_TOKEN not in out
    code, out, err = await wabot("channels", "list", env=env, cwd=tmp_path)
    assert code == 0 and "2 channels from" in out and "sales: POST /hook/sales" in out
    (tmp_path / "channels.toml").write_text("[channels.sales]\nport = 1\n", encoding="utf-8")
    code, out, err = await wabot("channels", "list", env=env, cwd=tmp_path)
    assert code == 2 and "channel 'sales' key port: not a channel setting" in err
    # ``wabot serve`` refuses to start with the same one line, exit status 2.
    code, out, err = await wabot("serve", env=env, cwd=tmp_path)
    assert code == 2 and "channel 'sales' key port: not a channel setting" in err, err
    assert "Traceback" not in err


async def test_a_channels_share_of_turns_waits_inside_the_process_wide_bound() -> None:
    process = trio.Semaphore(3)
    share = ChannelSlots(trio.Semaphore(1), process)
    entered: list[int] = []

    async def turn(n: int) -> None:
        async with share:
            entered.append(n)
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(turn, n)
        await trio.sleep(0.02)
        # One turn of the channel runs; the other two wait on its share, not on the process.
        assert len(entered) == 1 and process.value == 2
    assert sorted(entered) == [0, 1, 2] and process.value == 3


# ---------------------------------------------------------------------- over real HTTP


async def test_the_same_customer_in_two_channels_has_two_conversations_and_two_replies(
    tmp_path: Path,
) -> None:
    async with open_fakes() as fakes, open_bot(fakes, channel_settings(fakes, tmp_path)) as bot:
        connect_sales(fakes, bot)
        first = await bot.post(payloads.webhook([payloads.text_message(USER, "hola reservas")]))
        second = await post_sales(bot, sales_webhook(USER, "hola ventas"))
        assert first.status_code == 200 and second.status_code == 200, second.text
        await wait_until(
            lambda: fakes.whapi.sent_with(WHAPI_TOKEN) and fakes.whapi.sent_with(SALES_TOKEN),
            timeout=10,
        )
        # Each number answered once, to the same chat, with its own token.
        assert [m.chat_id for m in fakes.whapi.sent_with(WHAPI_TOKEN)] == [CHAT]
        assert [m.chat_id for m in fakes.whapi.sent_with(SALES_TOKEN)] == [CHAT]
        store = bot.service.store
        await wait_until(
            lambda: not store.pending_for(USER) and not store.pending_for(f"sales:{USER}")
        )
        default_record, sales_record = store.get(USER), store.get(f"sales:{USER}")
        assert default_record is not None and sales_record is not None
        assert default_record.conversation_id != sales_record.conversation_id
        # Each channel's model call: its own instructions, its own conversation.
        calls = responses(fakes)
        by_conversation = {call["conversation"]: call for call in calls}
        assert (
            by_conversation[default_record.conversation_id]["instructions"]
            == "Eres el asistente de reservas."
        )
        assert (
            by_conversation[sales_record.conversation_id]["instructions"]
            == "Eres el asistente de ventas."
        )
        # Two actors, keyed by channel; the inbox and the dedupe ids are the channel's too.
        supervisor = bot.service.supervisor
        assert supervisor.cell(USER) is not None and supervisor.cell(f"sales:{USER}") is not None
        # The same message id redelivered to the other channel is that channel's message.
        again = payloads.text_message(USER, "otra", id="wamid.SAME-ID")
        assert (await bot.post(payloads.webhook([again]))).status_code == 200
        assert (
            await post_sales(bot, sales_webhook(USER, "otra", id="wamid.SAME-ID"))
        ).status_code == 200
        await wait_until(lambda: len(fakes.whapi.sent_with(SALES_TOKEN)) == 2, timeout=10)
        await wait_until(lambda: len(fakes.whapi.sent_with(WHAPI_TOKEN)) == 2, timeout=10)
        await wait_until(
            lambda: (
                store.inbox_status("wamid.SAME-ID").name == "DONE"
                and store.inbox_status("sales:wamid.SAME-ID").name == "DONE"
            )
        )
        # The echoes of the sends came back through each channel's hook and were ignored.
        await wait_until(lambda: fakes.whapi.echoes_delivered == 4)
        assert not fakes.whapi.echo_errors


async def test_each_channel_checks_its_own_secret_and_channel_id(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, channel_settings(fakes, tmp_path)) as bot:
        connect_sales(fakes, bot)
        body = sales_webhook(USER, "hola")
        # The default channel's secret is not the sales channel's.
        refused = await post_sales(bot, body, secret=SECRET)
        assert refused.status_code == 401 and refused.json() == {"error": "unauthorized"}
        assert (await bot.post(body, secret=SALES_SECRET)).status_code == 401
        # A channel that is not configured is no hook.
        unknown = await post_sales(bot, body, path="/hook/support")
        assert unknown.status_code == 404
        # A body naming the default channel's number, posted to the sales channel: 400.
        wrong = payloads.webhook([payloads.text_message(USER, "hola")])
        mismatch = await post_sales(bot, wrong)
        assert mismatch.status_code == 400 and "another channel" in mismatch.text
        # ... and one naming a number the file does not give sales.
        stranger = payloads.webhook([payloads.text_message(USER, "x")], channel_id="OTHER")
        assert (await post_sales(bot, stranger)).status_code == 400
        assert (await bot.post(sales_webhook(USER, "hola"))).status_code == 400
        store = bot.service.store
        assert not store.pending_users() and len(store) == 0  # nothing was journaled
        metrics = (await bot.http.get(f"{bot.url}/metrics")).text
        assert 'wabot_channel_webhooks_total{channel="sales",outcome="channel_mismatch"} 2.0' in (
            metrics
        )
        assert 'wabot_channel_webhooks_total{channel="default",outcome="channel_mismatch"} 1.0' in (
            metrics
        )
        assert 'wabot_webhooks_total{outcome="channel_mismatch"} 3.0' in metrics
        # The right secret and channel id: accepted and answered with the channel's token.
        assert (await post_sales(bot, body)).status_code == 200
        await fakes.whapi.wait_sent(1, to=CHAT)
        assert [m.token for m in fakes.whapi.sent] == [SALES_TOKEN]
        await wait_until(lambda: not store.pending_for(f"sales:{USER}"))
        metrics = (await bot.http.get(f"{bot.url}/metrics")).text
        assert 'wabot_channel_messages_total{channel="sales"} 1.0' in metrics
        assert 'wabot_channel_messages_total{channel="default"} 0.0' in metrics


async def test_a_channel_whose_token_is_revoked_does_not_delay_the_others_replies(
    tmp_path: Path,
) -> None:
    customers = [f"57300100{n:04d}" for n in range(20)]
    async with open_fakes() as fakes, open_bot(fakes, channel_settings(fakes, tmp_path)) as bot:
        connect_sales(fakes, bot)
        # Each channel has clients of its own; sales its own share of the turns in flight.
        default, sales = bot.service.channel_deps["default"], bot.service.channel_deps["sales"]
        assert default.whapi is not sales.whapi and default.model is not sales.model
        assert isinstance(sales.turn_slots, ChannelSlots)
        assert sales.turn_slots.process is default.turn_slots
        assert sales.turn_slots.share.value == 4
        fakes.whapi.revoke(SALES_TOKEN)
        # A flood on the revoked channel: every send and presence of it answers 401.
        for customer in customers:
            assert (await post_sales(bot, sales_webhook(customer, "hola"))).status_code == 200
        await wait_until(
            lambda: len(fakes.whapi.calls_to("/messages/text")) >= len(customers), timeout=10
        )
        started = trio.current_time()
        assert (
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
        ).status_code == 200
        await fakes.whapi.wait_sent(1, to=CHAT, timeout=10)
        latency = trio.current_time() - started
        # The default channel's reply: its buffer (0.15 s) and a turn against loopback fakes.
        assert latency < 2.0, latency
        assert [m.token for m in fakes.whapi.sent] == [WHAPI_TOKEN]
        refused = [c for c in fakes.whapi.calls if c.status == 401]
        assert refused and all(
            c.headers.get("authorization") == f"Bearer {SALES_TOKEN}" for c in refused
        )


async def test_a_data_directory_of_one_number_is_read_as_the_default_channel(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with open_fakes() as fakes:
        # Written without channels, as before them: one answered message, one left pending.
        before = make_settings(fakes, data)
        async with open_bot(fakes, before) as bot:
            await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
            await fakes.whapi.wait_sent(1, to=CHAT)
            await wait_until(lambda: not bot.service.store.pending_for(USER))
        slow = make_settings(fakes, data, buffer_seconds=60.0, max_wait_seconds=120.0)
        async with open_bot(fakes, slow) as bot:
            later = payloads.text_message(USER, "¿sigue disponible?", id="wamid.LEFT-PENDING")
            await bot.post(payloads.webhook([later]))
            await wait_until(lambda: bool(bot.service.store.pending_for(USER)))
        old_conversation = responses(fakes)[0]["conversation"]
        fakes.whapi.clear_calls()

        # The same directory, now with two channels: the customer is the default channel's.
        async with open_bot(fakes, channel_settings(fakes, tmp_path)) as bot:
            connect_sales(fakes, bot)
            store = bot.service.store
            record = store.get(USER)
            assert record is not None and record.conversation_id == old_conversation
            # The message left pending by the old code is answered, by the default number.
            await fakes.whapi.wait_sent(2, to=CHAT)
            await wait_until(lambda: not store.pending_for(USER))
            assert store.inbox_status("wamid.LEFT-PENDING").name == "DONE"
            assert [m.token for m in fakes.whapi.sent] == [WHAPI_TOKEN, WHAPI_TOKEN]
            assert responses(fakes)[-1]["conversation"] == old_conversation
            # The same number writing to sales starts a conversation of its own.
            await post_sales(bot, sales_webhook(USER, "hola ventas"))
            await wait_until(lambda: fakes.whapi.sent_with(SALES_TOKEN), timeout=10)
            await wait_until(lambda: store.get(f"sales:{USER}") is not None)
            sales = store.get(f"sales:{USER}")
            assert sales is not None and sales.conversation_id not in {None, old_conversation}
            assert store.get(USER).conversation_id == old_conversation


async def test_channels_and_their_actors_over_the_admin_api(tmp_path: Path) -> None:
    async with open_fakes() as fakes, open_bot(fakes, channel_settings(fakes, tmp_path)) as bot:
        connect_sales(fakes, bot)
        await bot.post(payloads.webhook([payloads.text_message(USER, "hola")]))
        await post_sales(bot, sales_webhook(USER, "hola"))
        await wait_until(lambda: len(fakes.whapi.sent) == 2, timeout=10)
        await wait_until(lambda: fakes.whapi.echoes_delivered == 2)
        http, url = bot.http, bot.url

        listed = (await http.get(f"{url}/channels", headers=AUTH)).json()["channels"]
        assert [(c["name"], c["hook"], c["live_actors"]) for c in listed] == [
            ("default", "/hook", 1),
            ("sales", "/hook/sales", 1),
        ]
        # The customer's message and the echo of the reply; one message.
        assert listed[1]["webhooks"] == {"accepted": 2} and listed[1]["messages"] == 1
        assert "whapi_token" in listed[1]["overrides"]
        assert SALES_TOKEN not in json.dumps(listed) and SALES_SECRET not in json.dumps(listed)
        assert (await http.get(f"{url}/channels")).status_code == 401

        sales_actors = (await http.get(f"{url}/channels/sales/actors", headers=AUTH)).json()
        assert [a["user"] for a in sales_actors["actors"]] == [f"sales:{USER}"]
        default_actors = (await http.get(f"{url}/actors", headers=AUTH)).json()
        assert [a["user"] for a in default_actors["actors"]] == [USER]

        one = (await http.get(f"{url}/channels/sales/actors/{USER}", headers=AUTH)).json()
        assert one["user"] == f"sales:{USER}" and one["channel"] == "sales" and one["live"]
        assert (
            await http.get(f"{url}/channels/support/actors/{USER}", headers=AUTH)
        ).status_code == 404
        assert (
            await http.get(f"{url}/channels/sales/actors/573009990000", headers=AUTH)
        ).status_code == 404

        # Pausing the customer in sales leaves them answered by the default number.
        paused = await http.post(f"{url}/channels/sales/actors/{USER}/pause", headers=AUTH)
        assert paused.status_code == 200, paused.text
        assert paused.json()["channel"] == "sales" and paused.json()["paused_by"] == "operator"
        assert (await http.get(f"{url}/actors/{USER}", headers=AUTH)).json()["pause"] is None
        sales_view = (await http.get(f"{url}/channels/sales/actors/{USER}", headers=AUTH)).json()
        assert sales_view["pause"]["by"] == "operator"
        await post_sales(bot, sales_webhook(USER, "¿hola?"))
        await bot.post(payloads.webhook([payloads.text_message(USER, "¿hola?")]))
        await wait_until(lambda: len(fakes.whapi.sent_with(WHAPI_TOKEN)) == 2, timeout=10)
        await wait_until(lambda: not bot.service.store.pending_for(f"sales:{USER}"))
        assert len(fakes.whapi.sent_with(SALES_TOKEN)) == 1  # paused: no answer

        resumed = await http.post(f"{url}/channels/sales/actors/{USER}/resume", headers=AUTH)
        assert resumed.status_code == 200 and resumed.json()["paused_until"] is None
        reset = await http.post(f"{url}/channels/sales/actors/{USER}/reset", headers=AUTH)
        assert reset.status_code == 200 and reset.json()["conversation_id"] is None
        assert bot.service.store.get(USER).conversation_id is not None  # default's untouched
        missing = await http.post(f"{url}/channels/support/actors/{USER}/pause", headers=AUTH)
        assert missing.status_code == 404 and "unknown channel" in missing.text


def test_log_lines_about_another_channels_customer_carry_the_channel() -> None:
    from actors.runtime.logcontext import bind, current

    with bind(user=USER, turn=f"{USER}-1"):
        assert current() == {"user": USER, "turn": f"{USER}-1"}  # default: as before
    with bind(user=f"sales:{USER}"):
        assert current() == {"user": f"sales:{USER}", "channel": "sales"}
