"""The buttons on a finished creation, end to end: ⭐ Favourite, 🔁 Regenerate,
➕ Continue, 🗑 Delete; after a restart too, and never across servers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bot.generation.backend import SequenceInput
from bot.playground.emulator import DiscordEmulator
from bot.playground.records import InteractionRecord, Message
from tests.bots import fake, forged_message, has_buttons, running_bot, settled_row, sung
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World


async def make_poem(
    emulator: DiscordEmulator, world: World, theme: str = "a harbour at dawn"
) -> Message:
    record = await emulator.invoke("poem", {"theme": theme}, **world.where)
    return await record.wait_for_original(has_buttons, timeout=10)


async def click(
    emulator: DiscordEmulator, message: Message, custom_id: str, user_id: int
) -> InteractionRecord:
    return await emulator.click(message.id, custom_id, user_id=user_id)


async def ephemeral_answer(record: InteractionRecord) -> str:
    """The bot's private answer to a click: the response itself, or its follow-up."""
    await record.wait_for_response(timeout=5)
    answer = await record.wait_for(lambda r: any(m.ephemeral for m in r.messages), timeout=5)
    return next(m.content for m in answer.messages if m.ephemeral)


def favourite_label(message: Message) -> str:
    (button,) = [b for b in message.buttons if (b.custom_id or "").startswith("atelier:fav:")]
    return button.display


async def test_a_finished_creation_carries_its_four_buttons_by_id_only(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()):
        final = await make_poem(emulator, world)
    assert final.custom_ids == [
        "atelier:fav:1",
        "atelier:regen:1",
        "atelier:more:1",
        "atelier:del:1",
    ]
    assert final.button_labels == ["⭐ Favourite", "🔁 Regenerate", "➕ Continue", "🗑️ Delete"]


