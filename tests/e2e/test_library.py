"""The library end to end: /history, /show, /favourites list|export, /hall-of-fame,
/forget-me, and the servers the bot joins and leaves (with the purge of departed ones).

The real AtelierBot over loopback against the emulator, on a real SQLite file. Long
lists are seeded through the real repositories (a few dozen generations through the
fake model would only make the tests slow); everything else goes through commands.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.client import AtelierBot
from bot.domain import NewRequest, RequestRecord, RequestStatus
from bot.playground.emulator import DiscordEmulator
from bot.playground.records import InteractionRecord, Message
from tests.bots import fake, forged_message, has_buttons, running_bot

if TYPE_CHECKING:
    from conftest import World


# ------------------------------------------------------------------ shared helpers


async def seed(
    bot: AtelierBot,
    guild_id: int,
    channel_id: int,
    user_id: int,
    command: str = "poem",
    inputs: Mapping[str, Any] | None = None,
    *,
    output: str = "Rain on the roof,\nall night long.",
    status: RequestStatus = RequestStatus.DONE,
) -> RequestRecord:
    """A creation as a finished, delivered command leaves it (without the generation)."""
    requests = bot.runtime.requests
    record = await requests.create(
        NewRequest(
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            command=command,
            inputs=dict(inputs or {"theme": "rain", "form": "free verse", "length": "medium"}),
        )
    )
    await requests.mark_running(record.id)
    await requests.finish(
        record.id, status, output=output if status is RequestStatus.DONE else None
    )
    await requests.mark_delivered(record.id)  # else a restart would deliver it again
    return record


async def reply(record: InteractionRecord) -> Message:
    """The bot's answer to a command (its original response, filled in)."""
    return await record.wait_for_original(timeout=10)


async def private_reply(record: InteractionRecord) -> Message:
    message = await reply(record)
    assert message.ephemeral, message.content
    return message


def ids_on(message: Message) -> list[int]:
    """The creation numbers a list shows, in order."""
    return [int(n) for n in re.findall(r"`#(\d+)`", message.content)]


def arrows(message: Message) -> dict[str, bool]:
    """Which of ◀ (Newer) and ▶ (Older) can be pressed."""
    return {b.label or "": not b.disabled for b in message.buttons}


async def turn(emulator: DiscordEmulator, page: Message, label: str, user_id: int) -> Message:
    """Press ◀ Newer or ▶ Older; the page is edited in place."""
    button = next(b for b in page.buttons if b.label == label)
    assert button.custom_id is not None and len(button.custom_id) <= 100
    before = len(page.revisions)
    click = await emulator.click(page.id, button.custom_id, user_id=user_id)
    await click.wait_for(lambda r: r.responded and len(page.revisions) > before, timeout=5)
    return page


