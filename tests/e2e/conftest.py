"""Fixtures for end-to-end tests: a loopback Discord and a small world inside it.

async def test_something(emulator, world):
    async with run_client(my_bot, emulator):   # from bot.playground.emulator
        await my_bot.tree.sync()
        record = await emulator.invoke("poem", {"theme": "rain"}, **world.where)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.playground.emulator import DiscordEmulator, quiet_period, use_emulator


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    """A started emulator on a free loopback port, stopped after the test."""
    async with DiscordEmulator() as emu:
        yield emu


@dataclass(frozen=True)
class World:
    guild_id: int
    channel_id: int
    nsfw_channel_id: int
    member_id: int  # an ordinary member
    moderator_id: int  # has Manage Server

    @property
    def where(self) -> dict[str, Any]:
        """guild_id/channel_id/user_id for ``invoke`` as the ordinary member."""
        return {"guild_id": self.guild_id, "channel_id": self.channel_id, "user_id": self.member_id}


@pytest.fixture
def world(emulator: DiscordEmulator) -> World:
    guild = emulator.add_guild("Poets' Corner")
    return World(
        guild_id=guild,
        channel_id=emulator.add_channel(guild, "general"),
        nsfw_channel_id=emulator.add_channel(guild, "after-dark", nsfw=True),
        member_id=emulator.add_member(guild, "ada"),
        moderator_id=emulator.add_member(guild, "mira", manage_guild=True),
    )


@pytest.fixture
def discord_pointed_at_emulator(emulator: DiscordEmulator) -> Iterator[None]:
    """discord.py's Route.BASE / DEFAULT_GATEWAY aimed at the emulator, restored after."""
    with use_emulator(emulator.api_base, emulator.gateway_url):
        yield


@pytest.fixture
def settled(emulator: DiscordEmulator) -> Callable[[], Awaitable[None]]:
    """Waits until the emulator has seen no traffic for 0.3 s (the REPL's ``settled``)."""
    return quiet_period(emulator, 0.3, timeout=30.0)
