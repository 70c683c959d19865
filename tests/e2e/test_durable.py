"""Durable jobs end to end: a bot stops mid-job, a new one on the same data answers once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from bot.client import AtelierBot
from bot.domain import RequestRecord, RequestStatus
from bot.playground.emulator import DiscordEmulator
from bot.playground.records import InteractionRecord, Message
from bot.storage.database import Database
from bot.storage.repositories import RequestRepository
from tests.bots import has_buttons, running_bot, sung
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World

FINAL_TEXT = "♪ Write a free verse poem about a lighthouse."


async def stored(tmp_path: Path) -> list[RequestRecord]:
    """The rows as the next start will find them (read with no bot running)."""
    db = await Database.open(tmp_path / "data" / "atelier.sqlite3")
    try:
        return await RequestRepository(db).undelivered()
    finally:
        await db.close()


async def interrupted_job(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> tuple[InteractionRecord, FakeStepBackend]:
    """Bot A accepts /poem, writes a few words, then stops before finishing."""
    backend = FakeStepBackend(manual_steps=True, script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        record = await emulator.invoke("poem", {"theme": "a lighthouse"}, **world.where)
        backend.allow(3)
        await record.wait_for_original(lambda m: "♪ Write a free" in m.content, timeout=5)
        job = bot.runtime.engine.get("1")
        assert job is not None
        # As close to a crash as a test gets: the engine stops the job mid-step.
        closing = asyncio.create_task(bot.close())
        await job.wait()
        backend.open()  # let the generation thread leave its gated step
        await closing
    assert record.original is not None
    assert not any(
        "Cancelled" in text or "shutting down" in text for text in record.original.history
    )
    (row,) = await stored(tmp_path)
    # Not recorded as a member's cancel: left running, undelivered, token kept.
    assert row.status is RequestStatus.RUNNING and not row.is_finished
    assert row.interaction_token is not None
    return record, backend


async def delivered_row(bot: AtelierBot, guild_id: int) -> RequestRecord:
    for _ in range(100):
        row = await bot.runtime.requests.get(guild_id, 1)
        if row is not None and row.is_delivered and row.is_finished:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"request 1 never delivered: {row}")


def final_messages(emulator: DiscordEmulator, channel_id: int) -> list[Message]:
    return [m for m in emulator.channel_messages(channel_id) if FINAL_TEXT in m.content]


async def test_restart_mid_job_reruns_it_and_edits_the_original_reply_once(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    record, first_backend = await interrupted_job(emulator, world, tmp_path)
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        row = await delivered_row(bot, world.guild_id)
        await emulator.idle_for(0.3)

    final = record.original
    assert final is not None and FINAL_TEXT in final.content
    # The Cancel button made way for the creation's own buttons.
    assert has_buttons(final) and "atelier:cancel:1" not in final.custom_ids
    assert [r.content for r in final.revisions].count(final.content) == 1  # edited once
    assert final_messages(emulator, world.channel_id) == [final]  # nothing posted twice
    assert row.status is RequestStatus.DONE and row.output == FINAL_TEXT
    assert row.message_id == final.id and row.interaction_token is None
    # The same model input was rebuilt from the stored inputs.
    assert [s.messages for s in backend.inputs.values()] == [
        s.messages for s in first_backend.inputs.values()
    ]


async def test_restart_after_the_token_expired_posts_a_new_message_that_pings_no_one(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    record, _ = await interrupted_job(emulator, world, tmp_path)
    emulator.expire_interaction(record)
    async with running_bot(emulator, tmp_path, lambda s: FakeStepBackend(script=sung)) as bot:
        row = await delivered_row(bot, world.guild_id)
        await emulator.idle_for(0.3)

    (posted,) = final_messages(emulator, world.channel_id)
    assert posted.id != (record.original.id if record.original else None)
    assert posted.interaction_id is None  # a plain channel message
    assert f"<@{world.member_id}>" in posted.content
    assert posted.allowed_mentions == {"parse": []}
    assert posted.pinged_user_ids == [] and not posted.pings_everyone
    assert row.status is RequestStatus.DONE
    assert row.message_id == posted.id and row.interaction_token is None


async def test_restart_with_the_channel_deleted_marks_it_delivered_without_crashing(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    await interrupted_job(emulator, world, tmp_path)
    emulator.delete_channel(world.channel_id)
    async with running_bot(emulator, tmp_path, lambda s: FakeStepBackend(script=sung)) as bot:
        row = await delivered_row(bot, world.guild_id)
        assert row.status is RequestStatus.DONE and row.output == FINAL_TEXT
        # Still serving: a new request elsewhere works.
        other = emulator.add_channel(world.guild_id, "elsewhere")
        await emulator.settle_announcements()
        fresh = await emulator.invoke(
            "poem",
            {"theme": "new"},
            guild_id=world.guild_id,
            channel_id=other,
            user_id=world.member_id,
        )
        await fresh.wait_for_original(lambda m: "about new." in m.content, timeout=5)
    assert final_messages(emulator, world.channel_id) == []


async def test_a_finished_but_undelivered_row_is_delivered_without_running_again(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    record, _ = await interrupted_job(emulator, world, tmp_path)
    # The process died after recording the outcome but before claiming delivery.
    db = await Database.open(tmp_path / "data" / "atelier.sqlite3")
    await RequestRepository(db).finish(1, RequestStatus.DONE, output=FINAL_TEXT)
    await db.close()

    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        await delivered_row(bot, world.guild_id)
        await emulator.idle_for(0.3)
    assert backend.add_calls == []
    assert final_messages(emulator, world.channel_id) == [record.original]


async def test_a_resumed_job_can_be_cancelled_from_its_reply(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    record, _ = await interrupted_job(emulator, world, tmp_path)
    assert record.original is not None
    seen = len(record.original.revisions)
    backend = FakeStepBackend(manual_steps=True, script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        # Bot B's first live edit of the old reply carries its own Cancel button.
        live = await record.wait_for_original(lambda m: len(m.revisions) > seen, timeout=5)
        assert "♪ Write a free" not in live.content  # B's own progress, not A's
        click = await emulator.click(live.id, "atelier:cancel:1", user_id=world.member_id)
        assert "Stopped" in (await click.wait_for_original(timeout=5)).content
        final = await record.wait_for_original(lambda m: "Cancelled" in m.content, timeout=5)
        assert final.buttons == []  # cancelled: nothing to favourite or continue
        row = await delivered_row(bot, world.guild_id)
        assert row.status is RequestStatus.CANCELLED
        backend.open()
