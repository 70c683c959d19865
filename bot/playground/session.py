"""``atelier play``: the real bot against the in-process emulator, with a terminal in front."""

from __future__ import annotations

import asyncio
import sys

from bot.client import AtelierBot
from bot.config import Settings
from bot.playground.emulator import DiscordEmulator, run_client
from bot.playground.repl import run_repl
from bot.runtime import Runtime

# How long the emulator must see no traffic before a reply counts as finished.
QUIET_SECONDS = 0.5


async def run_playground(settings: Settings) -> None:
    async with DiscordEmulator() as emulator:
        guild_id = emulator.add_guild("Atelier Playground")
        channel_id = emulator.add_channel(guild_id, "poetry-corner")
        user_id = emulator.add_member(guild_id, "you")
        settings = settings.model_copy(
            update={
                "discord_api_base": emulator.api_base,
                "discord_gateway_url": emulator.gateway_url,
            }
        )
        runtime = Runtime(settings)
        bot = AtelierBot(runtime, sync_commands=True)

        async def settled() -> None:
            """The reply is final when the engine is idle and Discord traffic has stopped.

            Checked in that order until both hold at once: a job may be submitted
            (or a progress edit sent) while we wait for the other condition.
            """
            while True:
                while not runtime.engine.idle:  # noqa: ASYNC110 (no idle event; polling is cheap)
                    await asyncio.sleep(0.05)
                await emulator.idle_for(QUIET_SECONDS, timeout=600)
                if runtime.engine.idle:
                    return

        print("Starting Atelier (loading the model)…", file=sys.stderr, flush=True)
        async with run_client(bot, emulator, timeout=300):
            await run_repl(
                emulator,
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id,
                input_stream=sys.stdin,
                output_stream=sys.stdout,
                settled=settled,
            )
