"""/poem: a poem on a member's theme, in a chosen form."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.prompts import POEM_FORMS, POEM_LENGTHS, poem_messages, poem_params
from bot.services.creations import Requester
from bot.text import clean_member_text
from cogs.presenter import present

if TYPE_CHECKING:
    from bot.client import AtelierBot


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
        submission = await self.bot.runtime.creations.submit(
            Requester(
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id or 0,
                user_id=interaction.user.id,
                application_id=interaction.application_id,
                interaction_token=interaction.token,
            ),
            command="poem",
            inputs={"theme": cleaned, "form": form, "length": length},
            messages=poem_messages(cleaned, form, length),
            params=poem_params(form, length, settings.poem_max_new_tokens),
        )
        await interaction.response.defer(thinking=True)
        shown_theme = discord.utils.escape_markdown(cleaned)
        header = f"**{POEM_FORMS[form].label}** · *{shown_theme}* — for {interaction.user.mention}"
        await present(interaction, submission, header)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Poem(bot))
