"""Moderator commands end to end: /style add|edit|remove|list|preview|default and
/settings show|set, the bot-side permission check, and settings taking effect.

Discord hides the moderator commands from members (default_member_permissions =
Manage Server) and the emulator enforces that. A server's admins can override it
(Server Settings → Integrations); ``open_to_everyone`` does what such an override
does, so the tests can show that the bot refuses on its own side as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bot.domain import GuildSettings
from bot.generation.backend import SequenceInput
from bot.playground.emulator import CommandUnavailable, DiscordEmulator
from bot.playground.records import InteractionRecord, Message
from tests.bots import fake, has_buttons, running_bot, settled_row, sung
from tests.e2e.test_library import private_reply
from tests.e2e.test_poem import add_style, user_turns
from tests.fakes import FakeStepBackend

if TYPE_CHECKING:
    from conftest import World


def open_to_everyone(emulator: DiscordEmulator, guild_id: int, name: str) -> None:
    """An admin lets every member use /name (an Integrations override): Discord then
    shows and sends the command whatever its default_member_permissions say."""
    command = emulator.find_command(name, guild_id)
    assert command is not None and command["default_member_permissions"] is not None
    command["default_member_permissions"] = None


def as_moderator(world: World) -> dict[str, int]:
    return {**world.where, "user_id": world.moderator_id}


def modal_values(record: InteractionRecord) -> dict[str, str]:
    """The text inputs of the modal the bot showed, by custom_id, with their prefill."""
    modal = record.modal
    assert modal is not None, record.describe()
    values = {}
    for top in modal["components"]:
        inputs = top.get("components") or [top.get("component")]
        for component in inputs:
            values[component["custom_id"]] = component.get("value") or ""
    return values


async def opened_modal(record: InteractionRecord) -> InteractionRecord:
    await record.wait_for_response(timeout=5)
    assert record.modal is not None, record.describe()
    return record


async def choice_values(record: InteractionRecord) -> list[str]:
    await record.wait_for_response(timeout=5)
    assert record.choices is not None
    return [choice["value"] for choice in record.choices]


NOIR_FORM = {
    "name": "Film Noir",
    "description": "Rain, neon and a tired narrator",
    "instructions": "Short sentences. Night, rain and neon.",
    "example": "The rain had a grudge.",
    "commands": "poem, /script",
}


# ---------------------------------------------------------------------------- /style


async def test_style_add_opens_a_form_and_members_can_then_pick_the_style(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        form = await opened_modal(
            await emulator.invoke("style add", {"mature": False}, **as_moderator(world))
        )
        assert set(modal_values(form)) == {
            "name",
            "description",
            "instructions",
            "example",
            "commands",
        }
        saved = await private_reply(await emulator.submit_modal(form, NOIR_FORM))
        assert "`film-noir` added" in saved.content

        style = await bot.runtime.styles.get(world.guild_id, "film-noir")
        assert style is not None
        assert style.commands == frozenset({"poem", "script"})
        assert (style.updated_by, style.example) == (world.moderator_id, "The rain had a grudge.")

        picked = await choice_values(
            await emulator.autocomplete(
                "poem", {"theme": "x", "style": "film"}, focused="style", **world.where
            )
        )
        assert picked == ["film-noir"]
        record = await emulator.invoke(
            "poem", {"theme": "a pier", "style": "film-noir"}, **world.where
        )
        await record.wait_for_original(has_buttons, timeout=10)
        row = await settled_row(bot, world.guild_id, 1)
    assert row.inputs["style"] == "film-noir"
    assert "Short sentences. Night, rain and neon." in user_turns(backend)[0]


async def test_style_add_says_what_is_wrong_with_the_form(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        form = await opened_modal(await emulator.invoke("style add", {}, **as_moderator(world)))
        refused = await private_reply(
            await emulator.submit_modal(form, {**NOIR_FORM, "commands": "poem, haiku"})
        )
        assert "not to haiku" in refused.content
        taken = await opened_modal(await emulator.invoke("style add", {}, **as_moderator(world)))
        clash = await private_reply(
            await emulator.submit_modal(taken, {**NOIR_FORM, "name": "noir"})
        )
        assert "already exists" in clash.content
        assert await bot.runtime.styles.get(world.guild_id, "film-noir") is None


async def test_style_edit_prefills_the_form_and_overrides_a_builtin_here_only(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    other_guild = emulator.add_guild("Elsewhere")
    async with running_bot(emulator, tmp_path, fake()) as bot:
        noir = await bot.runtime.styles.get(world.guild_id, "noir")
        assert noir is not None and noir.builtin

        offered = await choice_values(
            await emulator.autocomplete(
                "style edit", {"name": "no"}, focused="name", **as_moderator(world)
            )
        )
        assert "noir" in offered

        form = await opened_modal(
            await emulator.invoke("style edit", {"name": "noir"}, **as_moderator(world))
        )
        prefilled = modal_values(form)
        assert "name" not in prefilled  # the name is fixed while editing
        assert prefilled["instructions"] == noir.instructions
        assert prefilled["commands"] == "poem, script"
        saved = await private_reply(
            await emulator.submit_modal(form, {"description": "Our own noir, moodier"})
        )
        assert "`noir` saved" in saved.content

        here = await bot.runtime.styles.get(world.guild_id, "noir")
        there = await bot.runtime.styles.get(other_guild, "noir")
    assert here is not None and not here.builtin
    assert here.description == "Our own noir, moodier"
    assert here.instructions == noir.instructions  # untouched fields keep their text
    assert there == noir


async def test_style_remove_hides_a_builtin_and_deletes_a_servers_own(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await add_style(bot, world.guild_id, "harbour-noir")
        removed = await private_reply(
            await emulator.invoke("style remove", {"name": "harbour-noir"}, **as_moderator(world))
        )
        assert "`harbour-noir` removed" in removed.content
        hidden = await private_reply(
            await emulator.invoke("style remove", {"name": "noir"}, **as_moderator(world))
        )
        assert "built-in style `noir` is hidden" in hidden.content
        unknown = await private_reply(
            await emulator.invoke("style remove", {"name": "nope"}, **as_moderator(world))
        )
        assert "no style called `nope`" in unknown.content

        listing = await private_reply(
            await emulator.invoke("style list", {}, **as_moderator(world))
        )
        assert "Hidden built-ins: `noir`" in listing.content
        assert "`romantic`" in listing.content and "harbour-noir" not in listing.content
        assert await bot.runtime.styles.get(world.guild_id, "noir") is None


async def test_style_list_shows_origins_and_defaults(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await add_style(bot, world.guild_id, "after-hours", mature=True, commands=("poem",))
        await bot.runtime.styles.set_default(world.guild_id, "poem", None, "after-hours")
        await bot.runtime.styles.set_default(world.guild_id, "script", world.channel_id, "noir")
        listing = await private_reply(
            await emulator.invoke("style list", {}, **as_moderator(world))
        )
    assert "`after-hours`" in listing.content and "this server's; /poem · 🔞 mature" in (
        listing.content
    )
    assert "`romantic`" in listing.content and "built in" in listing.content
    assert "/poem in the whole server: `after-hours`" in listing.content
    assert f"/script in <#{world.channel_id}>: `noir`" in listing.content


async def test_style_default_sets_and_clears_per_server_and_per_channel(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await add_style(bot, world.guild_id, "stage-only", commands=("script",))
        offered = await choice_values(
            await emulator.autocomplete(
                "style default",
                {"command": "poem", "style": ""},
                focused="style",
                **as_moderator(world),
            )
        )
        assert offered[0] == "none" and "romantic" in offered and "stage-only" not in offered

        styles = bot.runtime.styles
        done = await private_reply(
            await emulator.invoke(
                "style default", {"command": "poem", "style": "romantic"}, **as_moderator(world)
            )
        )
        assert "`romantic`" in done.content
        await private_reply(
            await emulator.invoke(
                "style default",
                {"command": "poem", "style": "noir", "channel": world.nsfw_channel_id},
                **as_moderator(world),
            )
        )
        resolved = await styles.resolve(world.guild_id, world.channel_id, "poem", None)
        in_channel = await styles.resolve(world.guild_id, world.nsfw_channel_id, "poem", None)
        assert (resolved and resolved.name, in_channel and in_channel.name) == ("romantic", "noir")

        record = await emulator.invoke("poem", {"theme": "a pier"}, **world.where)
        await record.wait_for_original(has_buttons, timeout=10)
        assert (await settled_row(bot, world.guild_id, 1)).inputs["style"] == "romantic"

        wrong = await private_reply(
            await emulator.invoke(
                "style default",
                {"command": "poem", "style": "stage-only"},
                **as_moderator(world),
            )
        )
        assert "not /poem" in wrong.content
        cleared = await private_reply(
            await emulator.invoke(
                "style default", {"command": "poem", "style": "none"}, **as_moderator(world)
            )
        )
        assert "no default style" in cleared.content
        assert await styles.resolve(world.guild_id, world.channel_id, "poem", None) is None


async def test_style_preview_writes_a_sample_in_that_style(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    backend = FakeStepBackend(script=sung)
    async with running_bot(emulator, tmp_path, lambda s: backend) as bot:
        await add_style(
            bot, world.guild_id, "stage-only", commands=("script",), instructions="Whisper."
        )
        preview = await emulator.invoke(
            "style preview", {"name": "noir", "theme": "a wet street"}, **as_moderator(world)
        )
        sample = await preview.wait_for_original(has_buttons, timeout=10)
        scene = await emulator.invoke(
            "style preview", {"name": "stage-only"}, **as_moderator(world)
        )
        await scene.wait_for_original(has_buttons, timeout=10)
        poem, script = [await settled_row(bot, world.guild_id, i) for i in (1, 2)]
    assert not sample.ephemeral and "🎨 noir" in sample.content.split("\n")[0]
    assert (poem.command, poem.inputs["style"], poem.inputs["theme"]) == (
        "poem",
        "noir",
        "a wet street",
    )
    assert (script.command, script.inputs["style"]) == ("script", "stage-only")
    assert "Whisper." in user_turns(backend)[1]


# ------------------------------------------------------------------------- /settings


async def test_settings_show_and_set_each_option(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    poetry = emulator.add_channel(world.guild_id, "poetry")
    prose = emulator.add_channel(world.guild_id, "prose")
    helpers = emulator.add_role(world.guild_id, "helpers")
    async with running_bot(emulator, tmp_path, fake()) as bot:
        shown = await private_reply(
            await emulator.invoke("settings show", {}, **as_moderator(world))
        )
        assert "every channel" in shown.content and "Cooldown per member" in shown.content

        saved = await private_reply(
            await emulator.invoke(
                "settings set",
                {
                    "allow_channel": poetry,
                    "cooldown_seconds": 30,
                    "max_in_flight": 3,
                    "max_queued": 1,
                    "max_input_chars": 300,
                    "blocked_words": "Moon, tide pool",
                    "mature_only_in_age_restricted": False,
                    "critique_opt_in": False,
                    "community_taste": True,
                    "moderator_role": helpers,
                },
                **as_moderator(world),
            )
        )
        assert "Saved" in saved.content and f"<#{poetry}>" in saved.content
        assert "||moon||, ||tide pool||" in saved.content
        assert f"<@&{helpers}>" in saved.content and saved.pinged_user_ids == []
        assert saved.allowed_mentions == {"parse": []}
        settings = await bot.runtime.policy.settings(world.guild_id)
        assert settings == GuildSettings(
            allowed_channel_ids=frozenset({poetry}),
            cooldown_s=30,
            max_in_flight=3,
            max_queued=1,
            max_input_chars=300,
            blocked_words=("moon", "tide pool"),
            mature_only_in_age_restricted=False,
            critique_opt_in=False,
            community_taste=True,
            moderator_role_id=helpers,
        )

        async def set_(**options: Any) -> Message:
            return await private_reply(
                await emulator.invoke("settings set", options, **as_moderator(world))
            )

        await set_(allow_channel=prose)
        await set_(disallow_channel=poetry)
        assert (await bot.runtime.policy.settings(world.guild_id)).allowed_channel_ids == {prose}
        last = await set_(disallow_channel=prose)
        assert "only creative channel" in last.content
        await set_(allow_all_channels=True, blocked_words="-", clear_moderator_role=True)
        settings = await bot.runtime.policy.settings(world.guild_id)
        assert settings.allowed_channel_ids == frozenset() and settings.blocked_words == ()
        assert settings.moderator_role_id is None

        assert "at least one option" in (await set_()).content
        assert "from 1 to 10" in (await set_(max_in_flight=50)).content
        everyone = await set_(moderator_role=world.guild_id)  # @everyone shares the guild id
        assert "every member would be a moderator" in everyone.content
        assert (await bot.runtime.policy.settings(world.guild_id)).max_in_flight == 3


# ---------------------------------------------------------------------- permissions

MODERATOR_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("style add", {}),
    ("style edit", {"name": "noir"}),
    ("style remove", {"name": "noir"}),
    ("style list", {}),
    ("style preview", {"name": "noir"}),
    ("style default", {"command": "poem", "style": "noir"}),
    ("settings show", {}),
    ("settings set", {"cooldown_seconds": 5}),
]


async def test_discord_hides_the_moderator_commands_from_members(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()):
        for name, options in MODERATOR_COMMANDS:
            with pytest.raises(CommandUnavailable):
                await emulator.invoke(name, options, **world.where)


async def test_a_member_is_refused_even_when_discord_shows_them_the_commands(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        open_to_everyone(emulator, world.guild_id, "style")
        open_to_everyone(emulator, world.guild_id, "settings")
        for name, options in MODERATOR_COMMANDS:
            record = await emulator.invoke(name, options, **world.where)
            refusal = await private_reply(record)
            assert "Only moderators can do that here" in refusal.content, name
            assert record.modal is None  # /style add and edit open no form either

        assert await bot.runtime.policy.settings(world.guild_id) == GuildSettings()
        assert await bot.runtime.styles.get(world.guild_id, "noir") is not None
        assert await bot.runtime.styles.defaults(world.guild_id) == {}
        assert await bot.runtime.requests.recent(world.guild_id) == []  # no preview ran


async def test_the_servers_moderator_role_moderates_and_losing_it_stops_a_pending_form(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    helpers = emulator.add_role(world.guild_id, "helpers")
    helper = emulator.add_member(world.guild_id, "hal", roles=[helpers])
    as_helper = {**world.where, "user_id": helper}
    async with running_bot(emulator, tmp_path, fake()) as bot:
        # The admins also let the helpers see the commands (an Integrations override).
        open_to_everyone(emulator, world.guild_id, "style")
        open_to_everyone(emulator, world.guild_id, "settings")
        before = await private_reply(await emulator.invoke("settings show", {}, **as_helper))
        assert "Only moderators" in before.content

        await bot.runtime.policy.update(world.guild_id, moderator_role_id=helpers)
        shown = await private_reply(await emulator.invoke("settings show", {}, **as_helper))
        assert "Settings of this server" in shown.content
        still = await private_reply(await emulator.invoke("settings show", {}, **world.where))
        assert f"<@&{helpers}> role" in still.content  # the refusal names the role

        form = await opened_modal(await emulator.invoke("style add", {}, **as_helper))
        await bot.runtime.policy.update(world.guild_id, moderator_role_id=None)
        late = await private_reply(await emulator.submit_modal(form, NOIR_FORM))
        assert "Only moderators" in late.content
        assert await bot.runtime.styles.get(world.guild_id, "film-noir") is None


# ----------------------------------------------------------- settings take effect


async def test_a_disallowed_channel_refuses_creative_commands(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    poetry = emulator.add_channel(world.guild_id, "poetry")
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await private_reply(
            await emulator.invoke("settings set", {"allow_channel": poetry}, **as_moderator(world))
        )
        refused = await private_reply(await emulator.invoke("poem", {"theme": "x"}, **world.where))
        assert "not open in this channel" in refused.content and f"<#{poetry}>" in refused.content
        record = await emulator.invoke(
            "poem", {"theme": "rain"}, **{**world.where, "channel_id": poetry}
        )
        await record.wait_for_original(has_buttons, timeout=10)
        assert [r.channel_id for r in await bot.runtime.requests.recent(world.guild_id)] == [poetry]


async def test_the_cooldown_refuses_a_members_next_request_and_says_how_long(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with running_bot(emulator, tmp_path, fake()) as bot:
        await private_reply(
            await emulator.invoke("settings set", {"cooldown_seconds": 3600}, **as_moderator(world))
        )
        first = await emulator.invoke("poem", {"theme": "rain"}, **world.where)
        await first.wait_for_original(has_buttons, timeout=10)
        second = await private_reply(
            await emulator.invoke("poem", {"theme": "snow"}, **world.where)
        )
        assert "Slow down" in second.content and "3600 s" in second.content
        assert len(await bot.runtime.requests.recent(world.guild_id)) == 1


async def test_a_blocked_word_is_refused_in_input_and_masked_in_output(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    def about_the_moon(seq: SequenceInput) -> list[str]:
        return ["♪ ", "The ", "MOON ", "over ", "the ", "tide ", "pool."]

    async with running_bot(emulator, tmp_path, fake(script=about_the_moon)):
        await private_reply(
            await emulator.invoke(
                "settings set", {"blocked_words": "moon, tide pool"}, **as_moderator(world)
            )
        )
        refused = await private_reply(
            await emulator.invoke("poem", {"theme": "the Moon at night"}, **world.where)
        )
        assert "blocked" in refused.content and "moon" not in refused.content.lower()

        record = await emulator.invoke("poem", {"theme": "the sea"}, **world.where)
        final = await record.wait_for_original(has_buttons, timeout=10)
    assert "The ■■■ over the ■■■" in final.content
    assert all("moon" not in text.lower() for text in final.history)


async def test_the_moderator_role_may_delete_other_members_creations(
    emulator: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    helpers = emulator.add_role(world.guild_id, "helpers")
    helper = emulator.add_member(world.guild_id, "hal", roles=[helpers])
    async with running_bot(emulator, tmp_path, fake()) as bot:
        record = await emulator.invoke("poem", {"theme": "rain"}, **world.where)
        final = await record.wait_for_original(has_buttons, timeout=10)

        early = await emulator.click(final.id, "atelier:del:1", user_id=helper)
        assert "moderator" in (await private_reply(early)).content
        await private_reply(
            await emulator.invoke(
                "settings set", {"moderator_role": helpers}, **as_moderator(world)
            )
        )
        deleted = await emulator.click(final.id, "atelier:del:1", user_id=helper)
        assert "deleted" in (await private_reply(deleted)).content
        assert await bot.runtime.requests.get(world.guild_id, 1) is None
