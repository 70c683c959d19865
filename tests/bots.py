"""Starting the real AtelierBot against the loopback emulator, for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.client import AtelierBot
from bot.config import Settings
from bot.domain import RequestRecord
from bot.generation.backend import SequenceInput, StepBackend
from bot.playground.emulator import DiscordEmulator, EmulatorError, run_client
from bot.playground.records import InteractionKind, InteractionRecord, Message
from bot.runtime import Runtime
from tests.fakes import FakeStepBackend, words_of


def sung(seq: SequenceInput) -> list[str]:
    """The fake model's default script behind a leading "♪": without it the output
    would be only an echo of the request, which ``clean_output`` rightly removes."""
    return ["♪ ", *words_of(seq)]


def fake(**kwargs: Any) -> Callable[[Settings], StepBackend]:
    """A backend factory for a fresh FakeStepBackend (singing) per bot start."""
    return lambda settings: FakeStepBackend(**{"script": sung, **kwargs})


@asynccontextmanager
async def running_bot(
    emulator: DiscordEmulator,
    tmp_path: Path,
    backend: Callable[[Settings], StepBackend],
    **overrides: Any,
) -> AsyncIterator[AtelierBot]:
    """The bot with its data in ``tmp_path/data`` (so a second start finds the same rows)."""
    settings = Settings(data_dir=tmp_path / "data", progress_interval_s=0.2, **overrides)
    bot = AtelierBot(Runtime(settings, backend_factory=backend), sync_commands=True)
    async with run_client(bot, emulator, timeout=60):
        yield bot


# ------------------------------------------------------------------ reading replies


def is_final(message: Message) -> bool:
    """The reply no longer shows progress (queued or writing)."""
    return "Waiting in line" not in message.content and "Writing…" not in message.content


def has_buttons(message: Message) -> bool:
    """A finished creation: its ⭐ 🔁 ➕ 🗑 buttons are on."""
    return any(c.startswith("atelier:fav:") for c in message.custom_ids)


async def settled_row(bot: AtelierBot, guild_id: int, request_id: int) -> RequestRecord:
    """The row once its outcome is recorded and delivered."""
    row = None
    for _ in range(200):
        row = await bot.runtime.requests.get(guild_id, request_id)
        if row is not None and row.is_delivered and row.is_finished:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"request {request_id} never settled: {row}")


# ------------------------------------------------- what the emulator cannot drive yet


def post_message(
    emulator: DiscordEmulator, channel_id: int, author_id: int, content: str
) -> Message:
    """A member writes a message in a channel (stored as Discord would; the bot has no
    message intent, so it only sees it through a context menu's resolved data)."""
    message = emulator.new_message(channel_id, author_id=author_id)
    message.content = content
    emulator.store_message(message, {"content": content})
    return message


async def invoke_message_command(
    emulator: DiscordEmulator, name: str, target: Message, *, user_id: int
) -> InteractionRecord:
    """A member picks ``name`` from a message's Apps menu (a message context menu).

    The emulator's driving API covers slash commands only, so this builds the
    interaction Discord would send and dispatches it through the emulator's gateway.
    """
    command = next(
        (
            c
            for c in emulator.registered_commands(target.guild_id)
            if c["name"] == name and c.get("type") == 3
        ),
        None,
    )
    if command is None:
        raise EmulatorError(f"no message command {name!r} is registered")
    data: dict[str, Any] = {
        "id": command["id"],
        "name": name,
        "type": 3,
        "target_id": str(target.id),
        "resolved": {"messages": {str(target.id): emulator.message_payload(target)}},
    }
    return await emulator._dispatch_interaction(  # no public driver for this yet
        InteractionKind.APPLICATION_COMMAND,
        name,
        data,
        guild_id=target.guild_id,
        channel_id=target.channel_id,
        user_id=user_id,
    )


def forged_message(emulator: DiscordEmulator, channel_id: int, custom_ids: list[str]) -> Message:
    """A bot-looking message carrying buttons with chosen custom_ids, as a copied or
    forged component would: only the custom_id reaches the bot."""
    message = emulator.new_message(channel_id, author_id=emulator.bot_user.id)
    message.content = "an old creation"
    message.components = [
        {
            "type": 1,
            "components": [{"type": 2, "style": 2, "label": c, "custom_id": c} for c in custom_ids],
        }
    ]
    emulator.store_message(message, {"content": message.content})
    return message
