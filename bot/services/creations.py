"""Creating things: accept a request, persist it, run it on the engine, record the result.

Cogs call this; it knows nothing about Discord. A request is written to SQLite
before the member is answered, so nothing accepted is ever lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.domain import NewRequest, RequestStatus
from bot.errors import UserFacingError
from bot.generation.backend import ChatMessage, SamplingParams
from bot.generation.engine import Engine
from bot.generation.jobs import GenerationRequest, Job, JobState
from bot.prompts import clean_output
from bot.storage.repositories import RequestRepository

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked, where, and how to answer them later."""

    guild_id: int | None
    channel_id: int
    user_id: int
    application_id: int | None = None
    # Lets whoever holds it answer as the bot for 15 minutes: never in a repr or log.
    interaction_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Submission:
    request_id: int
    job: Job


_FINAL_STATUS = {
    JobState.DONE: RequestStatus.DONE,
    JobState.FAILED: RequestStatus.FAILED,
    JobState.CANCELLED: RequestStatus.CANCELLED,
    JobState.TIMED_OUT: RequestStatus.TIMED_OUT,
}


class CreationService:
    def __init__(self, engine: Engine, requests: RequestRepository) -> None:
        self._engine = engine
        self._requests = requests
        self._recorders: set[asyncio.Task[None]] = set()

    async def submit(
        self,
        requester: Requester,
        command: str,
        inputs: Mapping[str, Any],
        messages: tuple[ChatMessage, ...],
        params: SamplingParams,
    ) -> Submission:
        """Persist the request, then queue it. Raises ``LimitReached`` when refused."""
        record = await self._requests.create(
            NewRequest(
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                user_id=requester.user_id,
                command=command,
                inputs=inputs,
                application_id=requester.application_id,
                interaction_token=requester.interaction_token,
            )
        )
        try:
            job = self._engine.submit(
                GenerationRequest(
                    messages=messages,
                    params=params,
                    guild_id=requester.guild_id,
                    user_id=requester.user_id,
                    job_id=str(record.id),
                )
            )
        except UserFacingError as refusal:
            # Refused requests stay on record (and count as answered: the member saw why).
            await self._requests.finish(record.id, RequestStatus.FAILED, error=refusal.message)
            await self._requests.mark_delivered(record.id)
            raise
        recorder = asyncio.create_task(self._record(record.id, job), name=f"record-{record.id}")
        self._recorders.add(recorder)
        recorder.add_done_callback(self._recorders.discard)
        return Submission(record.id, job)

    async def _record(self, request_id: int, job: Job) -> None:
        """Mirror the job's life into its row: running when it starts, the outcome at the end."""
        try:
            async for _ in job.updates():
                if job.state is JobState.RUNNING:
                    await self._requests.mark_running(request_id)
                    break
            await job.wait()
            timings = job.timings
            first_token_ms = None
            if timings.first_token_at is not None:
                first_token_ms = round((timings.first_token_at - timings.submitted_at) * 1000)
            await self._requests.finish(
                request_id,
                _FINAL_STATUS[job.state],
                output=clean_output(job.text) or None,
                error=job.error,
                generated_tokens=job.generated_tokens,
                first_token_ms=first_token_ms,
            )
        except Exception:
            log.exception("could not record the outcome of request %s", request_id)

    async def mark_delivered(self, request_id: int, message_id: int | None = None) -> bool:
        """True for the one caller that delivered the final answer (exactly once)."""
        return await self._requests.mark_delivered(request_id, message_id=message_id)

    async def close(self) -> None:
        """Let in-flight recorders write their outcome before the database closes."""
        if self._recorders:
            await asyncio.wait(set(self._recorders), timeout=5)
