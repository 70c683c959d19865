"""One server never sees another's library or styles, end to end.

The first server (``world``) has creations, stars, a style of its own and settings. A
second server shares one member with it (the same person in two communities) and has a
moderator of its own. Nothing the second server does — commands, copied buttons, the
shared member acting there — can see, star, delete or export the first server's
creations, or use or change its styles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.client import AtelierBot
from bot.playground.emulator import DiscordEmulator
from tests.bots import fake, forged_message, running_bot
from tests.e2e.test_library import ids_on, make_poem, private_reply, seed
from tests.e2e.test_poem import add_style

if TYPE_CHECKING:
    from conftest import World


@dataclass(frozen=True)
class Elsewhere:
    guild_id: int
    channel_id: int
    moderator_id: int
    shared_id: int  # the first server's member, here too

    def by(self, user_id: int) -> dict[str, int]:
        return {"guild_id": self.guild_id, "channel_id": self.channel_id, "user_id": user_id}


def second_server(emulator: DiscordEmulator, world: World) -> Elsewhere:
    guild = emulator.add_guild("Elsewhere")
    return Elsewhere(
        guild_id=guild,
        channel_id=emulator.add_channel(guild, "general"),
        moderator_id=emulator.add_member(guild, "zed", manage_guild=True),
        shared_id=emulator.add_member(guild, "ada", user_id=world.member_id),
    )


async def first_servers_library(emulator: DiscordEmulator, world: World, bot: AtelierBot) -> None:
    """#1 a poem by ada (starred twice), #2 a scene by the moderator (starred once),
    a style of the server's own, and a cooldown."""
    await make_poem(emulator, world.where, "lanterns on the river")
    await seed(
        bot,
        world.guild_id,
        world.channel_id,
        world.moderator_id,
        "script",
        {"premise": "a lighthouse keeper", "length": "short"},
        output="INT. LIGHTHOUSE - NIGHT\n\nKEEPER\nThe lamp is out.",
    )
    library = bot.runtime.library
    await library.toggle_favourite(world.guild_id, 1, world.member_id)
    await library.toggle_favourite(world.guild_id, 1, world.moderator_id)
    await library.toggle_favourite(world.guild_id, 2, world.member_id)
    await add_style(bot, world.guild_id, "harbour-noir", instructions="Smoke and neon.")
    await bot.runtime.policy.update(world.guild_id, cooldown_s=45)


async def test_a_second_server_cannot_see_star_delete_or_export_the_firsts_creations(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    there = second_server(emulator, world)
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await first_servers_library(emulator, world, bot)
        library = bot.runtime.library

        for who in (there.moderator_id, there.shared_id):
            history = await private_reply(await emulator.invoke("history", {}, **there.by(who)))
            assert ids_on(history) == [] and "Nothing here yet" in history.content
            theirs = await private_reply(
                await emulator.invoke("history", {"member": world.member_id}, **there.by(who))
            )
            assert ids_on(theirs) == []
            for request_id in (1, 2):
                shown = await private_reply(
                    await emulator.invoke("show", {"id": request_id}, **there.by(who))
                )
                assert f"can't find creation #{request_id}" in shown.content
            favourites = await private_reply(
                await emulator.invoke("favourites list", {}, **there.by(who))
            )
            assert ids_on(favourites) == []
            hall = await private_reply(await emulator.invoke("hall-of-fame", {}, **there.by(who)))
            assert ids_on(hall) == []
            for options in ({}, {"member": world.member_id}):
                export = await private_reply(
                    await emulator.invoke("favourites export", options, **there.by(who))
                )
                assert export.attachments == [] and "nothing in" in export.content

        # Copied buttons: the ids travel, the server they are clicked in decides.
        copied = forged_message(
            emulator, there.channel_id, ["atelier:fav:1", "atelier:del:1", "atelier:del:2"]
        )
        for custom_id in copied.custom_ids:
            for who in (there.moderator_id, there.shared_id):  # the author, here, too
                attempt = await emulator.click(copied.id, custom_id, user_id=who)
                answer = await private_reply(attempt)
                assert "can't find creation" in answer.content
        for pager in (
            f"atelier:hist:{world.member_id}:*:o99",
            f"atelier:favs:{world.member_id}:*:o9999999999999999.99",
            "atelier:hof:*:0",
        ):
            page = forged_message(emulator, there.channel_id, [pager])
            click = await emulator.click(page.id, pager, user_id=there.moderator_id)
            await click.wait_for_response(timeout=5)
            assert ids_on(page) == [] and "#" not in page.content, page.content

        # The shared member forgetting themselves there leaves the first server alone.
        ask = await private_reply(
            await emulator.invoke("forget-me", {}, **there.by(there.shared_id))
        )
        confirm = await emulator.click(
            ask.id, f"atelier:forget:{world.member_id}:yes", user_id=there.shared_id
        )
        await confirm.wait_for_response(timeout=5)
        assert "0 creations and 0 stars" in ask.content

        assert [r.id for r in await library.history(world.guild_id)] == [2, 1]
        assert (await library.stars(world.guild_id, 1), await library.stars(world.guild_id, 2)) == (
            2,
            1,
        )
        files = dict(await library.export(world.guild_id))
        assert "The lamp is out." in files["anthology.md"].decode()
        assert await library.history(there.guild_id) == []


async def test_a_second_server_cannot_use_or_change_the_firsts_styles_or_settings(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    there = second_server(emulator, world)
    mod_there = there.by(there.moderator_id)
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await first_servers_library(emulator, world, bot)
        styles = bot.runtime.styles

        refused = await private_reply(
            await emulator.invoke(
                "poem", {"theme": "a pier", "style": "harbour-noir"}, **there.by(there.shared_id)
            )
        )
        assert "no style called `harbour-noir`" in refused.content
        listing = await private_reply(await emulator.invoke("style list", {}, **mod_there))
        assert "harbour-noir" not in listing.content and "`noir`" in listing.content
        offered = await emulator.autocomplete(
            "style edit", {"name": "harb"}, focused="name", **mod_there
        )
        await offered.wait_for_response(timeout=5)
        assert offered.choices == []
        for name, options in (
            ("style edit", {"name": "harbour-noir"}),
            ("style remove", {"name": "harbour-noir"}),
            ("style preview", {"name": "harbour-noir"}),
        ):
            answer = await private_reply(await emulator.invoke(name, options, **mod_there))
            assert "no style called `harbour-noir`" in answer.content, name
        default = await private_reply(
            await emulator.invoke(
                "style default", {"command": "poem", "style": "harbour-noir"}, **mod_there
            )
        )
        assert "no style called `harbour-noir`" in default.content

        # What the second server changes stays there.
        await private_reply(await emulator.invoke("style remove", {"name": "noir"}, **mod_there))
        await private_reply(
            await emulator.invoke("settings set", {"blocked_words": "lantern"}, **mod_there)
        )
        shown = await private_reply(await emulator.invoke("settings show", {}, **mod_there))
        assert "Cooldown per member (`cooldown_seconds`): none" in shown.content

        assert await styles.get(world.guild_id, "harbour-noir") is not None
        assert await styles.get(world.guild_id, "noir") is not None
        assert await styles.get(there.guild_id, "noir") is None
        assert await styles.defaults(there.guild_id) == {}
        first = await bot.runtime.policy.settings(world.guild_id)
        assert (first.cooldown_s, first.blocked_words) == (45, ())
        assert await bot.runtime.requests.recent(there.guild_id) == []  # no preview ran
