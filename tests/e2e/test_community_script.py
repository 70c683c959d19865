"""A community's week, scripted end to end through the emulator.

Moderators shape the server (settings, a house style and its default, a moderator
role); members create, star with the ⭐ button, page through history and the
anthology, export it; the community's favourites start to guide the model; one member
forgets themselves; finally the server removes the bot, and once the grace period is
over its data is purged. Every step goes through Discord as a member would use it,
against the real bot, engine (with a fake model) and SQLite file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bot.domain import GuildSettings
from bot.generation.backend import SequenceInput
from bot.playground.emulator import DiscordEmulator
from bot.playground.records import Message
from tests.bots import has_buttons, running_bot, settled_row, sung
from tests.e2e.test_library import (
    eventually,
    gone,
    has_left,
    ids_on,
    private_reply,
    remove_bot,
    turn,
)
from tests.e2e.test_moderation import modal_values, open_to_everyone, opened_modal
from tests.e2e.test_poem import user_turns
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World

HARBOUR_POEM = "Lamps on the black water, each one a small promise kept."


def model_script(seq: SequenceInput) -> list[str]:
    """The fake model: a fixed poem for the harbour theme, else it sings the prompt."""
    prompt = seq.messages[-1]["content"]
    if "harbour lights" in prompt and HARBOUR_POEM not in prompt:
        return ["♪ ", *(word + " " for word in HARBOUR_POEM.split())]
    return sung(seq)


async def test_a_community_week_from_first_settings_to_purge(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    guild = world.guild_id
    poetry = emulator.add_channel(guild, "poetry")
    helpers = emulator.add_role(guild, "helpers")
    hal = emulator.add_member(guild, "hal", roles=[helpers])
    ada, mira = world.member_id, world.moderator_id
    bo = emulator.add_member(guild, "bo")
    cy = emulator.add_member(guild, "cy")

    def at(user_id: int, channel_id: int = poetry) -> dict[str, int]:
        return {"guild_id": guild, "channel_id": channel_id, "user_id": user_id}

    async def create(user_id: int, command: str, **options: object) -> Message:
        record = await emulator.invoke(command, options, **at(user_id))
        return await record.wait_for_original(has_buttons, timeout=10)

    async def star(message: Message, user_id: int) -> None:
        click = await emulator.click(message.id, message.custom_ids[0], user_id=user_id)
        await click.wait_for(lambda r: any(m.ephemeral for m in r.messages), timeout=5)

    backend = FakeStepBackend(script=model_script)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        runtime = bot.runtime

        # -- Monday: mira (Manage Server) sets the server up.
        saved = await private_reply(
            await emulator.invoke(
                "settings set",
                {
                    "allow_channel": poetry,
                    "blocked_words": "gloom",
                    "community_taste": True,
                    "moderator_role": helpers,
                },
                **at(mira),
            )
        )
        assert "Saved" in saved.content
        form = await opened_modal(await emulator.invoke("style add", {}, **at(mira)))
        assert "name" in modal_values(form)
        added = await private_reply(
            await emulator.submit_modal(
                form,
                {
                    "name": "tide-song",
                    "description": "Salt, tides and lamplight",
                    "instructions": "Write of the sea at night, in a calm voice.",
                    "commands": "poem",
                },
            )
        )
        assert "`tide-song` added" in added.content
        await private_reply(
            await emulator.invoke(
                "style default",
                {"command": "poem", "style": "tide-song", "channel": poetry},
                **at(mira),
            )
        )

        # The admins let the helpers see the moderator commands; hal moderates by role.
        open_to_everyone(emulator, guild, "style")
        listing = await private_reply(await emulator.invoke("style list", {}, **at(hal)))
        assert "`tide-song`" in listing.content and f"<#{poetry}>: `tide-song`" in (listing.content)
        refused = await private_reply(await emulator.invoke("style list", {}, **at(bo)))
        assert "Only moderators" in refused.content

        # -- Tuesday: members create; the channel's default style applies.
        off_topic = await private_reply(
            await emulator.invoke("poem", {"theme": "rain"}, **at(ada, world.channel_id))
        )
        assert "not open in this channel" in off_topic.content
        harbour = await create(ada, "poem", theme="harbour lights")
        assert "🎨 tide-song" in harbour.content.split("\n")[0]
        assert HARBOUR_POEM in harbour.content
        scene = await create(bo, "script", premise="two ferrymen argue about the fog")
        await create(cy, "poem", theme="a closing bar", style="noir")
        blocked = await private_reply(
            await emulator.invoke("poem", {"theme": "the gloom of the docks"}, **at(cy))
        )
        assert "blocked" in blocked.content and "gloom" not in blocked.content

        # -- Wednesday: stars with the ⭐ button.
        await star(harbour, bo)
        await star(harbour, cy)
        await star(scene, ada)
        assert "⭐ Favourite · 2" in harbour.button_labels

        # -- Thursday: the community's taste reaches the model, for the same style only.
        await create(cy, "poem", theme="the night ferry")
        await create(cy, "poem", theme="last orders", style="noir")
        same_style, other_style = [await settled_row(bot, guild, i) for i in (4, 5)]
        assert (same_style.inputs["style"], other_style.inputs["style"]) == ("tide-song", "noir")
        assert HARBOUR_POEM in user_turns(backend)[-2]
        assert HARBOUR_POEM not in user_turns(backend)[-1]

        # -- Friday: paging, the anthology, the hall of fame, the export.
        for n in range(9):  # a busy evening: enough for a second page
            await create(ada if n % 2 else bo, "poem", theme=f"wave {n}")
        history = await private_reply(await emulator.invoke("history", {}, **at(ada)))
        assert ids_on(history) == list(range(14, 4, -1))
        await turn(emulator, history, "Older", ada)
        assert ids_on(history) == [4, 3, 2, 1]
        await turn(emulator, history, "Newer", ada)
        assert ids_on(history)[0] == 14

        favourites = await private_reply(await emulator.invoke("favourites list", {}, **at(cy)))
        assert ids_on(favourites) == [2, 1]
        hall = await private_reply(await emulator.invoke("hall-of-fame", {}, **at(cy)))
        assert ids_on(hall) == [1, 2] and "⭐ 2" in hall.content
        export = await private_reply(await emulator.invoke("favourites export", {}, **at(ada)))
        files = {a.filename: a.text for a in export.attachments}
        assert set(files) == {"anthology.md", "scripts.fountain"}
        assert HARBOUR_POEM in files["anthology.md"]
        assert "two ferrymen argue about the fog" in files["anthology.md"]

        # -- Saturday: bo forgets themselves.
        ask = await private_reply(await emulator.invoke("forget-me", {}, **at(bo)))
        confirm = await emulator.click(ask.id, f"atelier:forget:{bo}:yes", user_id=bo)
        await confirm.wait_for_response(timeout=5)
        assert "6 creations and 1 star" in ask.content
        assert await runtime.library.history(guild, user_id=bo) == []
        assert await runtime.library.stars(guild, 1) == 1  # cy's star stays
        assert await runtime.library.get(guild, 2) is None  # bo's scene, with ada's star
        hall = await private_reply(await emulator.invoke("hall-of-fame", {}, **at(cy)))
        assert ids_on(hall) == [1] and "⭐ 1" in hall.content

        # -- Sunday: the server removes the bot. Its data waits out the grace period.
        await remove_bot(emulator, guild)
        await eventually(lambda: has_left(bot, guild), "the departure is recorded")
        assert await runtime.library.history(guild)

    async with running_bot(
        emulator, tmp_path, lambda s: FakeStepBackend(), purge_after_days=0
    ) as bot:
        runtime = bot.runtime
        await eventually(lambda: gone(bot, guild), "the purge of the departed server")
        assert await runtime.requests.recent(guild) == []
        assert await runtime.policy.settings(guild) == GuildSettings()
        assert "tide-song" not in {s.name for s in await runtime.styles.available(guild, "poem")}
        assert await runtime.styles.defaults(guild) == {}
