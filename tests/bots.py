"""Starting the real AtelierBot against the loopback emulator, for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.client import AtelierBot
from bot.config import Settings
from bot.generation.backend import StepBackend
from bot.playground.emulator import DiscordEmulator, run_client
from bot.runtime import Runtime


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
