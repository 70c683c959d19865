"""The services wired as the runtime wires them, on a real SQLite file, for the
test_services_* modules: one place, so every test sees the same composition."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.domain import NewRequest, RequestRecord, RequestStatus
from bot.generation.engine import Engine
from bot.services.creations import CreationService
from bot.services.library import LibraryService
from bot.services.policy import PolicyService
from bot.services.styles import StyleService, load_builtin_styles
from bot.storage.database import Database
from bot.storage.library import FavouriteRepository, SettingsRepository, StyleRepository
from bot.storage.repositories import GuildRepository, RequestRepository
from tests.clock import Clock

GUILD, OTHER_GUILD = 1, 2
CHANNEL, OTHER_CHANNEL = 10, 11
MEMBER, FRIEND, STRANGER = 100, 101, 200


@dataclass
class Kit:
    settings: Settings
    db: Database
    clock: Clock
    requests: RequestRepository
    guilds: GuildRepository
    favourites: FavouriteRepository
    style_repo: StyleRepository
    settings_repo: SettingsRepository
    styles: StyleService
    policy: PolicyService
    library: LibraryService


@asynccontextmanager
async def open_kit(tmp_path: Path, **overrides: Any) -> AsyncIterator[Kit]:
    settings = Settings(data_dir=tmp_path, **overrides)
    db = await Database.open(tmp_path / "atelier.sqlite3")
    clock = Clock()
    requests = RequestRepository(db, clock=clock)
    guilds = GuildRepository(db, clock=clock)
    favourites = FavouriteRepository(db, clock=clock)
    style_repo = StyleRepository(db, clock=clock)
    settings_repo = SettingsRepository(db, clock=clock)
    try:
        yield Kit(
            settings=settings,
            db=db,
            clock=clock,
            requests=requests,
            guilds=guilds,
            favourites=favourites,
            style_repo=style_repo,
            settings_repo=settings_repo,
            styles=StyleService(style_repo, load_builtin_styles(), settings=settings_repo),
            policy=PolicyService(settings_repo, requests, settings, clock=clock),
            library=LibraryService(requests, favourites, guilds, settings_repo, clock=clock),
        )
    finally:
        await db.close()


def creation_service(kit: Kit, engine: Engine, settings: Settings | None = None) -> CreationService:
    """A CreationService over the kit's services (``settings`` replaces the kit's)."""
    return CreationService(
        engine,
        kit.requests,
        settings or kit.settings,
        policy=kit.policy,
        styles=kit.styles,
        favourites=kit.favourites,
    )


async def stored(
    kit: Kit,
    guild_id: int | None = GUILD,
    user_id: int = MEMBER,
    command: str = "poem",
    inputs: Mapping[str, Any] | None = None,
    *,
    output: str | None = "Rain on the roof,\nall night long.",
    status: RequestStatus = RequestStatus.DONE,
    channel_id: int = CHANNEL,
) -> RequestRecord:
    """A request as the creation service leaves it: finished DONE with ``output`` by
    default; ``status`` QUEUED or RUNNING leaves it unfinished."""
    record = await kit.requests.create(
        NewRequest(
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            command=command,
            inputs=dict(inputs or {"theme": "rain", "form": "free verse"}),
        )
    )
    if status is not RequestStatus.QUEUED:
        await kit.requests.mark_running(record.id)
    if status.is_finished:
        await kit.requests.finish(record.id, status, output=output)
    fresh = await kit.requests.get(guild_id, record.id, user_id=user_id)
    assert fresh is not None
    return fresh
