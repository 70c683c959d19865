"""The ✖ Cancel button end to end: the real bot over loopback against the emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from bot.domain import RequestStatus
from bot.playground.emulator import DiscordEmulator
from bot.playground.records import InteractionRecord, Message
from bot.storage.database import Database
from bot.storage.repositories import RequestRepository
from tests.bots import has_buttons, running_bot, settled_row, sung
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World


def has_cancel(message: Message) -> bool:
    return any(c.startswith("atelier:cancel:") for c in message.custom_ids)


async def live_reply(record: InteractionRecord, text: str = "") -> Message:
    return await record.wait_for_original(lambda m: has_cancel(m) and text in m.content, timeout=5)


async def click_cancel(emulator: DiscordEmulator, message: Message, user_id: int) -> Message:
    """Press the message's Cancel button; return the bot's (ephemeral) answer."""
    (custom_id,) = [c for c in message.custom_ids if c.startswith("atelier:cancel:")]
    click = await emulator.click(message.id, custom_id, user_id=user_id)
    answer = await click.wait_for_original(timeout=5)
    assert answer.ephemeral
    return answer


async def test_cancel_while_queued_never_runs_the_job(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(manual_steps=True, max_batch_size=1, script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        first = await emulator.invoke("poem", {"theme": "first"}, **world.where)
        await live_reply(first, "Writing")
        second = await emulator.invoke("poem", {"theme": "second"}, **world.where)
        waiting = await live_reply(second, "Waiting in line")
        assert waiting.custom_ids == ["atelier:cancel:2"]  # only the request id

        answer = await click_cancel(emulator, waiting, world.member_id)
        assert "Stopped" in answer.content
        final = await second.wait_for_original(lambda m: "Cancelled" in m.content, timeout=5)
        assert final.buttons == []  # no button on the finished message
        row = await settled_row(bot, world.guild_id, 2)
        assert row.status is RequestStatus.CANCELLED and row.output is None

        backend.open()
        done = await first.wait_for_original(lambda m: "about first." in m.content, timeout=5)
        assert has_buttons(done) and not has_cancel(done)
        assert len(backend.add_calls) == 1  # the cancelled job never reached the model


async def test_cancel_while_running_keeps_the_partial_text(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(manual_steps=True, script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        record = await emulator.invoke("poem", {"theme": "a slow tide"}, **world.where)
        backend.allow(3)  # four words: prefill + three steps
        live = await live_reply(record, "♪ Write a free")
        answer = await click_cancel(emulator, live, world.member_id)
        assert "Stopped" in answer.content

        final = await record.wait_for_original(lambda m: "Cancelled" in m.content, timeout=5)
        assert "♪ Write a free" in final.content
        assert "about a slow tide." not in final.content
        assert final.buttons == []
        row = await settled_row(bot, world.guild_id, 1)
        assert row.status is RequestStatus.CANCELLED
        assert row.output is not None and row.output.startswith("♪ Write a free")
        assert row.message_id == final.id
        backend.open()  # release the generation thread


async def test_only_the_requester_or_a_moderator_may_cancel(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(manual_steps=True, script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        record = await emulator.invoke("poem", {"theme": "a shared pen"}, **world.where)
        live = await live_reply(record, "Writing")

        stranger = emulator.add_member(world.guild_id, "bo")
        refusal = await click_cancel(emulator, live, stranger)
        assert "Only the member who asked" in refusal.content
        assert bot.runtime.engine.get("1") is not None  # still running

        answer = await click_cancel(emulator, live, world.moderator_id)
        assert "Stopped" in answer.content
        await record.wait_for_original(lambda m: "Cancelled" in m.content, timeout=5)
        row = await settled_row(bot, world.guild_id, 1)
        assert row.status is RequestStatus.CANCELLED
        backend.open()


async def test_cancel_after_restart_on_a_finished_job_answers_harmlessly(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(manual_steps=True, script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        record = await emulator.invoke("poem", {"theme": "an old button"}, **world.where)
        live = await live_reply(record, "Writing")
        job = bot.runtime.engine.get("1")
        assert job is not None
        closing = asyncio.create_task(bot.close())
        await job.wait()  # stopped by the shutdown
        backend.open()
        await closing
    # While the bot was down the request was finished and answered elsewhere (e.g. a
    # crash right after the delivery claim): the stale button is all that is left.
    db = await Database.open(tmp_path / "data" / "atelier.sqlite3")
    requests = RequestRepository(db)
    await requests.finish(1, RequestStatus.DONE, output="kept")
    await requests.mark_delivered(1)
    await db.close()

    restarted = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: restarted) as bot:
        answer = await click_cancel(emulator, live, world.member_id)
        assert "no longer running" in answer.content
        row = await bot.runtime.requests.get(world.guild_id, 1)
        assert row is not None and row.status is RequestStatus.DONE
        assert restarted.add_calls == []
