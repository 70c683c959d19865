"""/critique end to end: the modal, text files (and the files it cannot read), images,
and the "Critique this writing" message menu with its opt-in."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import LoadedModel
from bot.playground.emulator import DiscordEmulator
from bot.playground.records import InteractionRecord
from tests.bots import (
    has_buttons,
    invoke_message_command,
    post_message,
    running_bot,
    settled_row,
    sung,
)
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World

POEM = "The kettle sings at six,\nthe window fogs with breath;\n\nI write your name in it."
MENU = "Critique this writing"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def seen_turns(backend: FakeStepBackend) -> list[str]:
    return [seq.messages[-1]["content"] for seq in backend.inputs.values()]


async def refused(record: InteractionRecord) -> str:
    reply = await record.wait_for_original(timeout=5)
    assert reply.ephemeral
    return reply.content


async def test_the_modal_takes_a_long_text_and_keeps_its_line_breaks(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        record = await emulator.invoke(
            "critique", {"focus": "imagery", "tone": "direct"}, **world.where
        )
        await record.wait_for_response(timeout=5)
        assert record.modal is not None
        (field,) = [c["component"] for c in record.modal["components"]]
        assert field["style"] == 2 and field["max_length"] == bot.settings.critique_max_chars

        submitted = await emulator.submit_modal(record, {"writing": POEM})
        final = await submitted.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
    assert final.content.startswith("**Critique** · imagery · direct")
    assert row.inputs == {"text": POEM, "focus": "imagery", "tone": "direct", "source": "modal"}
    assert POEM in seen_turns(backend)[0]
    # Feedback is not continued; it can be asked for again.
    assert final.custom_ids == ["atelier:fav:1", "atelier:regen:1", "atelier:del:1"]


@pytest.mark.parametrize("filename", ["draft.txt", "draft.md"])
async def test_a_text_file_is_read_and_critiqued(
    emulator: DiscordEmulator, world: World, tmp_path: Path, filename: str
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        record = await emulator.invoke(
            "critique", {"file": (filename, POEM.encode("utf-8"))}, **world.where
        )
        final = await record.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
    assert "from a file" in final.content.split("\n")[0]
    assert row.inputs["text"] == POEM and row.inputs["source"] == "attachment"
    assert POEM in seen_turns(backend)[0]


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        (("huge.txt", b"word " * 20_000), "limit"),
        (("notes.txt", bytes(range(256)) * 8), "does not look like a text file"),
        # Never guessed at: a wrong guess would critique mojibake.
        (("lettre.txt", "Café crème, l'été à Noël".encode("latin-1")), "UTF-8"),
        (("photo.png", PNG), "only read text"),
        (("scan.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64), "only read text"),
    ],
)
async def test_files_it_cannot_read_get_a_clear_answer_and_nothing_runs(
    emulator: DiscordEmulator,
    world: World,
    tmp_path: Path,
    file: tuple[str, bytes],
    expected: str,
) -> None:
    async with running_bot(emulator, tmp_path, lambda s: FakeStepBackend(script=sung)) as bot:
        record = await emulator.invoke("critique", {"file": file}, **world.where)
        assert expected in await refused(record)
        assert bot.runtime.engine.stats().submitted == 0
        assert await bot.runtime.requests.recent(world.guild_id) == []


async def test_the_menu_critiques_ones_own_message(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        mine = post_message(emulator, world.channel_id, world.member_id, POEM)
        record = await invoke_message_command(emulator, MENU, mine, user_id=world.member_id)
        final = await record.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
    assert row.inputs == {
        "text": POEM,
        "focus": "overall",
        "tone": "gentle",
        "source": "message",
        "author_id": world.member_id,
    }
    assert final.pinged_user_ids == []
    assert POEM in seen_turns(backend)[0]


async def opt_in(emulator: DiscordEmulator, world: World, user_id: int, enabled: bool) -> str:
    where = {**world.where, "user_id": user_id}
    record = await emulator.invoke("critique-optin", {"enabled": enabled}, **where)
    return await refused(record)  # an ephemeral confirmation


async def test_anothers_message_needs_their_opt_in(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, lambda s: FakeStepBackend(script=sung)) as bot:
        theirs = post_message(emulator, world.channel_id, world.moderator_id, POEM)
        first = await invoke_message_command(emulator, MENU, theirs, user_id=world.member_id)
        answer = await refused(first)
        assert "mira" in answer and "/critique-optin" in answer
        assert await bot.runtime.requests.recent(world.guild_id) == []

        assert "may now" in await opt_in(emulator, world, world.moderator_id, True)
        second = await invoke_message_command(emulator, MENU, theirs, user_id=world.member_id)
        critique = await second.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
        assert row.inputs["author_id"] == world.moderator_id
        assert f"of <@{world.moderator_id}>'s message" in critique.content
        assert critique.pinged_user_ids == []

        assert "no longer" in await opt_in(emulator, world, world.moderator_id, False)
        third = await invoke_message_command(emulator, MENU, theirs, user_id=world.member_id)
        assert "/critique-optin" in await refused(third)


async def test_without_the_servers_opt_in_rule_any_message_may_be_critiqued(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, lambda s: FakeStepBackend(script=sung)) as bot:
        await bot.runtime.policy.update(world.guild_id, critique_opt_in=False)
        theirs = post_message(emulator, world.channel_id, world.moderator_id, POEM)
        record = await invoke_message_command(emulator, MENU, theirs, user_id=world.member_id)
        await record.wait_for_original(has_buttons, timeout=10)


async def test_another_take_is_the_requesters_to_ask_for(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, lambda s: FakeStepBackend(script=sung)) as bot:
        record = await emulator.invoke(
            "critique", {"file": ("draft.txt", POEM.encode())}, **world.where
        )
        final = await record.wait_for_original(has_buttons, timeout=10)
        nosy = emulator.add_member(world.guild_id, "bo")
        attempt = await emulator.click(final.id, "atelier:regen:1", user_id=nosy)
        assert "Only the member who asked" in await refused(attempt)
        again = await emulator.click(final.id, "atelier:regen:1", user_id=world.member_id)
        await again.wait_for_original(has_buttons, timeout=10)
        assert (await settled_row(bot, world.guild_id, 2)).inputs["text"] == POEM


@pytest.mark.model
async def test_critique_on_the_real_model_gives_feedback(
    emulator: DiscordEmulator, world: World, tmp_path: Path, loaded: LoadedModel
) -> None:
    async with running_bot(
        emulator, tmp_path, lambda s: LocalBackend(loaded, max_batch_size=2)
    ) as bot:
        record = await emulator.invoke(
            "critique", {"file": ("kettle.txt", POEM.encode())}, **world.where
        )
        final = await record.wait_for_original(has_buttons, timeout=180)
        row = await settled_row(bot, world.guild_id, 1)
    assert final.content.startswith("**Critique** · overall · gentle")
    assert row.output and len(row.output.split()) >= 10
    assert "<|im_" not in final.content and '"""' not in final.content
    assert final.allowed_mentions == {"parse": []}