def never_pings(message: Message) -> None:
    assert message.allowed_mentions == {"parse": []}, message.allowed_mentions
    assert message.pinged_user_ids == [] and not message.pings_everyone


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded) for something the bot does in the background."""
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def make_poem(emulator: DiscordEmulator, where: Mapping[str, int], theme: str) -> Message:
    record = await emulator.invoke("poem", {"theme": theme}, **where)
    return await record.wait_for_original(has_buttons, timeout=10)


# -------------------------------------------------------------------------- /history


async def test_history_pages_back_and_forth_with_filters(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    bo = emulator.add_member(world.guild_id, "bo")
    async with running_bot(emulator, tmp_path, fake()) as bot:
        for n in range(1, 24):  # every third a scene by bo, the rest poems by ada
            if n % 3 == 0:
                await seed(
                    bot, world.guild_id, world.channel_id, bo, "script", {"premise": f"p{n}"}
                )
            else:
                await seed(bot, world.guild_id, world.channel_id, world.member_id)

        page = await private_reply(await emulator.invoke("history", {}, **world.where))
        assert ids_on(page) == list(range(23, 13, -1))
        assert arrows(page) == {"Newer": False, "Older": True}
        assert f"<@{bo}>" in page.content and f"<@{world.member_id}>" in page.content
        never_pings(page)

        await turn(emulator, page, "Older", world.member_id)
        assert ids_on(page) == list(range(13, 3, -1))
        assert arrows(page) == {"Newer": True, "Older": True}
        await turn(emulator, page, "Older", world.member_id)
        assert ids_on(page) == [3, 2, 1]
        assert arrows(page) == {"Newer": True, "Older": False}
        await turn(emulator, page, "Newer", world.member_id)
        assert ids_on(page) == list(range(13, 3, -1))
        await turn(emulator, page, "Newer", world.member_id)
        assert ids_on(page) == list(range(23, 13, -1))
        assert arrows(page) == {"Newer": False, "Older": True}
        assert page.ephemeral and not page.deleted

        poems = await private_reply(
            await emulator.invoke(
                "history", {"member": world.member_id, "command": "poem"}, **world.where
            )
        )
        ada_poems = [n for n in range(23, 0, -1) if n % 3]
        assert ids_on(poems) == ada_poems[:10]
        # The filters travel in the buttons' custom_ids.
        assert all(f":{world.member_id}:poem:" in c for c in poems.custom_ids)
        await turn(emulator, poems, "Older", world.member_id)
        assert ids_on(poems) == ada_poems[10:]
        assert arrows(poems) == {"Newer": True, "Older": False}
        await turn(emulator, poems, "Newer", world.member_id)
        assert ids_on(poems) == ada_poems[:10]

        scenes = await private_reply(
            await emulator.invoke("history", {"command": "script"}, **world.where)
        )
        assert ids_on(scenes) == [21, 18, 15, 12, 9, 6, 3]
        assert arrows(scenes) == {"Newer": False, "Older": False}
        assert "*p21*" in scenes.content and "Scene" in scenes.content


async def test_history_pages_keep_working_after_a_restart(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        for _ in range(12):
            await seed(bot, world.guild_id, world.channel_id, world.member_id)
        page = await private_reply(await emulator.invoke("history", {}, **world.where))

    async with running_bot(emulator, tmp_path, fake()):
        await turn(emulator, page, "Older", world.member_id)
    assert ids_on(page) == [2, 1]


async def test_history_is_empty_in_a_new_server(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()):
        page = await private_reply(await emulator.invoke("history", {}, **world.where))
    assert "Nothing here yet" in page.content
    assert arrows(page) == {"Newer": False, "Older": False}


# ----------------------------------------------------------------------------- /show


async def test_show_reposts_a_creation_with_live_buttons_and_its_stars(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        original = await make_poem(emulator, world.where, "lanterns on the river")
        await bot.runtime.library.toggle_favourite(world.guild_id, 1, world.moderator_id)

        shown = await reply(
            await emulator.invoke(
                "show", {"id": 1}, **{**world.where, "user_id": world.moderator_id}
            )
        )
        assert not shown.ephemeral and shown.id != original.id
        assert shown.content == original.content
        assert shown.custom_ids == original.custom_ids
        assert "⭐ Favourite · 1" in shown.button_labels
        never_pings(shown)

        star = await emulator.click(shown.id, "atelier:fav:1", user_id=world.member_id)
        await star.wait_for_response(timeout=5)
        assert await bot.runtime.library.stars(world.guild_id, 1) == 2

        missing = await private_reply(await emulator.invoke("show", {"id": 99}, **world.where))
        assert "can't find creation #99" in missing.content

        await seed(
            bot, world.guild_id, world.channel_id, world.member_id, status=RequestStatus.FAILED
        )
        failed = await private_reply(await emulator.invoke("show", {"id": 2}, **world.where))
        assert "did not finish (failed)" in failed.content


async def test_show_follows_the_servers_channel_rules(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    poetry = emulator.add_channel(world.guild_id, "poetry")
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await seed(bot, world.guild_id, poetry, world.member_id)
        await bot.runtime.policy.update(world.guild_id, allowed_channel_ids=[poetry])
        refused = await private_reply(await emulator.invoke("show", {"id": 1}, **world.where))
        assert f"<#{poetry}>" in refused.content
        allowed = await reply(
            await emulator.invoke("show", {"id": 1}, **{**world.where, "channel_id": poetry})
        )
    assert not allowed.ephemeral and "all night long" in allowed.content


# ----------------------------------------------------------------------- favourites


async def test_favourites_list_shows_starred_creations_newest_star_first(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await make_poem(emulator, world.where, "first snow")
        scene = await emulator.invoke("script", {"premise": "a lighthouse keeper"}, **world.where)
        await scene.wait_for_original(has_buttons, timeout=10)
        await make_poem(emulator, world.where, "never starred")
        library = bot.runtime.library
        await library.toggle_favourite(world.guild_id, 1, world.member_id)
        await library.toggle_favourite(world.guild_id, 2, world.member_id)
        await library.toggle_favourite(world.guild_id, 1, world.moderator_id)

        page = await private_reply(await emulator.invoke("favourites list", {}, **world.where))
        assert ids_on(page) == [1, 2]
        assert "first snow" in page.content and "⭐ 2" in page.content
        assert "never starred" not in page.content
        assert arrows(page) == {"Newer": False, "Older": False}
        never_pings(page)

        scenes = await private_reply(
            await emulator.invoke("favourites list", {"command": "script"}, **world.where)
        )
        assert ids_on(scenes) == [2]
        nobody = emulator.add_member(world.guild_id, "cy")
        theirs = await private_reply(
            await emulator.invoke("favourites list", {"member": nobody}, **world.where)
        )
        assert ids_on(theirs) == [] and "No favourites yet" in theirs.content


async def test_favourites_pages_back_and_forth(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        for _ in range(13):
            record = await seed(bot, world.guild_id, world.channel_id, world.member_id)
            await bot.runtime.library.toggle_favourite(world.guild_id, record.id, world.member_id)

        page = await private_reply(await emulator.invoke("favourites list", {}, **world.where))
        assert ids_on(page) == list(range(13, 3, -1))
        assert all(len(c) <= 100 for c in page.custom_ids)
        await turn(emulator, page, "Older", world.member_id)
        assert ids_on(page) == [3, 2, 1]
        assert arrows(page) == {"Newer": True, "Older": False}
        await turn(emulator, page, "Newer", world.member_id)
        assert ids_on(page) == list(range(13, 3, -1))
        assert arrows(page) == {"Newer": False, "Older": True}


async def test_favourites_export_attaches_the_anthology_and_the_scenes(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await seed(
            bot,
            world.guild_id,
            world.channel_id,
            world.member_id,
            output="Moths at the lamp,\nthe whole night humming.",
        )
        await seed(
            bot,
            world.guild_id,
            world.channel_id,
            world.moderator_id,
            "script",
            {"premise": "a lighthouse keeper", "length": "short"},
            output="INT. LIGHTHOUSE - NIGHT\n\nKEEPER\nThe lamp is out.",
        )
        await seed(bot, world.guild_id, world.channel_id, world.member_id, output="Unstarred.")
        for request_id in (1, 2):
            await bot.runtime.library.toggle_favourite(world.guild_id, request_id, world.member_id)

        export = await private_reply(await emulator.invoke("favourites export", {}, **world.where))
        files = {a.filename: a.text for a in export.attachments}
        assert set(files) == {"anthology.md", "scripts.fountain"}
        anthology = files["anthology.md"]
        assert "Moths at the lamp" in anthology and "The lamp is out." in anthology
        assert "Unstarred." not in anthology
        assert "a lighthouse keeper" in anthology
        assert "KEEPER" in files["scripts.fountain"]
        assert "Moths" not in files["scripts.fountain"]
        never_pings(export)

        mine = await private_reply(
            await emulator.invoke(
                "favourites export", {"member": world.member_id, "command": "poem"}, **world.where
            )
        )
        assert [a.filename for a in mine.attachments] == ["anthology.md"]
        assert "The lamp is out." not in mine.attachments[0].text

        empty = await private_reply(
            await emulator.invoke("favourites export", {"command": "critique"}, **world.where)
        )
        assert empty.attachments == [] and "nothing in this server's anthology" in empty.content


# ---------------------------------------------------------------------- hall of fame


async def test_hall_of_fame_ranks_by_stars(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        for _ in range(3):
            await seed(bot, world.guild_id, world.channel_id, world.member_id)
        fans = [emulator.add_member(world.guild_id, f"fan{i}") for i in range(3)]
        for request_id, stars in ((1, 1), (2, 3), (3, 2)):
            for fan in fans[:stars]:
                await bot.runtime.library.toggle_favourite(world.guild_id, request_id, fan)

        hall = await private_reply(await emulator.invoke("hall-of-fame", {}, **world.where))
        assert ids_on(hall) == [2, 3, 1]
        assert re.search(r"1\. `#2`.*⭐ 3", hall.content)
        assert arrows(hall) == {"Previous": False, "Next": False}
        never_pings(hall)

        scenes = await private_reply(
            await emulator.invoke("hall-of-fame", {"command": "script"}, **world.where)
        )
        assert ids_on(scenes) == [] and "Nothing starred yet" in scenes.content


async def test_hall_of_fame_pages_by_rank(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        for _ in range(12):
            record = await seed(bot, world.guild_id, world.channel_id, world.member_id)
            await bot.runtime.library.toggle_favourite(world.guild_id, record.id, world.member_id)
        hall = await private_reply(await emulator.invoke("hall-of-fame", {}, **world.where))
        assert ids_on(hall) == list(range(12, 2, -1))  # equal stars: newest first
        await turn(emulator, hall, "Next", world.member_id)
        assert ids_on(hall) == [2, 1] and "11. `#2`" in hall.content
        await turn(emulator, hall, "Previous", world.member_id)
        assert ids_on(hall) == list(range(12, 2, -1))


# ------------------------------------------------------------------------ /forget-me


async def test_forget_me_asks_first_and_keeping_deletes_nothing(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await seed(bot, world.guild_id, world.channel_id, world.member_id)
        ask = await private_reply(await emulator.invoke("forget-me", {}, **world.where))
        assert "cannot be undone" in ask.content
        assert ask.custom_ids == [
            f"atelier:forget:{world.member_id}:yes",
            f"atelier:forget:{world.member_id}:no",
        ]
        keep = await emulator.click(
            ask.id, f"atelier:forget:{world.member_id}:no", user_id=world.member_id
        )
        await keep.wait_for_response(timeout=5)
        assert "Nothing was deleted" in ask.content and ask.buttons == []
        assert await bot.runtime.requests.get(world.guild_id, 1) is not None


async def test_forget_me_confirmed_deletes_the_members_requests_and_stars_only(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    bo = emulator.add_member(world.guild_id, "bo")
    async with running_bot(emulator, tmp_path, fake()) as bot:
        library = bot.runtime.library
        for _ in range(2):
            await seed(bot, world.guild_id, world.channel_id, world.member_id)
        theirs = await seed(bot, world.guild_id, world.channel_id, bo)
        await library.toggle_favourite(world.guild_id, theirs.id, world.member_id)
        await library.toggle_favourite(world.guild_id, theirs.id, bo)
        await library.toggle_favourite(world.guild_id, 1, bo)

        ask = await private_reply(await emulator.invoke("forget-me", {}, **world.where))
        confirm = await emulator.click(
            ask.id, f"atelier:forget:{world.member_id}:yes", user_id=world.member_id
        )
        await confirm.wait_for_response(timeout=5)
        assert "2 creations and 1 star" in ask.content and ask.buttons == []

        assert await library.history(world.guild_id, user_id=world.member_id) == []
        assert [r.id for r in await library.history(world.guild_id)] == [theirs.id]
        assert await library.stars(world.guild_id, theirs.id) == 1  # bo's own star stays


async def test_a_copied_forget_me_button_cannot_forget_someone_else(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await seed(bot, world.guild_id, world.channel_id, world.member_id)
        copied = forged_message(
            emulator, world.channel_id, [f"atelier:forget:{world.member_id}:yes"]
        )
        attempt = await emulator.click(copied.id, copied.custom_ids[0], user_id=world.moderator_id)
        answer = await private_reply(attempt)
        assert "someone else's" in answer.content
        assert await bot.runtime.requests.get(world.guild_id, 1) is not None


# ------------------------------------------------------------- servers come and go


async def test_joining_and_leaving_servers_is_recorded_and_departed_ones_are_purged(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        guilds = bot.runtime.guilds
        await eventually(lambda: is_member(bot, world.guild_id), "the ready sync")
        newcomer = emulator.add_guild("Newcomers")
        await eventually(lambda: is_member(bot, newcomer), "on_guild_join")
        await seed(bot, world.guild_id, world.channel_id, world.member_id)

        await remove_bot(emulator, world.guild_id)
        await eventually(lambda: has_left(bot, world.guild_id), "on_guild_remove")
        assert (await guilds.get(newcomer)) is not None

    # Removed from the newcomer while offline: the ready sync notices. Kept for
    # purge_after_days (30 by default), so nothing is purged yet.
    emulator.guilds.pop(newcomer)
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await eventually(lambda: has_left(bot, newcomer), "the ready sync")
        assert await has_left(bot, world.guild_id)
        assert await bot.runtime.requests.get(world.guild_id, 1) is not None

    # Once they are older than purge_after_days, the purge at start removes them.
    async with running_bot(emulator, tmp_path, fake(), purge_after_days=0) as bot:
        await eventually(lambda: gone(bot, world.guild_id), "the purge of a departed server")
        await eventually(lambda: gone(bot, newcomer), "the purge of a departed server")
        assert await bot.runtime.requests.get(world.guild_id, 1) is None


async def remove_bot(emulator: DiscordEmulator, guild_id: int) -> None:
    """The server kicks the bot: Discord drops the guild and sends GUILD_DELETE (the
    emulator has no driver for this yet)."""
    emulator.guilds.pop(guild_id)
    await emulator.gateway.dispatch("GUILD_DELETE", {"id": str(guild_id)}, guild_id=guild_id)


async def is_member(bot: AtelierBot, guild_id: int) -> bool:
    record = await bot.runtime.guilds.get(guild_id)
    return record is not None and record.is_member


async def has_left(bot: AtelierBot, guild_id: int) -> bool:
    record = await bot.runtime.guilds.get(guild_id)
    return record is not None and not record.is_member


async def gone(bot: AtelierBot, guild_id: int) -> bool:
    return await bot.runtime.guilds.get(guild_id) is None
