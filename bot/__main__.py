"""Composition root and command line: ``atelier run | play | sync``.

Nothing heavy happens at import time; settings, database, model and engine are built
here and injected (discord.py's ``advanced_startup`` pattern).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

import discord
import yarl

from bot.client import AtelierBot
from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.runtime import Runtime

log = logging.getLogger("bot")


class RedactSecrets(logging.Filter):
    """Last line of defence: a secret that reaches a log record is replaced."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "[redacted]")
            record.msg, record.args = message, ()
        return True


def configure_logging(settings: Settings, *, quiet: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    secrets = [
        value.get_secret_value()
        for value in (settings.discord_token, settings.openai_api_key)
        if value is not None
    ]
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else settings.log_level)
    # Silence noisy third-party loggers in the playground, keep them otherwise.
    if quiet:
        logging.getLogger("discord").setLevel(logging.ERROR)


def point_discord_at(settings: Settings) -> None:
    """Send discord.py's REST and gateway traffic where the settings say (e.g. an emulator)."""
    discord.http.Route.BASE = settings.discord_api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def run_bot(settings: Settings) -> None:
    assert settings.discord_token is not None
    point_discord_at(settings)
    async with AtelierBot(Runtime(settings)) as bot:
        await bot.start(settings.discord_token.get_secret_value())


async def sync_commands(settings: Settings) -> None:
    """Register the slash commands with Discord now (normally done when they change)."""
    assert settings.discord_token is not None
    point_discord_at(settings)
    async with AtelierBot(Runtime(settings), sync_commands=True) as bot:
        await bot.login(settings.discord_token.get_secret_value())
        await bot.setup_hook()


async def play(settings: Settings) -> None:
    """The real bot against an in-process loopback Discord, with a terminal in front."""
    from bot.playground.session import run_playground

    await run_playground(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atelier", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="connect to Discord (the playground when DISCORD_TOKEN is unset)")
    sub.add_parser("play", help="the offline playground: the bot against a local emulator")
    sub.add_parser("sync", help="register the slash commands with Discord now")
    args = parser.parse_args(argv)
    command = args.command or "run"

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"atelier: {exc}", file=sys.stderr)
        return 2

    if command in ("run", "sync") and settings.discord_token is None:
        if command == "sync":
            print("atelier: sync needs DISCORD_TOKEN", file=sys.stderr)
            return 2
        command = "play"
        print("No DISCORD_TOKEN set: opening the offline playground.", file=sys.stderr)

    configure_logging(settings, quiet=command == "play")
    entry = {"run": run_bot, "sync": sync_commands, "play": play}[command]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(entry(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
