"""/poem end to end: the real AtelierBot (discord.py) over loopback against the emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bot.client import AtelierBot
from bot.domain import RequestStatus
from bot.generation.backend import SequenceInput
from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import LoadedModel
from bot.playground.emulator import DiscordEmulator
from bot.prompts import WILDNESS
from tests.bots import fake, has_buttons, is_final, running_bot, settled_row, sung
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World

TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


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
    backend = FakeStepBackend(manual_steps=True, script=sung)
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
    backend = FakeStepBackend(manual_steps=True, max_batch_size=1, script=sung)
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
    backend = FakeStepBackend(manual_steps=True, script=sung)
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
        assert rows[0].output == "♪ Write a free verse poem about a vanishing room."
        assert rows[0].is_delivered


def user_turns(backend: FakeStepBackend) -> list[str]:
    return [seq.messages[-1]["content"] for seq in backend.inputs.values()]


async def test_each_option_reaches_the_prompt_the_header_and_the_stored_inputs(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend, poem_candidates=3) as bot:
        options = {
            "theme": "the sea at night",
            "form": "haiku",
            "language": "fr",
            "length": "short",
            "wildness": "wild",
        }
        record = await emulator.invoke("poem", options, **world.where)
        final = await record.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)

    assert final.content.startswith("**Haiku** · *the sea at night* · French")
    assert f"for <@{world.member_id}> · #1" in final.content
    assert row.inputs == options
    # A fixed form samples several candidates from one prompt, at the chosen wildness.
    turns = user_turns(backend)
    assert len(turns) == 3 and len(set(turns)) == 1
    assert "haiku" in turns[0] and "French" in turns[0] and "the sea at night" in turns[0]
    assert {p.temperature for p in backend.params.values()} == {WILDNESS["wild"]}


async def test_defaults_are_left_unset_and_length_sets_the_budget(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        for theme, length in (("short rain", "short"), ("long rain", "long")):
            record = await emulator.invoke(
                "poem", {"theme": theme, "length": length}, **world.where
            )
            await record.wait_for_original(has_buttons, timeout=10)
        short, long = [await settled_row(bot, world.guild_id, i) for i in (1, 2)]
    assert short.inputs == {"theme": "short rain", "form": "free verse", "length": "short"}
    assert long.inputs["length"] == "long"
    budgets = [backend.params[seq_id].max_new_tokens for seq_id in sorted(backend.params)]
    assert budgets[0] < budgets[1]
    assert [p.temperature for p in backend.params.values()] == [WILDNESS["balanced"]] * 2


async def add_style(bot: AtelierBot, guild_id: int, name: str, **fields: Any) -> None:
    await bot.runtime.styles.save(
        guild_id,
        name,
        description=fields.get("description", f"the {name} voice"),
        instructions=fields.get("instructions", f"Write like {name}."),
        example=None,
        commands=frozenset(fields.get("commands", ("poem",))),
        mature=fields.get("mature", False),
        by_user=1,
        create=True,
    )


async def style_names(
    emulator: DiscordEmulator, typed: str, *, guild_id: int, channel_id: int, user_id: int
) -> list[str]:
    record = await emulator.autocomplete(
        "poem",
        {"theme": "x", "style": typed},
        focused="style",
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
    )
    await record.wait_for_response(timeout=5)
    assert record.choices is not None
    return [choice["value"] for choice in record.choices]


async def test_style_autocomplete_offers_this_servers_styles_only(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    other_guild = emulator.add_guild("Elsewhere")
    other_channel = emulator.add_channel(other_guild, "general")
    other_member = emulator.add_member(other_guild, "zed")
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await add_style(bot, world.guild_id, "harbour-noir")
        await add_style(bot, world.guild_id, "after-hours", mature=True)
        await add_style(bot, world.guild_id, "stage-only", commands=("script",))
        await add_style(bot, other_guild, "velvet-gloom")
        builtins = {s.name for s in await bot.runtime.styles.available(None, "poem")}

        here = await style_names(emulator, "", **world.where)
        assert "harbour-noir" in here
        assert "velvet-gloom" not in here  # another server's
        assert "stage-only" not in here  # a style for /script only
        assert "after-hours" not in here  # mature, and this channel is not age-restricted
        assert set(here) <= builtins | {"harbour-noir"}

        assert await style_names(emulator, "harb", **world.where) == ["harbour-noir"]
        adult = {**world.where, "channel_id": world.nsfw_channel_id}
        assert "after-hours" in await style_names(emulator, "", **adult)
        there = await style_names(
            emulator, "", guild_id=other_guild, channel_id=other_channel, user_id=other_member
        )
        assert "velvet-gloom" in there and "harbour-noir" not in there


async def test_a_chosen_style_is_quoted_in_the_prompt_and_badged_on_the_reply(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        await add_style(bot, world.guild_id, "harbour-noir", instructions="Smoke and neon.")
        record = await emulator.invoke(
            "poem", {"theme": "a pier", "style": "Harbour-Noir"}, **world.where
        )
        final = await record.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
    assert "🎨 harbour-noir" in final.content.split("\n")[0]
    assert row.inputs["style"] == "harbour-noir"
    assert "Smoke and neon." in user_turns(backend)[0]


async def test_an_unknown_style_is_refused_before_anything_runs(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        record = await emulator.invoke(
            "poem", {"theme": "a pier", "style": "no-such-style"}, **world.where
        )
        reply = await record.wait_for_original(timeout=5)
        assert reply.ephemeral
        assert "no-such-style" in reply.content
        assert bot.runtime.engine.stats().submitted == 0


async def test_blocked_words_are_masked_while_writing_and_in_the_final_reply(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(
        manual_steps=True, script=lambda seq: ["♪ ", "the ", "Gloom ", "falls ", "softly."]
    )
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        await bot.runtime.policy.update(world.guild_id, blocked_words=("gloom",))
        record = await emulator.invoke("poem", {"theme": "dusk"}, **world.where)
        backend.allow(3)  # "♪ the Gloom falls"
        await record.wait_for_original(lambda m: "falls" in m.content, timeout=5)
        backend.open()
        final = await record.wait_for_original(has_buttons, timeout=5)
    assert record.original is not None
    assert all("gloom" not in text.lower() for text in record.original.history)
    assert "falls softly." in final.content and "■" in final.content


async def test_a_poem_cut_off_by_the_token_limit_ends_on_its_last_whole_line(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    def runaway(seq: SequenceInput) -> list[str]:
        return ["♪ The tide comes in.\n", *["and "] * 400]

    async with running_bot(emulator, tmp_path, fake(script=runaway)):
        record = await emulator.invoke("poem", {"theme": "tides"}, **world.where)
        final = await record.wait_for_original(has_buttons, timeout=10)
    assert final.content.rstrip().endswith("The tide comes in.")
    assert "and and" not in final.content
