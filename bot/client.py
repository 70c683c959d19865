"""AtelierBot: the discord.py client, its command tree and its one error handler."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserFacingError

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

# The presenter first: it registers the persistent buttons the commands use.
EXTENSIONS = (
    "cogs.presenter",
    "cogs.poem",
    "cogs.script",
    "cogs.critique",
    "cogs.library",
    "cogs.moderation",
)


class AtelierTree(app_commands.CommandTree["AtelierBot"]):
    async def on_error(
        self, interaction: discord.Interaction[AtelierBot], error: app_commands.AppCommandError
    ) -> None:
        original = getattr(error, "original", error)
        if isinstance(original, UserFacingError):
            await send_error(interaction, original.message)
            return
        incident = uuid.uuid4().hex[:8]
        command = interaction.command.qualified_name if interaction.command else "?"
        log.error("command %s failed (incident %s)", command, incident, exc_info=original)
        await send_error(
            interaction,
            f"Sorry, something went wrong on my side (incident `{incident}`). "
            "Your request was not lost; please try again in a moment.",
        )


async def send_error(interaction: discord.Interaction[AtelierBot], message: str) -> None:
    """Tell the member what went wrong, ephemerally when Discord still allows it."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(
                message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            # A deferred public reply cannot turn ephemeral: replace the "thinking" state.
            await interaction.edit_original_response(
                content=f"⚠️ {message}", allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException:
        log.warning("could not deliver an error message for interaction %s", interaction.id)


class AtelierBot(commands.AutoShardedBot):
    """The bot: lifecycle in setup_hook/close, features in cogs under ``cogs/``."""

    def __init__(self, runtime: Runtime, *, sync_commands: bool = False) -> None:
        settings = runtime.settings
        intents = discord.Intents.none()
        intents.guilds = True  # channels and roles for permission checks; nothing privileged
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=AtelierTree,
            allowed_mentions=discord.AllowedMentions.none(),
            shard_count=settings.shard_count or None,
            help_command=None,
        )
        self.runtime = runtime
        self.settings = settings
        self._sync_commands = sync_commands
        self._deliveries: set[asyncio.Task[None]] = set()

    async def setup_hook(self) -> None:
        # Migrate, load the model (off the loop), start the engine, then the cogs.
        await self.runtime.start()
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self._recover()
        await self._sync_if_changed()

    async def _recover(self) -> None:
        """Re-run and answer what a crash or restart left undelivered.

        Here, not in on_ready: delivery needs only REST (interaction webhooks and
        channel messages), and resubmitting before the gateway connects keeps old
        jobs ahead of new ones. Delivering waits for the jobs, so it runs in tasks.
        """
        from cogs.presenter import deliver_recovered  # the cogs know how replies look

        for item in await self.runtime.recovery.recover():
            task = asyncio.create_task(
                deliver_recovered(self, item), name=f"recover-{item.record.id}"
            )
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def close(self) -> None:
        for extension in reversed(EXTENSIONS):
            if extension in self.extensions:
                await self.unload_extension(extension)
        await self.runtime.close()
        if self._deliveries:
            # Their jobs were just interrupted, so they end at once; bounded anyway.
            _, stuck = await asyncio.wait(set(self._deliveries), timeout=5)
            for task in stuck:
                task.cancel()
        await super().close()

    async def _sync_if_changed(self) -> None:
        """Sync slash commands only when their definitions changed since the last sync.

        Discord rate-limits command creation, so syncing on every start (or in
        on_ready) is wrong; never syncing means new commands never appear.
        """
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        marker = self.settings.data_dir / f"commands-{self.application_id}.sha256"
        if self._sync_commands:
            # Forced (``atelier sync``, the playground): no marker, the target may be new.
            synced = await self.tree.sync()
        elif marker.exists() and marker.read_text() == digest:
            return
        else:
            synced = await self.tree.sync()
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(digest)
        log.info("synced %d application commands", len(synced))

    async def on_ready(self) -> None:
        log.info("connected as %s to %d servers", self.user, len(self.guilds))
