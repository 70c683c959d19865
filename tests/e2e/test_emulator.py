"""The emulator against a tiny, real discord.py bot (not the app's), and the REPL."""

from __future__ import annotations

import asyncio
import io
import re
import time
from typing import TYPE_CHECKING, Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.playground.emulator import (
    CallbackType,
    CommandUnavailable,
    DiscordEmulator,
    EmulatorError,
    run_client,
    use_emulator,
)
from bot.playground.records import EPHEMERAL, Message
from bot.playground.repl import (
    CommandSpec,
    OptionSpec,
    ParseError,
    command_specs,
    find_button,
    help_text,
    parse_command_line,
    render_message,
    run_repl,
)

if TYPE_CHECKING:  # fixtures come from conftest.py; the type is only for readers
    from conftest import World

NONE = discord.AllowedMentions.none()


# ---------------------------------------------------------------- a tiny bot


class Favourite(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"fav:(?P<poem>\d+)"):
    """A persistent button: everything it needs is in its custom_id."""

    def __init__(self, poem: int) -> None:
        super().__init__(discord.ui.Button(label="Favourite", emoji="⭐", custom_id=f"fav:{poem}"))
        self.poem = poem

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> Favourite:
        return cls(int(match["poem"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"Saved poem {self.poem}.", ephemeral=True)


class PoemView(discord.ui.View):
    def __init__(self, poem: int) -> None:
        super().__init__(timeout=60)
        self.add_item(Favourite(poem))

    @discord.ui.button(label="Cancel", emoji="✖", custom_id="cancel")
    async def cancel(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        await interaction.response.edit_message(content="Cancelled.", view=None)


class Panel(discord.ui.View):
    """A classic persistent view (timeout=None, fixed custom_id) registered at startup."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Refresh", custom_id="panel:refresh")
    async def refresh(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        await interaction.response.edit_message(content="Refreshed.")

    @discord.ui.button(label="Later", custom_id="panel:later")
    async def later(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        await interaction.response.defer()  # type 6: acknowledge now, edit the panel after
        await interaction.edit_original_response(content="Refreshed later.")


class TitleModal(discord.ui.Modal, title="Name your poem"):
    name: discord.ui.TextInput[TitleModal] = discord.ui.TextInput(label="Title", custom_id="title")
    note: discord.ui.TextInput[TitleModal] = discord.ui.TextInput(
        label="Note", custom_id="note", required=False
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"Titled {self.name.value!r} ({self.note.value or 'no note'})", allowed_mentions=NONE
        )


class TinyBot(commands.Bot):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            command_prefix="!",
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            **kwargs,
        )
        self.seen: dict[str, Any] = {}
        self.errors: list[Exception] = []
        self.gate = asyncio.Event()
        self.slow_delay = 0.0

    async def setup_hook(self) -> None:
        self.add_dynamic_items(Favourite)
        self.add_view(Panel())
        tree = self.tree

        @tree.command(description="Write a poem")
        @app_commands.describe(theme="What about", form="Which form", lines="How many lines")
        @app_commands.choices(
            form=[
                app_commands.Choice(name="Haiku", value="haiku"),
                app_commands.Choice(name="Sonnet", value="sonnet"),
            ]
        )
        async def poem(
            interaction: discord.Interaction,
            theme: str,
            form: str = "haiku",
            lines: app_commands.Range[int, 1, 20] = 4,
            reader: discord.Member | None = None,
            draft: discord.Attachment | None = None,
        ) -> None:
            await interaction.response.defer(thinking=True)
            self.seen["poem"] = {
                "theme": theme,
                "form": form,
                "lines": lines,
                "reader": reader,
                "draft": draft and await draft.read(),
            }
            mentions = f"@everyone <@{interaction.user.id}>"  # must not ping anyone
            await interaction.edit_original_response(
                content=f"A {form} about {theme}, {lines} lines. {mentions}",
                view=PoemView(7),
                allowed_mentions=NONE,
            )

        @poem.autocomplete("theme")
        async def theme_complete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [
                app_commands.Choice(name=t, value=t)
                for t in ("rain", "rust", "roses")
                if t.startswith(current)
            ]

        @tree.command(description="Give your poem a title")
        async def title(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(TitleModal())

        @tree.command(description="Defer, wait for the test, then write")
        async def wait(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await self.gate.wait()
            for attempt in (
                lambda: interaction.channel.send("late", allowed_mentions=NONE),  # type: ignore[union-attr]
                lambda: interaction.edit_original_response(content="late"),
            ):
                try:
                    await attempt()
                except discord.HTTPException as exc:
                    self.errors.append(exc)

        @tree.command(description="Answers too slowly")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(self.slow_delay)
            try:
                await interaction.response.send_message("finally")
            except discord.HTTPException as exc:
                self.errors.append(exc)

        @tree.command(description="Sends files in followups")
        async def files(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            poem_file = discord.File(io.BytesIO(b"rain\non tin"), filename="poem.txt")
            await interaction.followup.send("Here it is", file=poem_file, allowed_mentions=NONE)
            private = await interaction.followup.send("Only for you", ephemeral=True, wait=True)
            await private.edit(content="Only for you (edited)")

        @tree.command(description="Post the panel")
        async def panel(interaction: discord.Interaction) -> None:
            await interaction.channel.send("Panel", view=Panel())  # type: ignore[union-attr]
            await interaction.response.send_message("Posted.", ephemeral=True)

        @tree.command(description="Moderators only")
        @app_commands.default_permissions(manage_guild=True)
        async def mod(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("ok")

        style = app_commands.Group(name="style", description="House styles")

        @style.command(name="add", description="Add a style")
        async def style_add(interaction: discord.Interaction, name: str) -> None:
            await interaction.response.send_message(f"Style {name} added.")

        tree.add_command(style)


@pytest.fixture
async def bot(emulator: DiscordEmulator, world: World) -> Any:
    tiny = TinyBot()
    async with run_client(tiny, emulator):
        await tiny.tree.sync()
        yield tiny


# ------------------------------------------------------------------- gateway


async def test_connects_with_zlib_stream_and_sees_the_world(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    session = emulator.gateway.connected_sessions[0]
    assert session.connection is not None and session.connection.compressed
    assert emulator.gateway.identify_payloads[0]["intents"] == discord.Intents.default().value
    guild = bot.get_guild(world.guild_id)
    assert guild is not None and guild.name == "Poets' Corner"
    channel = guild.get_channel(world.nsfw_channel_id)
    assert isinstance(channel, discord.TextChannel) and channel.is_nsfw()
    assert guild.me.id == emulator.bot_user.id
    assert emulator.unhandled == []


async def test_bad_token_is_a_login_failure(emulator: DiscordEmulator) -> None:
    client = discord.Client(intents=discord.Intents.none())
    with use_emulator(emulator.api_base, emulator.gateway_url), pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()


async def test_auto_sharded_bot_resumes_after_reconnect() -> None:
    async with DiscordEmulator(shard_count=2) as emu:
        for name in ("a", "b", "c", "d"):
            guild = emu.add_guild(name)
            emu.add_channel(guild, "general")
        sharded = commands.AutoShardedBot(
            command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05
        )

        async def no_identify_pause(shard_id: int | None, *, initial: bool = False) -> None:
            pass  # discord.py waits 5 s between shard IDENTIFYs, Discord's rate limit

        sharded.before_identify_hook = no_identify_pause  # type: ignore[method-assign]
        async with run_client(sharded, emu):
            assert sharded.shard_count == 2
            assert len(sharded.guilds) == 4
            ids = {s.id for s in emu.gateway.connected_sessions}
            resumed = asyncio.Event()

            async def on_shard_resumed(shard_id: int) -> None:
                resumed.set()

            sharded.add_listener(on_shard_resumed)
            await emu.gateway.request_reconnect()
            await asyncio.wait_for(resumed.wait(), 10)
            # RESUME keeps the sessions: no second IDENTIFY.
            assert {s.id for s in emu.gateway.connected_sessions} <= ids
            assert len(emu.gateway.identify_payloads) == 2


# ----------------------------------------------------------- slash commands


async def test_command_defers_then_edits_without_pinging(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    record = await emulator.invoke(
        "poem",
        {
            "theme": "rain on a tin roof",
            "form": "Sonnet",
            "lines": "3",
            "reader": "@ada",
            "draft": ("draft.txt", b"first draft"),
        },
        **world.where,
    )
    message = await record.wait_for_original(lambda m: "rain" in m.content)

    assert record.callback_type is CallbackType.DEFERRED_CHANNEL_MESSAGE
    assert record.response_latency is not None and record.response_latency < 3
    assert message.content.startswith("A sonnet about rain on a tin roof, 3 lines.")
    assert message.history[0] == "" and len(message.history) == 2  # thinking, then the poem
    assert message.allowed_mentions == {"parse": []}
    assert message.pinged_user_ids == [] and not message.pings_everyone
    # discord.py puts @button-decorated items before ones added in __init__.
    assert message.button_labels == ["✖ Cancel", "⭐ Favourite"]
    assert message.custom_ids == ["cancel", "fav:7"]
    seen = bot.seen["poem"]
    assert seen["form"] == "sonnet" and seen["lines"] == 3
    assert isinstance(seen["reader"], discord.Member) and seen["reader"].name == "ada"
    assert seen["draft"] == b"first draft"


async def test_invoke_checks_options_like_discords_client(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    with pytest.raises(EmulatorError, match="no option"):
        await emulator.invoke("poem", {"theme": "x", "colour": "red"}, **world.where)
    with pytest.raises(EmulatorError, match="requires"):
        await emulator.invoke("poem", {}, **world.where)
    with pytest.raises(EmulatorError, match="must be one of"):
        await emulator.invoke("poem", {"theme": "x", "form": "limerick"}, **world.where)
    with pytest.raises(EmulatorError, match="≤ 20"):
        await emulator.invoke("poem", {"theme": "x", "lines": 99}, **world.where)
    with pytest.raises(EmulatorError, match="not registered"):
        await emulator.invoke("nope", {}, **world.where)
    with pytest.raises(CommandUnavailable):
        await emulator.invoke("mod", {}, **world.where)
    record = await emulator.invoke(
        "mod", {}, guild_id=world.guild_id, channel_id=world.channel_id, user_id=world.moderator_id
    )
    assert (await record.wait_for_original()).content == "ok"
    record = await emulator.invoke("style add", {"name": "gothic"}, **world.where)
    assert (await record.wait_for_original()).content == "Style gothic added."


async def test_guild_commands_take_precedence(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    guild = discord.Object(world.guild_id)

    @app_commands.command(name="local", description="Only in this server")
    async def local(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("local reply")

    bot.tree.add_command(local, guild=guild)
    await bot.tree.sync(guild=guild)
    assert [c["name"] for c in emulator.commands_in(world.guild_id).values()] == ["local"]
    record = await emulator.invoke("local", {}, **world.where)
    assert (await record.wait_for_original()).content == "local reply"
    assert record.payload["data"]["guild_id"] == str(world.guild_id)


async def test_autocomplete_choices(emulator: DiscordEmulator, world: World, bot: TinyBot) -> None:
    record = await emulator.autocomplete("poem", {"theme": "r"}, focused="theme", **world.where)
    await record.wait_for_response()
    assert [c["value"] for c in record.choices or []] == ["rain", "rust", "roses"]


async def test_sync_rejects_what_discord_rejects(emulator: DiscordEmulator, bot: TinyBot) -> None:
    @bot.tree.command(description="x" * 101)
    async def wordy(interaction: discord.Interaction) -> None: ...

    with pytest.raises(discord.HTTPException) as caught:
        await bot.tree.sync()
    assert caught.value.code == 50035 and "description" in caught.value.text


# ---------------------------------------------------------------- components


async def test_dynamic_item_and_view_buttons_reach_the_bot(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    record = await emulator.invoke("poem", {"theme": "rain"}, **world.where)
    poem = await record.wait_for_original(lambda m: bool(m.buttons))

    favourite = await emulator.click(poem.id, "fav:7", user_id=world.member_id)
    saved = await favourite.wait_for_original()
    assert saved.content == "Saved poem 7." and saved.flags & EPHEMERAL
    assert saved.visible_to(world.member_id) and not saved.visible_to(world.moderator_id)

    cancel = await emulator.click(poem.id, "cancel", user_id=world.member_id)
    await cancel.wait_for(lambda r: r.callback_type is CallbackType.UPDATE_MESSAGE)
    assert poem.content == "Cancelled." and poem.buttons == []
    with pytest.raises(EmulatorError, match="no component"):
        await emulator.click(poem.id, "cancel", user_id=world.member_id)


async def test_persistent_view_posted_through_the_channel_api(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    record = await emulator.invoke("panel", {}, **world.where)
    await record.wait_for_original()
    panel = emulator.last_bot_message(world.channel_id, visible_to=world.moderator_id)
    assert panel is not None and panel.content == "Panel" and panel.interaction_id is None

    click = await emulator.click(panel.id, "panel:refresh", user_id=world.moderator_id)
    await click.wait_for(lambda r: r.responded)
    assert panel.history == ["Panel", "Refreshed."]

    later = await emulator.click(panel.id, "panel:later", user_id=world.member_id)
    await later.wait_for(lambda r: r.original is panel and panel.content == "Refreshed later.")
    assert later.callback_type is CallbackType.DEFERRED_UPDATE_MESSAGE


async def test_modal_submit(emulator: DiscordEmulator, world: World, bot: TinyBot) -> None:
    record = await emulator.invoke("title", {}, **world.where)
    await record.wait_for_response()
    assert record.modal is not None and record.modal["title"] == "Name your poem"

    submitted = await emulator.submit_modal(record, {"Title": "Rain"})
    reply = await submitted.wait_for_original()
    assert reply.content == "Titled 'Rain' (no note)"
    with pytest.raises(EmulatorError, match="required"):
        await emulator.submit_modal(record, {"note": "only a note"})


# ----------------------------------------------------- webhooks, errors, time


async def test_followups_fill_the_thinking_message_and_carry_files(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    record = await emulator.invoke("files", {}, **world.where)
    await record.wait_for_followups(2)
    first, second = record.followups
    # Discord's rule: the first followup after a deferral *is* the deferred message.
    assert first is record.original and not first.loading
    assert [(a.filename, a.data) for a in first.attachments] == [("poem.txt", b"rain\non tin")]
    await record.wait_for(lambda r: r.followups[1].content.endswith("(edited)"))
    assert second.ephemeral and second.history == ["Only for you", "Only for you (edited)"]


async def test_deleted_channel_is_not_found_for_the_bot(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    record = await emulator.invoke("wait", {}, **world.where)
    await record.wait_for_response()
    emulator.delete_channel(world.channel_id)
    bot.gate.set()
    await emulator.wait_for(lambda e: len(bot.errors) == 2)
    assert all(isinstance(e, discord.NotFound) for e in bot.errors)
    assert [e.code for e in bot.errors] == [10003, 10003]  # type: ignore[attr-defined]


async def test_expired_interaction_token(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    record = await emulator.invoke("wait", {}, **world.where)
    await record.wait_for_response()
    emulator.expire_interaction(record)
    bot.gate.set()
    await emulator.wait_for(lambda e: len(bot.errors) == 1)
    error = bot.errors[0]
    assert isinstance(error, discord.HTTPException) and error.status == 401
    assert error.code == 50027


async def test_late_acknowledgement_is_an_unknown_interaction(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    emulator.callback_deadline = 0.2  # Discord's is 3 s; shortened to keep the test quick
    bot.slow_delay = 0.4
    record = await emulator.invoke("slow", {}, **world.where)
    await emulator.wait_for(lambda e: bot.errors)
    assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
    assert not record.responded


async def test_message_limits_are_enforced(
    emulator: DiscordEmulator, world: World, bot: TinyBot
) -> None:
    channel = bot.get_channel(world.channel_id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send("x" * 2001)
    assert caught.value.code == 50035
    sent = await channel.send("fine", allowed_mentions=NONE)
    fetched = await channel.fetch_message(sent.id)
    assert fetched.content == "fine"
    emulator.delete_message(sent.id)
    await emulator.settle_announcements()
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(sent.id)


async def test_idle_for_waits_for_quiet(emulator: DiscordEmulator) -> None:
    emulator.touch()
    started = time.monotonic()
    await emulator.idle_for(0.2)
    assert time.monotonic() - started >= 0.19


# ---------------------------------------------------------------------- REPL


SPECS = [
    CommandSpec(
        "poem",
        "Write a poem",
        (
            OptionSpec("theme", 3, required=True),
            OptionSpec("form", 3, choices=("Haiku", "Sonnet")),
            OptionSpec("lines", 4),
        ),
    ),
    CommandSpec("style add", "Add a style", (OptionSpec("name", 3, required=True),)),
]


def test_parse_command_line() -> None:
    parsed = parse_command_line("/poem theme: rain on a tin roof form: haiku", SPECS)
    assert (parsed.command, parsed.options) == (
        "poem",
        {"theme": "rain on a tin roof", "form": "haiku"},
    )
    # Colons after words that are not option names belong to the value.
    parsed = parse_command_line("/poem theme: time: 3:00 am lines: 4", SPECS)
    assert parsed.options == {"theme": "time: 3:00 am", "lines": "4"}
    parsed = parse_command_line('/poem theme: "a form: of rain" form: Sonnet', SPECS)
    assert parsed.options == {"theme": "a form: of rain", "form": "Sonnet"}
    parsed = parse_command_line("/style add name: gothic", SPECS)
    assert (parsed.command, parsed.options) == ("style add", {"name": "gothic"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/sonnet theme: x", "Unknown command /sonnet. Commands: /poem, /style add"),
        ("/poem theme: x colour: red", None),  # "colour:" is not an option: part of the theme
        ("/poem colour: red", "Unknown option 'colour'. /poem options: form, lines, theme"),
        ("/poem form: haiku", "/poem needs theme"),
        ('/poem theme: "unclosed', "Unclosed quote"),
        ("/style", "/style needs a subcommand: add"),
        ("poem", "start with '/'"),
    ],
)
def test_parse_errors_are_helpful(line: str, message: str | None) -> None:
    if message is None:
        assert parse_command_line(line, SPECS).options == {"theme": "x colour: red"}
        return
    with pytest.raises(ParseError) as caught:
        parse_command_line(line, SPECS)
    assert message in str(caught.value)


def test_help_lists_commands_and_options() -> None:
    text = help_text(SPECS)
    assert "/poem theme: <text> [form: Haiku|Sonnet] [lines: <integer>]" in text
    assert "/style add name: <text>" in text


def test_render_message() -> None:
    message = Message(
        id=1,
        channel_id=2,
        guild_id=3,
        author_id=4,
        content="Rain\non tin",
        embeds=[{"title": "Haiku", "description": "drip", "footer": {"text": "by Atelier"}}],
        components=[
            {
                "type": 1,
                "components": [
                    {
                        "type": 2,
                        "style": 1,
                        "label": "Favourite",
                        "emoji": {"name": "⭐"},
                        "custom_id": "fav:1",
                    },
                    {
                        "type": 2,
                        "style": 4,
                        "label": "Cancel",
                        "emoji": {"name": "✖"},
                        "custom_id": "cancel",
                        "disabled": True,
                    },
                ],
            }
        ],
        flags=EPHEMERAL,
    )
    assert render_message(message, bot_name="Atelier") == "\n".join(
        [
            "Atelier: Rain",
            "  on tin",
            "  │ **Haiku**",
            "  │ drip",
            "  │ — by Atelier",
            "  [⭐ Favourite] [✖ Cancel (disabled)]",
            "  (only you can see this)",
        ]
    )
    assert find_button(message, "2") == "cancel"
    assert find_button(message, "favourite") == "fav:1"
    with pytest.raises(ParseError, match="Buttons:"):
        find_button(message, "delete")


async def test_scripted_repl_session(
    emulator: DiscordEmulator, world: World, bot: TinyBot, settled: Any
) -> None:
    script = io.StringIO(
        "/help\n"
        "/poem theme: rain on a tin roof form: haiku\n"
        "click Favourite\n"
        "/sonnet\n"
        "/title\n"
        "submit title: Rain\n"
    )
    out = io.StringIO()
    await run_repl(
        emulator,
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
        input_stream=script,
        output_stream=out,
        settled=settled,
    )
    text = out.getvalue()
    assert not text.startswith(">")  # no prompt or banner when not a TTY
    assert "/poem theme: <text> [form: Haiku|Sonnet]" in text
    assert "Atelier: A haiku about rain on a tin roof, 4 lines." in text
    assert "[✖ Cancel] [⭐ Favourite]" in text
    assert "Atelier: Saved poem 7.\n  (only you can see this)" in text
    assert "Unknown command /sonnet." in text
    assert "📝 Name your poem" in text
    assert "Atelier: Titled 'Rain' (no note)" in text
    assert command_specs(emulator.registered_commands(world.guild_id))[0].path == "files"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_repl_on_a_terminal_shows_banner_and_prompt(
    emulator: DiscordEmulator, world: World, settled: Any
) -> None:
    out = io.StringIO()
    await run_repl(
        emulator,
        guild_id=world.guild_id,
        channel_id=world.channel_id,
        user_id=world.member_id,
        input_stream=FakeTerminal("quit\n"),
        output_stream=out,
        settled=settled,
    )
    assert out.getvalue().startswith("Atelier playground: you are in #general")
    assert out.getvalue().endswith("> ")
