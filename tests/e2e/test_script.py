"""/script end to end: options, the long-premise modal, and long scenes as .fountain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.generation.backend import SequenceInput
from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import LoadedModel
from bot.playground.emulator import DiscordEmulator
from tests.bots import fake, has_buttons, running_bot, settled_row, sung
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World

SHORT_SCENE = [
    "INT. NIGHT BUS - NIGHT\n\n",
    "Rain streaks the windows. MARA grips a paper cup.\n\n",
    "MARA\n",
    "We missed the last stop.\n\n",
    "JO\n",
    "(shrugging)\n",
    "Then we ride it to the end.\n",
]


def long_scene(seq: SequenceInput) -> list[str]:
    beats = [
        "MARA\nYou said the lighthouse was empty.\n\n",
        "JO\nIt was, until you brought a lantern.\n\n",
        "The wind rattles the glass. Somewhere below, a door slams.\n\n",
    ]
    return ["INT. LIGHTHOUSE - NIGHT\n\n", *beats * 25]  # ~3,500 characters


async def test_options_reach_the_prompt_the_header_and_the_stored_inputs(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        options = {
            "premise": "two strangers miss the last stop",
            "characters": "Mara, a nurse; Jo, a drummer",
            "genre": "comedy",
            "setting": "a night bus in winter",
            "length": "short",
        }
        record = await emulator.invoke("script", options, **world.where)
        final = await record.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
    assert final.content.startswith("**Comedy scene** · *two strangers miss the last stop*")
    assert row.inputs == options
    (turn,) = [seq.messages[-1]["content"] for seq in backend.inputs.values()]
    for value in ("two strangers miss the last stop", "Mara, a nurse", "a night bus", "comedy"):
        assert value in turn
    assert final.attachments == []


async def test_a_short_scene_is_shown_whole_and_readable(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake(script=lambda seq: SHORT_SCENE)):
        record = await emulator.invoke("script", {"premise": "a night bus"}, **world.where)
        final = await record.wait_for_original(has_buttons, timeout=10)
    assert "**INT. NIGHT BUS - NIGHT**" in final.content
    assert "**MARA**\nWe missed the last stop." in final.content
    assert "*(shrugging)*" in final.content
    assert final.attachments == []
    assert final.custom_ids == [
        "atelier:fav:1",
        "atelier:regen:1",
        "atelier:more:1",
        "atelier:del:1",
    ]


async def test_a_long_scene_is_attached_as_fountain_with_an_excerpt(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake(script=long_scene)) as bot:
        record = await emulator.invoke(
            "script", {"premise": "Keepers of the Lamp!", "length": "long"}, **world.where
        )
        final = await record.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
    assert len(final.content) <= 2000
    assert record.followups == []  # one message: excerpt plus file
    (attachment,) = final.attachments
    assert attachment.filename == "keepers-of-the-lamp.fountain"
    scene = attachment.text
    assert scene.startswith("INT. LIGHTHOUSE - NIGHT")
    assert scene.count("You said the lighthouse was empty.") == 25
    assert "**INT. LIGHTHOUSE - NIGHT**" in final.content
    assert "keepers-of-the-lamp.fountain" in final.content
    assert row.output is not None and len(row.output) > 3000


async def test_a_long_first_paragraph_still_gives_a_readable_excerpt(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    action = "The bakery is dark and the ovens still tick as they cool. " * 45  # ~2,600

    def one_long_paragraph(seq: SequenceInput) -> list[str]:
        return ["INT. BAKERY - NIGHT\n\n", action]

    async with running_bot(emulator, tmp_path, fake(script=one_long_paragraph)):
        record = await emulator.invoke("script", {"premise": "the ovens"}, **world.where)
        final = await record.wait_for_original(has_buttons, timeout=10)
    assert len(final.content) <= 2000
    body = final.content.split("**INT. BAKERY - NIGHT**", 1)[1]
    assert body.count("the ovens still tick") >= 10  # not just the heading
    excerpt, note = body.split("\n\n📎")
    assert excerpt.endswith("…") and "attached" in note  # cut inside the paragraph, marked
    (attachment,) = final.attachments
    assert attachment.text.count("the ovens still tick") == 45


async def test_no_premise_opens_a_modal_for_a_long_one(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        await bot.runtime.policy.update(world.guild_id, max_input_chars=4000)
        record = await emulator.invoke(
            "script", {"characters": "Ines", "length": "long"}, **world.where
        )
        await record.wait_for_response(timeout=5)
        modal = record.modal
        assert modal is not None
        premise_field = next(
            c["component"] for c in modal["components"] if c.get("label") == "Premise"
        )
        assert premise_field["style"] == 2 and premise_field["max_length"] == 4000

        premise = "A retired cartographer finds her own house on an old map. " * 40  # ~2,400
        submitted = await emulator.submit_modal(
            record, {"premise": premise, "genre": "mystery", "setting": "a fog-bound port"}
        )
        final = await submitted.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
    assert final.content.startswith("**Mystery scene** · *A retired cartographer")
    assert row.inputs == {
        "premise": premise.strip(),
        "characters": "Ines",  # given as an option, kept in the form
        "genre": "mystery",
        "setting": "a fog-bound port",
        "length": "long",
    }
    (turn,) = [seq.messages[-1]["content"] for seq in backend.inputs.values()]
    assert turn.count("retired cartographer") == 40


async def test_the_modal_offers_no_more_than_the_server_accepts(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        limit = (await bot.runtime.policy.settings(world.guild_id)).max_input_chars
        record = await emulator.invoke("script", {}, **world.where)
        await record.wait_for_response(timeout=5)
        assert record.modal is not None
        premise_field = next(
            c["component"] for c in record.modal["components"] if c.get("label") == "Premise"
        )
        assert premise_field["max_length"] == min(4000, limit)


async def test_continue_extends_a_scene(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=lambda seq: SHORT_SCENE)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        record = await emulator.invoke("script", {"premise": "a night bus"}, **world.where)
        final = await record.wait_for_original(has_buttons, timeout=10)
        more = await emulator.click(final.id, "atelier:more:1", user_id=world.member_id)
        await more.wait_for_original(has_buttons, timeout=10)
        child = await settled_row(bot, world.guild_id, 2)
    assert child.inputs["continue_of"] == 1
    continuation = list(backend.inputs.values())[1].messages[-1]["content"]
    assert "We missed the last stop." in continuation


@pytest.mark.model
async def test_script_on_the_real_model_writes_a_scene(
    emulator: DiscordEmulator, world: World, tmp_path: Path, loaded: LoadedModel
) -> None:
    async with running_bot(
        emulator, tmp_path, lambda s: LocalBackend(loaded, max_batch_size=2)
    ) as bot:
        record = await emulator.invoke(
            "script",
            {"premise": "a baker and a thief meet at midnight", "length": "short"},
            **world.where,
        )
        final = await record.wait_for_original(has_buttons, timeout=180)
        row = await settled_row(bot, world.guild_id, 1)
    assert final.content.startswith("**Drama scene** · *a baker and a thief meet at midnight*")
    assert row.output and len(row.output.split()) >= 10
    assert "<|im_" not in final.content
    assert final.allowed_mentions == {"parse": []}
