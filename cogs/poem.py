"""/poem: a poem on a member's theme, in a chosen form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.prompts import POEM_FORMS, POEM_LENGTHS, build_prompt
from bot.services.creations import Requester
from bot.text import clean_member_text
from cogs.presenter import HEADERS, present

if TYPE_CHECKING:
    from bot.client import AtelierBot


def poem_header(inputs: Mapping[str, Any], user_id: int) -> str:
    """The reply's first line; built from stored inputs so a restart shows the same."""
    form = POEM_FORMS.get(str(inputs.get("form", "free verse")))
    label = form.label if form is not None else "Poem"
    shown_theme = discord.utils.escape_markdown(str(inputs.get("theme", "")))
    return f"**{label}** · *{shown_theme}* — for <@{user_id}>"


class Poem(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(name="poem")
    @app_commands.describe(
        theme="What the poem is about, e.g. rain on a tin roof",
        form="The shape of the poem (default: free verse)",
        length="How long (default: medium; fixed forms keep their own length)",
    )
    @app_commands.choices(
        form=[app_commands.Choice(name=f.label, value=key) for key, f in POEM_FORMS.items()],
        length=[app_commands.Choice(name=name.title(), value=name) for name in POEM_LENGTHS],
    )
    async def poem(
        self,
        interaction: discord.Interaction[AtelierBot],
        theme: str,
        form: str = "free verse",
        length: str = "medium",
    ) -> None:
        """Write a poem on a theme."""
        settings = self.bot.settings
        cleaned = clean_member_text(theme, field="theme", max_chars=settings.theme_max_chars)
        inputs = {"theme": cleaned, "form": form, "length": length}
        # The same builder restart recovery uses, so a re-run gets the same model input.
        prompt = build_prompt("poem", inputs, settings)
        submission = await self.bot.runtime.creations.submit(
            Requester(
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id or 0,
                user_id=interaction.user.id,
                application_id=interaction.application_id,
                interaction_token=interaction.token,
            ),
            command="poem",
            inputs=inputs,
            messages=prompt.messages,
            params=prompt.params,
        )
        await interaction.response.defer(thinking=True)
        await present(interaction, submission, poem_header(inputs, interaction.user.id))


async def setup(bot: AtelierBot) -> None:
    HEADERS["poem"] = poem_header
    await bot.add_cog(Poem(bot))
