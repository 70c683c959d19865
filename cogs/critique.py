"""/critique: feedback on a member's writing, from a form, a text file or a message.

The reply names strengths, gives concrete suggestions and reworks one line as an
example (see ``bot.prompts``). Critiquing another member's message needs their opt-in
when the server asks for it (``/critique-optin``); one's own writing is always fine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.documents import is_image, read_text_attachment, too_big
from bot.domain import RequestRecord
from bot.errors import InvalidInput, UserFacingError
from bot.prompts import CRITIQUE_FOCUSES, CRITIQUE_TONES, DEFAULTS
from bot.text import normalize, replace_mentions
from cogs.presenter import NO_PINGS, CreationModal, Look, create, register

if TYPE_CHECKING:
    from bot.client import AtelierBot

TEXT_ONLY = (
    "I can only read text: the model behind this bot does not see images. "
    "Paste the words with `/critique` (no file), or attach them as a .txt or .md file."
)
NOT_OPTED_IN = (
    "{name} has not opted in to critiques of their messages in this server. They can "
    "allow it with `/critique-optin enabled:True`; your own writing you can always critique."
)


def critique_title(inputs: Mapping[str, Any]) -> str:
    focus = str(inputs.get("focus") or DEFAULTS["focus"])
    tone = str(inputs.get("tone") or DEFAULTS["tone"])
    title = f"**Critique** · {focus} · {tone}"
    source = inputs.get("source")
    if source == "message" and isinstance(inputs.get("author_id"), int):
        title += f" · of <@{inputs['author_id']}>'s message"
    elif source == "attachment":
        title += " · from a file"
    return title


def clean_writing(text: str, max_chars: int) -> str:
    """Writing to critique: normalized and mention-free, line breaks kept (they are
    part of a poem)."""
    raw = normalize(text).strip()
    if not raw:
        raise InvalidInput("There is no text to critique. Paste or attach some writing.")
    if len(raw) > max_chars:
        raise InvalidInput(
            f"That writing is {len(raw)} characters long; the limit is {max_chars}. "
            "Share a part of it."
        )
    return replace_mentions(raw)


def reads_images(bot: AtelierBot) -> bool:
    """Whether the configured backend can look at an image.

    None can today (the local model and the OpenAI-compatible servers we drive are
    text-only), so images are refused honestly. A vision-capable backend would say so
    here, and /critique would hand the image on instead of refusing.
    """
    return False


async def ensure_may_critique(
    bot: AtelierBot,
    guild_id: int | None,
    author_id: int,
    requester_id: int,
    *,
    author_name: str = "That member",
) -> None:
    """Raise unless ``requester_id`` may have ``author_id``'s writing critiqued here."""
    if guild_id is None or author_id == requester_id:
        return
    settings = await bot.runtime.policy.settings(guild_id)
    if not settings.critique_opt_in:
        return
    if not await bot.runtime.settings_repo.critique_opt_in(guild_id, author_id):
        raise UserFacingError(NOT_OPTED_IN.format(name=author_name))


