"""Answers from the business's own documents: ``wabot knowledge sync``/``status`` against the
fake OpenAI, and turns that search the synced documents and cite them.

Everything goes through real HTTP on loopback: the sync through the SDK to the fake's files
and vector stores (bodies checked against their schemas), the turns through the bot.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import openai
import pytest
import trio

from actors.settings import Settings
from actors.upstream import knowledge_state
from actors.upstream.knowledge_state import load_state, state_path
from gateway.knowledge_cli import status_command, sync_command
from sandbox import payloads
from sandbox.openai import FakeOpenAI
from tests.harness import Fakes, make_settings, open_bot, open_fakes
from tests.process import ADMIN_TOKEN, bot_environ

USER = "573007712345"
CHAT = f"{USER}@s.whatsapp.net"
PETS = "Se aceptan mascotas pequeñas (hasta 10 kg) con un cargo único de 50.000 COP."


class Out(io.StringIO):
    """A captured stdout, a terminal or not."""

    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with open_fakes() as running:
        yield running


def settings_for(fakes: Fakes, data_dir: Path, **overrides: Any) -> Settings:
    return make_settings(fakes, data_dir, **overrides)


def write_docs(folder: Path, docs: dict[str, str | bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in docs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


async def sync(settings: Settings, folder: Path, *, tty: bool = False) -> tuple[int, str]:
    out = Out(tty)
    code = await sync_command(settings, str(folder), out, 0.02)
    return code, out.getvalue()


def uploads(fake: FakeOpenAI) -> list[Any]:
    return fake.calls_to(r"^/v1/files$", "POST")


def store_files(fake: FakeOpenAI, store_id: str) -> dict[str, str]:
    """file id → name of the files attached to a store of the fake."""
    store = fake.knowledge.stores[store_id]
    return {fid: fake.knowledge.files[fid].filename for fid in store.files}


DOCS = {
    "politicas.md": f"# Políticas\n\n{PETS}\nNo se permite fumar dentro de los apartamentos.\n",
    "precios.txt": "El apartamento Coral cuesta 280.000 COP por noche.\n",
}


async def test_first_sync_uploads_and_a_second_uploads_nothing(
    fakes: Fakes, tmp_path: Path
) -> None:
    settings = settings_for(fakes, tmp_path / "data")
    folder = tmp_path / "docs"
    write_docs(folder, {**DOCS, ".oculto.md": "no", "foto.png": b"\x89PNG"})
    code, out = await sync(settings, folder)
    assert code == 0, out
    state = load_state(state_path(settings.data_dir)).channel()
    assert state.vector_store_id in fakes.openai.knowledge.stores
    assert sorted(doc.name for doc in state.files.values()) == ["politicas.md", "precios.txt"]
    assert sorted(store_files(fakes.openai, state.vector_store_id).values()) == [
        "politicas.md",
        "precios.txt",
    ]
    assert [call.form["file"]["filename"] for call in uploads(fakes.openai)] == [
        "politicas.md",
        "precios.txt",
    ]
    assert all(call.form["purpose"] == "assistants" for call in uploads(fakes.openai))
    assert "(new): 2 uploaded, 0 unchanged, 0 removed, 0 failed, 1 skipped" in out
    assert "skipped: foto.png: type .png is not searchable" in out
    assert not fakes.openai.invalid_calls

    code, out = await sync(settings, folder)
    assert code == 0, out
    assert len(uploads(fakes.openai)) == 2, "nothing changed: nothing uploaded"
    assert len(fakes.openai.calls_to(r"/vector_stores$", "POST")) == 1
    assert f"vector store {state.vector_store_id}: 0 uploaded, 2 unchanged" in out
    assert load_state(state_path(settings.data_dir)).channel() == state


async def test_a_changed_file_is_replaced_and_a_deleted_one_removed(
    fakes: Fakes, tmp_path: Path
) -> None:
    settings = settings_for(fakes, tmp_path / "data")
    folder = tmp_path / "docs"
    write_docs(folder, DOCS)
    assert (await sync(settings, folder))[0] == 0
    before = load_state(state_path(settings.data_dir)).channel()
    old_ids = {doc.name: doc.file_id for doc in before.files.values()}

    (folder / "precios.txt").write_text("El apartamento Coral cuesta 300.000 COP.\n")
    (folder / "politicas.md").unlink()
    code, out = await sync(settings, folder)
    assert code == 0, out
    assert "1 uploaded, 0 unchanged, 2 removed" in out
    assert "removed politicas.md" in out and "removed precios.txt" in out
    after = load_state(state_path(settings.data_dir)).channel()
    assert [doc.name for doc in after.files.values()] == ["precios.txt"]
    (new_id,) = [doc.file_id for doc in after.files.values()]
    assert new_id != old_ids["precios.txt"]
    assert store_files(fakes.openai, after.vector_store_id) == {new_id: "precios.txt"}
    for old in old_ids.values():
        assert old not in fakes.openai.knowledge.files, "the old file is deleted too"


async def test_a_file_that_fails_indexing_is_reported_and_not_kept(
    fakes: Fakes, tmp_path: Path
) -> None:
    settings = settings_for(fakes, tmp_path / "data")
    fakes.openai.knowledge.fail_pattern = re.compile("roto")
    folder = tmp_path / "docs"
    write_docs(folder, {**DOCS, "roto.md": "Un documento que no se puede leer."})
    code, out = await sync(settings, folder)
    assert code == 1
    assert "2 uploaded" not in out and "3 uploaded, 0 unchanged, 0 removed, 1 failed" in out
    assert "failed: roto.md: The file roto.md could not be parsed." in out
    state = load_state(state_path(settings.data_dir)).channel()
    assert sorted(doc.name for doc in state.files.values()) == ["politicas.md", "precios.txt"]
    assert "roto.md" not in store_files(fakes.openai, state.vector_store_id).values()
    assert "roto.md" not in {f.filename for f in fakes.openai.knowledge.files.values()}


async def test_progress_is_a_line_per_state_change_or_a_bar_on_a_terminal(
    fakes: Fakes, tmp_path: Path
) -> None:
    fakes.openai.knowledge.index_seconds = 0.3
    folder = tmp_path / "docs"
    write_docs(folder, DOCS)
    code, out = await sync(settings_for(fakes, tmp_path / "a"), folder)
    assert code == 0, out
    lines = out.splitlines()
    for name in DOCS:
        assert lines.count(f"{name}: in_progress") == 1, out
        assert lines.count(f"{name}: completed") == 1, out
        assert lines.index(f"uploaded {name}") < lines.index(f"{name}: completed")

    code, out = await sync(settings_for(fakes, tmp_path / "b"), folder, tty=True)
    assert code == 0, out
    bars = [part for part in out.split("\r") if part.startswith("indexing [")]
    assert bars and bars[0].startswith("indexing [" + "." * 30 + "] 0/2 done"), out
    assert bars[-1].startswith("indexing [" + "#" * 30 + "] 2/2 done"), out
    assert out.rstrip().splitlines()[-1].startswith("vector store ")


async def test_a_store_openai_lost_is_made_again_and_retries_keep_the_sync_going(
    fakes: Fakes, tmp_path: Path
) -> None:
    settings = settings_for(fakes, tmp_path / "data")
    folder = tmp_path / "docs"
    write_docs(folder, DOCS)
    assert (await sync(settings, folder))[0] == 0
    lost = load_state(state_path(settings.data_dir)).channel().vector_store_id
    assert lost is not None
    del fakes.openai.knowledge.stores[lost]
    fakes.openai.faults.add(r"^/v1/files$", status=500, times=1)
    code, out = await sync(settings, folder)
    assert code == 0, out
    assert f"OpenAI no longer knows vector store {lost}" in out
    fresh = load_state(state_path(settings.data_dir)).channel()
    assert fresh.vector_store_id != lost
    assert sorted(store_files(fakes.openai, fresh.vector_store_id).values()) == sorted(DOCS)


async def test_status_shows_the_store_its_files_and_their_state(
    fakes: Fakes, tmp_path: Path
) -> None:
    settings = settings_for(fakes, tmp_path / "data")
    out = Out()
    assert await status_command(settings, out) == 0
    assert "no vector store yet" in out.getvalue()

    folder = tmp_path / "docs"
    write_docs(folder, DOCS)
    assert (await sync(settings, folder))[0] == 0
    store_id = load_state(state_path(settings.data_dir)).channel().vector_store_id
    fakes.openai.knowledge.index_seconds = 30.0  # the next attachment stays in progress
    async with openai.AsyncOpenAI(
        api_key=settings.openai_api_key, base_url=settings.openai_base_url
    ) as client:
        extra = await client.files.create(file=("ajeno.txt", b"otro texto"), purpose="assistants")
        await client.vector_stores.files.create(store_id, file_id=extra.id)
    out = Out()
    assert await status_command(settings, out) == 1, "a document is not indexed yet"
    text = out.getvalue()
    assert f"vector store {store_id} 'wabot default' (kept by wabot in " in text
    assert "in_progress, 3 document(s)" in text
    assert any(line.split()[:2] == ["completed", "politicas.md"] for line in text.splitlines())
    assert any(line.split()[:2] == ["in_progress", "ajeno.txt"] for line in text.splitlines())

    configured = attrs.evolve(settings, vector_store_ids=(store_id,))
    out = Out()
    await status_command(configured, out)
    assert "(WABOT_VECTOR_STORE_IDS)" in out.getvalue()


async def test_sync_refuses_stores_it_does_not_manage(
    fakes: Fakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(fakes, tmp_path / "data", vector_store_ids=("vs_theirs",))
    write_docs(tmp_path / "docs", DOCS)
    code, _out = await sync(settings, tmp_path / "docs")
    assert code == 2
    assert "WABOT_VECTOR_STORE_IDS is set" in capsys.readouterr().err
    assert not uploads(fakes.openai)


async def test_the_command_line_sync_is_idempotent(fakes: Fakes, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    write_docs(folder, DOCS)
    env = bot_environ(fakes, tmp_path / "data")
    wabot = str(Path(sys.executable).parent / "wabot")
    outputs = []
    for _ in range(2):
        done = await trio.run_process(
            [wabot, "knowledge", "sync", str(folder)],
            env=env,
            cwd=tmp_path,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout.decode())
    assert "2 uploaded, 0 unchanged" in outputs[0]
    assert "0 uploaded, 2 unchanged" in outputs[1]
    assert len(uploads(fakes.openai)) == 2
    missing = await trio.run_process(
        [wabot, "knowledge", "sync", str(tmp_path / "nowhere")],
        env=env,
        cwd=tmp_path,
        capture_stderr=True,
        check=False,
    )
    assert missing.returncode == 2 and b"is not a folder" in missing.stderr


# -- turns ---------------------------------------------------------------------------------------


def file_search_tools(fake: FakeOpenAI) -> list[list[dict[str, Any]]]:
    """The file_search tools of each responses.create the fake received."""
    return [
        [tool for tool in call.json.get("tools") or () if tool["type"] == "file_search"]
        for call in fake.calls_to(r"^/v1/responses$", "POST")
    ]


async def test_a_turn_answers_from_a_document_and_inspection_names_it(
    fakes: Fakes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(
        fakes, tmp_path / "data", admin_token=ADMIN_TOKEN, file_search_max_results=3
    )
    folder = tmp_path / "docs"
    write_docs(folder, DOCS)
    assert (await sync(settings, folder))[0] == 0
    store_id = load_state(state_path(settings.data_dir)).channel().vector_store_id
    async with open_bot(fakes, settings) as bot:
        await bot.post(payloads.webhook([payloads.text_message(USER, "Hola, ¿aceptan mascotas?")]))
        (sent,) = await fakes.whapi.wait_sent(1, to=CHAT)
        with trio.fail_after(5):
            while True:  # the turn ends (and is inspectable) just after its reply went out
                inspected = await bot.http.get(
                    f"{bot.url}/actors/{USER}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )
                if inspected.json()["last_turn"] is not None:
                    break
                await trio.sleep(0.02)
    assert sent.body == f"Según nuestra información: {PETS}", "quoted, the marker stripped"
    assert "【" not in (sent.body or "") and "†" not in (sent.body or "")
    assert file_search_tools(fakes.openai) == [
        [{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 3}]
    ]
    last_turn = inspected.json()["last_turn"]
    assert last_turn["cited"] == ["politicas.md"]
    assert last_turn["tools"] == ["file_search"]
    ended = [r.getMessage() for r in caplog.records if " replied in " in r.getMessage()]
    assert ended and "tools: file_search" in ended[0] and "cited: politicas.md" in ended[0]
    assert not fakes.openai.invalid_calls


async def test_configured_store_ids_are_used_as_given(fakes: Fakes, tmp_path: Path) -> None:
    async with openai.AsyncOpenAI(api_key=fakes.openai.api_key, base_url=fakes.openai_url) as c:
        theirs = await c.vector_stores.create(name="la tienda")
        doc = await c.files.create(
            file=("faq.txt", b"El parqueadero es gratuito."), purpose="assistants"
        )
        await c.vector_stores.files.create(theirs.id, file_id=doc.id)
    data = tmp_path / "data"
    # A store wabot keeps is there too: the configured one wins.
    knowledge_state.save_state(
        state_path(data),
        knowledge_state.KnowledgeState(
            {"default": knowledge_state.Channel("vs_kept_by_wabot", {})}
        ),
    )
    settings = settings_for(fakes, data, vector_store_ids=(theirs.id,))
    async with open_bot(fakes, settings) as bot:
        await bot.post(
            payloads.webhook([payloads.text_message(USER, "¿El parqueadero tiene costo?")])
        )
        (sent,) = await fakes.whapi.wait_sent(1, to=CHAT)
    assert sent.body == "Según nuestra información: El parqueadero es gratuito."
    assert file_search_tools(fakes.openai) == [
        [{"type": "file_search", "vector_store_ids": [theirs.id], "max_num_results": 5}]
    ]


async def test_without_a_store_no_search_and_a_first_sync_is_picked_up(
    fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knowledge_state, "RECHECK_SECONDS", 0.0)
    settings = settings_for(fakes, tmp_path / "data")
    folder = tmp_path / "docs"
    write_docs(folder, DOCS)
    async with open_bot(fakes, settings) as bot:
        await bot.post(payloads.webhook([payloads.text_message(USER, "¿aceptan mascotas?")]))
        (first,) = await fakes.whapi.wait_sent(1, to=CHAT)
        assert first.body == "Recibido: ¿aceptan mascotas?"
        assert file_search_tools(fakes.openai) == [[]]
        assert (await sync(settings, folder))[0] == 0  # while the bot runs
        await bot.post(payloads.webhook([payloads.text_message(USER, "¿y las mascotas?")]))
        sent = await fakes.whapi.wait_sent(2, to=CHAT)
    assert sent[1].body == f"Según nuestra información: {PETS}"


# -- the sandbox ---------------------------------------------------------------------------------


async def test_the_sandbox_syncs_its_sample_documents_and_answers_from_them(
    tmp_path: Path,
) -> None:
    """`make run` without credentials: the sample folder is in the fake, the demo quotes it."""
    from actors.settings import Settings as S
    from gateway.server import SANDBOX_KNOWLEDGE_FILE, run_server
    from sandbox.run import SAMPLE_KNOWLEDGE
    from tests.harness import FAST, SECRET, fast_config

    assert sorted(p.name for p in SAMPLE_KNOWLEDGE.iterdir()) == [
        "politicas.md",
        "precios.md",
        "preguntas-frecuentes.md",
    ]
    settings = S(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        tmp_dir=tmp_path / "tmp",
        webhook_secret=SECRET,
        **FAST,
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(
            lambda task_status: run_server(
                settings, stop=stop, config=fast_config(settings), task_status=task_status
            )
        )
        sandbox = running.sandbox
        sandbox.whapi.webhook_url = f"{running.url}/hook"
        async with httpx.AsyncClient(timeout=10) as http:
            body = payloads.webhook(
                [payloads.text_message(USER, "¿Tienen traslado desde el aeropuerto?")]
            )
            await http.post(f"{running.url}/hook", json=body, headers={"X-Webhook-Secret": SECRET})
            (sent,) = await sandbox.whapi.wait_sent(1, to=CHAT)
        stop.set()
    assert "traslado por 70.000 COP" in (sent.body or ""), sent.body
    saved = json.loads((tmp_path / "data" / SANDBOX_KNOWLEDGE_FILE).read_text())
    assert len(saved["channels"]["default"]["files"]) == 3
