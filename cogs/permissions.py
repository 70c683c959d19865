"""Who may moderate: checked by the bot on every moderator command and action.

Discord's ``default_permissions`` only decides who *sees* a command, and a server's
admins can change that in Server Settings → Integrations. So the moderator commands set
it as a hint (``MODERATOR_PERMISSIONS``), and every command, modal and button that acts
as a moderator asks ``require_moderator`` (or ``is_moderator``) here as well.

A plain module, not an extension: the cogs import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.errors import UserFacingError

if TYPE_CHECKING:
    from bot.client import AtelierBot

MODERATOR_PERMISSIONS = discord.Permissions(manage_guild=True)
"""The ``default_permissions`` hint for moderator commands (Manage Server)."""


def _role_ids(interaction: discord.Interaction[AtelierBot]) -> list[int]:
    member = interaction.user
    # In a server the user is a Member; a bare User (DMs) has no roles.
    return [role.id for role in member.roles] if isinstance(member, discord.Member) else []


async def is_moderator(interaction: discord.Interaction[AtelierBot]) -> bool:
    """Manage Server, or the server's moderator role (from its settings). Never in DMs."""
    return await interaction.client.runtime.policy.is_moderator(
        interaction.guild_id,
        manage_guild=interaction.permissions.manage_guild,
        role_ids=_role_ids(interaction),
    )


async def require_moderator(interaction: discord.Interaction[AtelierBot]) -> None:
    """Raise ``UserFacingError`` (sent ephemerally) unless the member moderates here."""
    if await is_moderator(interaction):
        return
    if interaction.guild_id is None:
        raise UserFacingError("Moderator commands work in a server, not in direct messages.")
    settings = await interaction.client.runtime.policy.settings(interaction.guild_id)
    who = "members with the Manage Server permission"
    if settings.moderator_role_id is not None:
        # Shown as a mention for clarity; replies never ping (AllowedMentions.none()).
        who += f" or the <@&{settings.moderator_role_id}> role"
    raise UserFacingError(f"Only moderators can do that here: {who}.")