class Critique(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(
            name="Critique this writing",
            callback=self.critique_message,
            allowed_contexts=app_commands.AppCommandContext(guild=True),
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="critique")
    @app_commands.describe(
        focus="What to look at most (default: overall)",
        tone="How to say it (default: gentle)",
        file="Your writing as a .txt or .md file (leave empty to paste it in a form)",
    )
    @app_commands.choices(
        focus=[app_commands.Choice(name=key.title(), value=key) for key in CRITIQUE_FOCUSES],
        tone=[app_commands.Choice(name=key.title(), value=key) for key in CRITIQUE_TONES],
    )
    async def critique(
        self,
        interaction: discord.Interaction[AtelierBot],
        focus: str = DEFAULTS["focus"],
        tone: str = DEFAULTS["tone"],
        file: discord.Attachment | None = None,
    ) -> None:
        """Get feedback on your writing: strengths, suggestions and a reworked line."""
        if file is None:
            limit = self.bot.settings.critique_max_chars
            await interaction.response.send_modal(CritiqueModal(self, limit, focus, tone))
            return
        text = await self.read(file)
        await self.submit(interaction, text, focus, tone, source="attachment")

    async def read(self, file: discord.Attachment) -> str:
        settings = self.bot.settings
        if is_image(file.filename, file.content_type) and not reads_images(self.bot):
            raise InvalidInput(TEXT_ONLY)
        refusal = too_big(file.filename, file.size, settings.attachment_max_bytes)
        if refusal is not None:
            raise refusal  # before downloading it
        data = await file.read()
        return read_text_attachment(
            file.filename, file.content_type, data, settings.critique_max_chars
        )

    async def submit(
        self,
        interaction: discord.Interaction[AtelierBot],
        text: str,
        focus: str,
        tone: str,
        *,
        source: str,
        author_id: int | None = None,
    ) -> None:
        inputs: dict[str, Any] = {
            "text": clean_writing(text, self.bot.settings.critique_max_chars),
            "focus": focus,
            "tone": tone,
            "source": source,
        }
        if author_id is not None:
            inputs["author_id"] = author_id
        await create(interaction, "critique", inputs)

    async def critique_message(
        self, interaction: discord.Interaction[AtelierBot], message: discord.Message
    ) -> None:
        """Critique this writing (a message context menu)."""
        author = message.author
        if not author.bot:  # a bot's text (a poem of ours, say) needs no one's consent
            await ensure_may_critique(
                self.bot,
                interaction.guild_id,
                author.id,
                interaction.user.id,
                author_name=author.display_name,
            )
        text = message.content
        if not text.strip() and message.attachments:
            text = await self.read(message.attachments[0])
        await self.submit(
            interaction,
            text,
            DEFAULTS["focus"],
            DEFAULTS["tone"],
            source="message",
            author_id=message.author.id,
        )

    @app_commands.command(name="critique-optin")
    @app_commands.guild_only()
    @app_commands.describe(enabled="Whether other members may have your messages critiqued")
    async def critique_optin(
        self, interaction: discord.Interaction[AtelierBot], enabled: bool
    ) -> None:
        """Allow or stop critiques of your messages by other members in this server."""
        assert interaction.guild_id is not None  # guild_only
        await self.bot.runtime.settings_repo.set_critique_opt_in(
            interaction.guild_id, interaction.user.id, enabled
        )
        reply = (
            "✅ Other members may now ask me to critique your messages in this server."
            if enabled
            else "Other members can no longer ask me to critique your messages in this server."
        )
        await interaction.response.send_message(reply, ephemeral=True, allowed_mentions=NO_PINGS)


class CritiqueModal(CreationModal, title="Writing to critique"):
    def __init__(self, cog: Critique, limit: int, focus: str, tone: str) -> None:
        super().__init__()
        self.cog, self.focus, self.tone = cog, focus, tone
        self.writing = discord.ui.TextInput[CritiqueModal](
            custom_id="writing",
            style=discord.TextStyle.paragraph,
            placeholder="Paste your poem, scene or story here…",
            max_length=limit,
        )
        self.add_item(discord.ui.Label(text="Your writing", component=self.writing))

    async def on_submit(self, interaction: discord.Interaction[AtelierBot]) -> None:  # type: ignore[override]
        await self.cog.submit(
            interaction, self.writing.value, self.focus, self.tone, source="modal"
        )


async def repeat_critique(
    interaction: discord.Interaction[AtelierBot], record: RequestRecord
) -> None:
    """Another take on a critique is the requester's to ask for, and the author's
    opt-in must still hold."""
    if record.user_id != interaction.user.id:
        raise UserFacingError("Only the member who asked for this critique can ask for another.")
    author_id = record.inputs.get("author_id")
    if isinstance(author_id, int):
        await ensure_may_critique(
            interaction.client,
            interaction.guild_id,
            author_id,
            interaction.user.id,
            author_name="The author",
        )


async def setup(bot: AtelierBot) -> None:
    register("critique", Look(title=critique_title, continuable=False, may_repeat=repeat_critique))
    await bot.add_cog(Critique(bot))
