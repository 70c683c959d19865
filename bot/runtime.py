"""Everything the bot needs besides Discord: database, model, engine and services.

Built by the composition root, started in the bot's ``setup_hook`` and closed in
reverse order by ``close()``. Tests build one with a fake backend factory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.config import Settings
from bot.generation.backend import StepBackend
from bot.generation.engine import Engine, EngineConfig
from bot.generation.remote import build_remote_engine
from bot.services.creations import CreationService
from bot.services.library import LibraryService
from bot.services.policy import PolicyService
from bot.services.recovery import RecoveryService
from bot.services.styles import StyleService, load_builtin_styles
from bot.storage.database import Database
from bot.storage.library import FavouriteRepository, SettingsRepository, StyleRepository
from bot.storage.repositories import GuildRepository, RequestRepository

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings], StepBackend]


def local_backend(settings: Settings) -> StepBackend:
    """Load the configured model in-process (blocking: seconds, or ~15 s the first time)."""
    from bot.generation.local_backend import LocalBackend
    from bot.generation.model_loader import load_model

    return LocalBackend(load_model(settings), max_batch_size=settings.max_batch_size)


class Runtime:
    def __init__(self, settings: Settings, backend_factory: BackendFactory = local_backend):
        self.settings = settings
        self._backend_factory = backend_factory
        self._db: Database | None = None
        self._engine: Engine | None = None
        self._creations: CreationService | None = None
        self._recovery: RecoveryService | None = None
        self._guilds: GuildRepository | None = None
        self._requests: RequestRepository | None = None
        self._favourites: FavouriteRepository | None = None
        self._settings_repo: SettingsRepository | None = None
        self._styles: StyleService | None = None
        self._policy: PolicyService | None = None
        self._library: LibraryService | None = None

    async def start(self) -> None:
        settings = self.settings
        # Read first: a broken styles file should stop the bot before the model loads.
        builtin_styles = load_builtin_styles()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._db = db = await Database.open(settings.database_path)
        self._requests = requests = RequestRepository(db)
        self._guilds = guilds = GuildRepository(db)
        self._favourites = favourites = FavouriteRepository(db)
        self._settings_repo = settings_repo = SettingsRepository(db)
        self._styles = styles = StyleService(
            StyleRepository(db), builtin_styles, settings=settings_repo
        )
        self._policy = policy = PolicyService(settings_repo, requests, settings)
        self._library = LibraryService(requests, favourites, guilds, settings_repo)
        if settings.backend == "openai":
            self._engine = build_remote_engine(settings)
        else:
            # Loading the model takes seconds: keep the event loop free meanwhile.
            backend = await asyncio.to_thread(self._backend_factory, settings)
            self._engine = Engine(backend, EngineConfig.from_settings(settings))
        await self._engine.start()
        self._creations = CreationService(
            self._engine,
            requests,
            settings,
            policy=policy,
            styles=styles,
            favourites=favourites,
        )
        self._recovery = RecoveryService(self._creations, requests)

    async def close(self) -> None:
        if self._creations is not None:
            # Jobs the engine now stops are interruptions: kept for the next start.
            self._creations.begin_shutdown()
        if self._engine is not None:
            await self._engine.close()
        if self._creations is not None:
            await self._creations.close()
        if self._db is not None:
            await self._db.close()
        self._engine = self._creations = self._db = None
        self._recovery = None
        self._requests = self._guilds = self._favourites = self._settings_repo = None
        self._styles = self._policy = self._library = None

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "runtime not started"
        return self._engine

    @property
    def creations(self) -> CreationService:
        assert self._creations is not None, "runtime not started"
        return self._creations

    @property
    def recovery(self) -> RecoveryService:
        assert self._recovery is not None, "runtime not started"
        return self._recovery

    @property
    def requests(self) -> RequestRepository:
        assert self._requests is not None, "runtime not started"
        return self._requests

    @property
    def guilds(self) -> GuildRepository:
        assert self._guilds is not None, "runtime not started"
        return self._guilds

    @property
    def favourites(self) -> FavouriteRepository:
        assert self._favourites is not None, "runtime not started"
        return self._favourites

    @property
    def settings_repo(self) -> SettingsRepository:
        assert self._settings_repo is not None, "runtime not started"
        return self._settings_repo

    @property
    def styles(self) -> StyleService:
        assert self._styles is not None, "runtime not started"
        return self._styles

    @property
    def policy(self) -> PolicyService:
        assert self._policy is not None, "runtime not started"
        return self._policy

    @property
    def library(self) -> LibraryService:
        assert self._library is not None, "runtime not started"
        return self._library
