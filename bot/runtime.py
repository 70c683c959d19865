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
from bot.services.recovery import RecoveryService
from bot.storage.database import Database
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

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._db = await Database.open(settings.database_path)
        self._requests = requests = RequestRepository(self._db)
        self._guilds = GuildRepository(self._db)
        if settings.backend == "openai":
            self._engine = build_remote_engine(settings)
        else:
            # Loading the model takes seconds: keep the event loop free meanwhile.
            backend = await asyncio.to_thread(self._backend_factory, settings)
            self._engine = Engine(backend, EngineConfig.from_settings(settings))
        await self._engine.start()
        self._creations = CreationService(self._engine, requests, settings)
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