async def test_favourite_toggles_and_the_label_counts_the_stars(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        final = await make_poem(emulator, world)

        first = await click(emulator, final, "atelier:fav:1", world.member_id)
        assert "Added" in await ephemeral_answer(first)
        assert favourite_label(final) == "⭐ Favourite · 1"

        second = await click(emulator, final, "atelier:fav:1", world.moderator_id)
        assert "Added" in await ephemeral_answer(second)
        assert favourite_label(final) == "⭐ Favourite · 2"

        again = await click(emulator, final, "atelier:fav:1", world.member_id)
        assert "Removed" in await ephemeral_answer(again)
        assert favourite_label(final) == "⭐ Favourite · 1"
        assert await bot.runtime.library.stars(world.guild_id, 1) == 1
        assert not final.ephemeral and final.content.startswith("**Free verse**")


async def test_regenerate_sends_the_same_inputs_as_a_new_creation_in_a_new_message(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        final = await make_poem(emulator, world)
        before = final.content
        other = emulator.add_member(world.guild_id, "bo")
        regen = await click(emulator, final, "atelier:regen:1", other)
        fresh = await regen.wait_for_original(has_buttons, timeout=10)
        original, again = [await settled_row(bot, world.guild_id, i) for i in (1, 2)]

    assert fresh.id != final.id and not fresh.ephemeral
    assert final.content == before  # the first creation is untouched
    assert again.inputs == original.inputs
    assert again.user_id == other  # whoever asked again is credited with the new one
    assert fresh.custom_ids[0] == "atelier:fav:2"
    assert f"for <@{other}> · #2" in fresh.content
    messages = [seq.messages for seq in backend.inputs.values()]
    assert messages[0] == messages[1]


async def test_continue_extends_the_creation_in_a_new_message(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        final = await make_poem(emulator, world)
        more = await click(emulator, final, "atelier:more:1", world.member_id)
        sequel = await more.wait_for_original(has_buttons, timeout=10)
        parent, child = [await settled_row(bot, world.guild_id, i) for i in (1, 2)]

    assert child.inputs == {**parent.inputs, "continue_of": 1, "previous": parent.output}
    assert "➕ continues #1" in sequel.content.split("\n")[0]
    assert parent.output is not None
    continuation_prompt = list(backend.inputs.values())[1].messages[-1]["content"]
    assert parent.output in continuation_prompt


async def test_only_the_requester_or_a_moderator_may_delete(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        mine = await make_poem(emulator, world, "mine")
        theirs = await make_poem(emulator, world, "theirs")

        stranger = emulator.add_member(world.guild_id, "bo")
        refusal = await click(emulator, mine, "atelier:del:1", stranger)
        answer = await refusal.wait_for_original(timeout=5)
        assert answer.ephemeral and "moderator" in answer.content.lower()
        assert not mine.deleted
        assert await bot.runtime.requests.get(world.guild_id, 1) is not None

        own = await click(emulator, mine, "atelier:del:1", world.member_id)
        assert "deleted" in (await own.wait_for_original(timeout=5)).content
        await emulator.wait_for(lambda e: mine.deleted, timeout=5)
        assert await bot.runtime.requests.get(world.guild_id, 1) is None

        by_moderator = await click(emulator, theirs, "atelier:del:2", world.moderator_id)
        assert "deleted" in (await by_moderator.wait_for_original(timeout=5)).content
        await emulator.wait_for(lambda e: theirs.deleted, timeout=5)
        assert await bot.runtime.requests.get(world.guild_id, 2) is None


async def test_the_servers_moderator_role_may_delete_too(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    role = emulator.add_role(world.guild_id, "curators")
    curator = emulator.add_member(world.guild_id, "cleo", roles=[role])
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await bot.runtime.policy.update(world.guild_id, moderator_role_id=role)
        final = await make_poem(emulator, world)
        by_curator = await click(emulator, final, "atelier:del:1", curator)
        assert "deleted" in (await by_curator.wait_for_original(timeout=5)).content
        await emulator.wait_for(lambda e: final.deleted, timeout=5)


async def test_deleting_a_long_creation_removes_all_its_messages_and_nothing_else(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    def long_or_short(seq: SequenceInput) -> list[str]:
        if "long" in seq.messages[-1]["content"]:
            return ["♪ ", *["word " * 60 + "\n\n"] * 18]  # three messages
        return sung(seq)

    async with running_bot(emulator, tmp_path, fake(script=long_or_short)):
        record = await emulator.invoke("poem", {"theme": "long"}, **world.where)
        await record.wait_for_followups(2, timeout=10)
        first = record.original
        assert first is not None and has_buttons(first) and len(record.messages) == 3
        neighbour = await make_poem(emulator, world, "short")

        delete = await click(emulator, first, "atelier:del:1", world.member_id)
        await delete.wait_for_original(timeout=5)
        await emulator.wait_for(lambda e: all(m.deleted for m in record.followups), timeout=5)
    assert first.deleted
    assert not neighbour.deleted


async def test_buttons_keep_working_after_a_restart(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()):
        final = await make_poem(emulator, world)

    async with running_bot(emulator, tmp_path, fake()) as bot:
        star = await click(emulator, final, "atelier:fav:1", world.member_id)
        assert "Added" in await ephemeral_answer(star)
        assert favourite_label(final) == "⭐ Favourite · 1"

        regen = await click(emulator, final, "atelier:regen:1", world.member_id)
        fresh = await regen.wait_for_original(has_buttons, timeout=10)
        assert fresh.custom_ids[0] == "atelier:fav:2"

        more = await click(emulator, final, "atelier:more:1", world.member_id)
        await more.wait_for_original(has_buttons, timeout=10)
        assert (await settled_row(bot, world.guild_id, 3)).inputs["continue_of"] == 1

        delete = await click(emulator, final, "atelier:del:1", world.member_id)
        await delete.wait_for_original(timeout=5)
        await emulator.wait_for(lambda e: final.deleted, timeout=5)
        assert await bot.runtime.requests.get(world.guild_id, 1) is None


async def test_a_custom_id_cannot_reach_another_servers_creation(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    other_guild = emulator.add_guild("Elsewhere")
    other_channel = emulator.add_channel(other_guild, "general")
    intruder = emulator.add_member(other_guild, "zed", manage_guild=True)
    async with running_bot(emulator, tmp_path, fake()) as bot:
        final = await make_poem(emulator, world)
        copied = forged_message(
            emulator,
            other_channel,
            ["atelier:fav:1", "atelier:regen:1", "atelier:more:1", "atelier:del:1"],
        )
        for custom_id in copied.custom_ids:
            attempt = await click(emulator, copied, custom_id, intruder)
            answer = await attempt.wait_for_original(timeout=5)
            assert answer.ephemeral and "can't find creation #1" in answer.content

        assert await bot.runtime.library.stars(world.guild_id, 1) == 0
        assert await bot.runtime.requests.get(world.guild_id, 1) is not None
        assert await bot.runtime.requests.recent(other_guild) == []
        assert not final.deleted
        assert bot.runtime.engine.stats().submitted == 1
