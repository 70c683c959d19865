"""/poem end to end: the real AtelierBot (discord.py) over loopback against the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bot.config import Settings
from bot.domain import RequestStatus
from bot.generation.backend import SequenceInput, StepBackend
from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import LoadedModel
from bot.playground.emulator import DiscordEmulator
from bot.playground.records import Message
from tests.bots import running_bot
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World

TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def is_final(message: Message) -> bool:
    return "Waiting in line" not in message.content and "Writing…" not in message.content


def fake(**kwargs: Any) -> Callable[[Settings], StepBackend]:
    return lambda settings: FakeStepBackend(**kwargs)


@pytest.mark.model
async def test_poem_on_the_real_model_defers_then_edits_and_is_stored(
    emulator: DiscordEmulator, world: World, tmp_path: Path, loaded: LoadedModel
) -> None:
    async with running_bot(
        emulator, tmp_path, lambda s: LocalBackend(loaded, max_batch_size=4)
    ) as bot:
        record = await emulator.invoke(
            "poem", {"theme": "rain on a tin roof", "form": "haiku"}, **world.where
        )
        await record.wait_for_response(timeout=3)
        assert record.deferred
        assert record.response_latency is not None and record.response_latency < 3.0

        final = await record.wait_for_original(is_final, timeout=120)
        assert final.content.startswith("**Haiku** · *rain on a tin roof*")
        poem = final.content.split("\n", 1)[1].strip()
        assert len(poem.split()) >= 3, final.content
        assert not any(token in final.content for token in TEMPLATE_TOKENS)
        assert final.allowed_mentions == {"parse": []}
        assert final.pinged_user_ids == [] and not final.pings_everyone

        stored = await bot.runtime.requests.recent(world.guild_id)
        assert len(stored) == 1
        row = stored[0]
        assert (row.command, row.user_id, row.channel_id) == (
            "poem",
            world.member_id,
            world.channel_id,
        )
        assert row.inputs == {"theme": "rain on a tin roof", "form": "haiku", "length": "medium"}
        # The recorder writes the outcome just after the job ends.
        for _ in range(50):
            row = await bot.runtime.requests.get(world.guild_id, row.id)  # type: ignore[assignment]
            if row is not None and row.is_delivered and row.status.is_finished:
                break
            await asyncio.sleep(0.05)
        assert row is not None
        assert row.status is RequestStatus.DONE
        assert row.output and row.output in final.content
        assert row.generated_tokens > 0 and row.first_token_ms is not None
        assert row.is_delivered and row.message_id == final.id
        assert row.interaction_token is None  # the credential is dropped once delivered


@pytest.mark.parametrize(
    ("theme", "expected"),
    [
        ("<@123456789012345678> <@&234567890123456789>", "only mentions"),
        ("@everyone @here", "only mentions"),
        ("x" * 201, "the limit is 200"),
        ("\u200b\u200b\u200b", "is empty"),
    ],
)
async def test_bad_theme_gets_a_clear_ephemeral_error_and_no_generation(
    emulator: DiscordEmulator, world: World, tmp_path: Path, theme: str, expected: str
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        record = await emulator.invoke("poem", {"theme": theme}, **world.where)
        reply = await record.wait_for_original(timeout=5)
        assert reply.ephemeral
        assert expected in reply.content
        assert bot.runtime.engine.stats().submitted == 0
        assert await bot.runtime.requests.recent(world.guild_id) == []


async def test_member_limit_refuses_at_once_and_names_the_limit(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(manual_steps=True)
    async with running_bot(emulator, tmp_path, lambda s: backend, member_inflight_limit=1) as bot:
        first = await emulator.invoke("poem", {"theme": "one two three"}, **world.where)
        await first.wait_for_response(timeout=3)
        second = await emulator.invoke("poem", {"theme": "four five"}, **world.where)
        refusal = await second.wait_for_original(timeout=5)
        assert refusal.ephemeral
        assert "limit per member is 1" in refusal.content
        backend.open()
        done = await first.wait_for_original(is_final, timeout=10)
        assert "Write a free verse poem about one two three." in done.content
        statuses = sorted(r.status for r in await bot.runtime.requests.recent(world.guild_id))
        assert statuses == [RequestStatus.DONE, RequestStatus.FAILED]


async def test_queue_position_is_shown_then_replaced_by_the_poem(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(manual_steps=True, max_batch_size=1)
    async with running_bot(emulator, tmp_path, lambda s: backend):
        first = await emulator.invoke("poem", {"theme": "first"}, **world.where)
        await first.wait_for_response(timeout=3)
        other = emulator.add_member(world.guild_id, "bo")
        second = await emulator.invoke(
            "poem",
            {"theme": "second"},
            guild_id=world.guild_id,
            channel_id=world.channel_id,
            user_id=other,
        )
        waiting = await second.wait_for_original(
            lambda m: "Waiting in line" in m.content, timeout=5
        )
        assert "#1" in waiting.content  # first in line behind the running one
        backend.open()
        final = await second.wait_for_original(is_final, timeout=10)
        assert "about second." in final.content


async def test_long_output_is_split_on_stanza_boundaries_without_pings(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    stanza = "@everyone look <@123456789012345678> here\n" + "word " * 60 + "\n\n"
    script = [stanza] * 12  # ~4,300 characters: three messages

    def long_poem(seq: SequenceInput) -> list[str]:
        return script

    async with running_bot(emulator, tmp_path, fake(script=long_poem)):
        record = await emulator.invoke(
            "poem", {"theme": "many stanzas", "length": "long"}, **world.where
        )
        await record.wait_for_followups(2, timeout=10)
        messages = [record.original, *record.followups[1:]]
        assert all(m is not None for m in messages)
        texts = [m.content for m in messages if m is not None]
        assert all(len(text) <= 2000 for text in texts)
        for text in texts[1:]:
            assert text.startswith("@\u200beveryone look")  # each chunk starts a stanza
        for m in messages:
            assert m is not None and m.allowed_mentions == {"parse": []}
            assert not m.pings_everyone and m.pinged_user_ids == []


async def test_deleted_channel_mid_job_loses_nothing(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(manual_steps=True)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        record = await emulator.invoke("poem", {"theme": "a vanishing room"}, **world.where)
        await record.wait_for_response(timeout=3)
        emulator.delete_channel(world.channel_id)
        backend.open()
        for _ in range(100):
            rows = await bot.runtime.requests.recent(world.guild_id)
            if rows and rows[0].is_delivered:
                break
            await asyncio.sleep(0.05)
        assert rows[0].status is RequestStatus.DONE
        assert rows[0].output == "Write a free verse poem about a vanishing room."
        assert rows[0].is_delivered
