"""CreationService cancel/interrupt rules and RecoveryService, on real SQLite and engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.domain import NewRequest, RequestStatus
from bot.generation.engine import Engine, EngineConfig
from bot.services.creations import RESUME_FAILED, CancelOutcome, CreationService, Requester
from bot.services.recovery import RecoveryService
from bot.storage.repositories import RequestRepository
from tests.bots import sung
from tests.fakes import FakeStepBackend
from tests.integration.services_kit import (
    CHANNEL,
    GUILD,
    MEMBER,
    OTHER_GUILD,
    STRANGER,
    Kit,
    creation_service,
    open_kit,
)

# Free verse: one candidate, so the fake sings back exactly the request.
INPUTS = {"theme": "rain", "form": "free verse", "length": "medium"}


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    async with open_kit(tmp_path) as opened:
        yield opened


@pytest.fixture
def requests(kit: Kit) -> RequestRepository:
    return kit.requests


@pytest.fixture
async def backend() -> AsyncIterator[FakeStepBackend]:
    fake = FakeStepBackend(manual_steps=True)
    yield fake
    fake.open()


@pytest.fixture
async def engine(backend: FakeStepBackend) -> AsyncIterator[Engine]:
    engine = Engine(backend, EngineConfig(close_timeout_s=1))
    await engine.start()
    yield engine
    backend.open()
    await engine.close()


async def submit(service: CreationService, guild: int | None = GUILD) -> int:
    submission = await service.submit(
        Requester(guild, CHANNEL, MEMBER, application_id=5, interaction_token="tok"),
        "poem",
        INPUTS,
    )
    return submission.request_id


async def test_cancel_is_scoped_by_guild_and_by_who_asked(
    kit: Kit, requests: RequestRepository, engine: Engine
) -> None:
    service = creation_service(kit, engine)
    request_id = await submit(service)
    # Another server naming the same id finds nothing, even as a moderator there.
    assert (
        await service.cancel(OTHER_GUILD, request_id, user_id=STRANGER, moderator=True)
        is CancelOutcome.NOT_RUNNING
    )
    assert (
        await service.cancel(GUILD, request_id, user_id=STRANGER, moderator=False)
        is CancelOutcome.NOT_ALLOWED
    )
    assert engine.get(str(request_id)) is not None
    assert (
        await service.cancel(GUILD, request_id, user_id=MEMBER, moderator=False)
        is CancelOutcome.CANCELLED
    )
    await service.settled(request_id)
    row = await requests.get(GUILD, request_id)
    assert row is not None and row.status is RequestStatus.CANCELLED
    assert (
        await service.cancel(GUILD, request_id, user_id=MEMBER, moderator=False)
        is CancelOutcome.NOT_RUNNING
    )


async def test_a_dm_request_is_only_cancellable_by_its_member(
    kit: Kit, requests: RequestRepository, engine: Engine
) -> None:
    service = creation_service(kit, engine)
    request_id = await submit(service, guild=None)
    assert (
        await service.cancel(None, request_id, user_id=STRANGER, moderator=True)
        is CancelOutcome.NOT_RUNNING
    )
    assert (
        await service.cancel(None, request_id, user_id=MEMBER, moderator=False)
        is CancelOutcome.CANCELLED
    )


async def test_a_shutdown_interrupts_without_recording_and_a_restart_resumes(
    kit: Kit, requests: RequestRepository, backend: FakeStepBackend
) -> None:
    engine = Engine(backend, EngineConfig(close_timeout_s=0))
    await engine.start()
    service = creation_service(kit, engine)
    request_id = await submit(service)
    service.begin_shutdown()
    await engine.close()
    await service.close()
    row = await requests.get(GUILD, request_id)
    assert row is not None and not row.is_finished and not row.is_delivered

    restarted = Engine(FakeStepBackend(script=sung), EngineConfig())
    await restarted.start()
    try:
        creations = creation_service(kit, restarted)
        (item,) = await RecoveryService(creations, requests, clock=kit.clock).recover()
        assert item.submission is not None and item.submission.request_id == request_id
        assert item.token_usable_until is not None
        await item.submission.job.wait()
        await creations.settled(request_id)
        row = await requests.get(GUILD, request_id)
        assert row is not None and row.status is RequestStatus.DONE
        assert row.output == "♪ Write a free verse poem about rain."
    finally:
        await restarted.close()


async def test_recovery_forgets_old_tokens_and_fails_unknown_commands_clearly(
    kit: Kit, requests: RequestRepository, engine: Engine
) -> None:
    old = await requests.create(
        NewRequest(
            guild_id=GUILD,
            channel_id=CHANNEL,
            user_id=MEMBER,
            command="opera",  # from a newer version: no prompt builder here
            inputs={"theme": "x"},
            application_id=5,
            interaction_token="tok",
        )
    )
    later = kit.clock.now + timedelta(minutes=20)
    service = creation_service(kit, engine)
    (item,) = await RecoveryService(service, requests, clock=lambda: later).recover()
    assert item.submission is None
    assert item.record.id == old.id and item.record.status is RequestStatus.FAILED
    assert item.record.error == RESUME_FAILED
    assert item.record.interaction_token is None  # expired, so forgotten
    assert item.token_usable_until is None
