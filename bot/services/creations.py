"""Creating things: accept a request, persist it, run it on the engine, record the result.

Cogs call this; it knows nothing about Discord. A request is written to SQLite
before the member is answered, so nothing accepted is ever lost.

A job the engine stops because the bot is shutting down is *interrupted*, not
cancelled: its row is left queued/running and undelivered so the next start runs it
again (``RecoveryService``). Only a member's Cancel records the status 'cancelled'.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.domain import NewRequest, RequestRecord, RequestStatus
from bot.errors import UserFacingError
from bot.generation.backend import ChatMessage, SamplingParams
from bot.generation.engine import Engine
from bot.generation.jobs import GenerationRequest, Job, JobState
from bot.prompts import build_prompt, clean_output
from bot.storage.repositories import RequestRepository

if TYPE_CHECKING:
    from bot.config import Settings

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


class CancelOutcome(enum.Enum):
    CANCELLED = "cancelled"
    NOT_ALLOWED = "not_allowed"  # neither the requester nor a moderator
    NOT_RUNNING = "not_running"  # unknown here, already finished, or not resumed yet


RESUME_FAILED = "I could not pick this request up again after a restart. Please ask again."

_FINAL_STATUS = {
    JobState.DONE: RequestStatus.DONE,
    JobState.FAILED: RequestStatus.FAILED,
    JobState.CANCELLED: RequestStatus.CANCELLED,
    JobState.TIMED_OUT: RequestStatus.TIMED_OUT,
}


class CreationService:
    def __init__(
        self, engine: Engine, requests: RequestRepository, settings: Settings | None = None
    ) -> None:
        self._engine = engine
        self._requests = requests
        self._settings = settings
        self._recorders: dict[int, asyncio.Task[None]] = {}
        self._cancelled_by_member: set[int] = set()
        self._closing = False

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
        return self._follow(record.id, job)

    async def resume(self, record: RequestRecord) -> Submission | None:
        """Run an unfinished stored request again (after a restart), under its own id.

        The prompt is rebuilt from the stored inputs. If it cannot be queued, the row is
        finished as failed (with a reason for the member) and None is returned: the
        caller delivers that outcome like any other finished row.
        """
        assert self._settings is not None, "resume() needs the settings"
        try:
            prompt = build_prompt(record.command, record.inputs, self._settings)
            job = self._engine.submit(
                GenerationRequest(
                    messages=prompt.messages,
                    params=prompt.params,
                    guild_id=record.guild_id,
                    user_id=record.user_id,
                    job_id=str(record.id),
                )
            )
        except (UserFacingError, ValueError, KeyError) as refusal:
            reason = refusal.message if isinstance(refusal, UserFacingError) else RESUME_FAILED
            log.warning("request %s could not be resumed: %s", record.id, refusal)
            await self._requests.finish(record.id, RequestStatus.FAILED, error=reason)
            return None
        return self._follow(record.id, job)

    def _follow(self, request_id: int, job: Job) -> Submission:
        recorder = asyncio.create_task(self._record(request_id, job), name=f"record-{request_id}")
        self._recorders[request_id] = recorder
        recorder.add_done_callback(lambda _: self._recorders.pop(request_id, None))
        return Submission(request_id, job)

    async def cancel(
        self, guild_id: int | None, request_id: int, *, user_id: int, moderator: bool
    ) -> CancelOutcome:
        """A member's Cancel: only the requester or a moderator may stop a live job.

        The row is looked up by (guild, id), so one server can never reach another's
        job; in DMs (guild None) only the member's own requests are visible.
        """
        record = await self._requests.get(
            guild_id, request_id, user_id=user_id if guild_id is None else None
        )
        if record is None:
            return CancelOutcome.NOT_RUNNING
        if record.user_id != user_id and not moderator:
            return CancelOutcome.NOT_ALLOWED
        job = self._engine.get(str(request_id))
        if record.is_finished or job is None:
            return CancelOutcome.NOT_RUNNING
        # Noted before cancelling: the recorder must see it when the job ends.
        self._cancelled_by_member.add(request_id)
        if not job.cancel():
            self._cancelled_by_member.discard(request_id)
            return CancelOutcome.NOT_RUNNING
        return CancelOutcome.CANCELLED

    def interrupted(self, request_id: int, job: Job) -> bool:
        """True when the job ended only because the bot is shutting down: it must be
        neither recorded nor delivered, so the next start runs it again."""
        return (
            job.state is JobState.CANCELLED
            and self._closing
            and request_id not in self._cancelled_by_member
        )

    async def settled(self, request_id: int) -> None:
        """Wait until the job's outcome is written, so delivery follows the record."""
        recorder = self._recorders.get(request_id)
        if recorder is not None:
            await asyncio.shield(recorder)

    async def _record(self, request_id: int, job: Job) -> None:
        """Mirror the job's life into its row: running when it starts, the outcome at the end."""
        try:
            async for _ in job.updates():
                if job.state is JobState.RUNNING:
                    await self._requests.mark_running(request_id)
                    break
            await job.wait()
            if self.interrupted(request_id, job):
                log.info("request %s interrupted by shutdown; it will run again", request_id)
                return
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
        finally:
            self._cancelled_by_member.discard(request_id)

    async def claim_delivery(self, request_id: int, message_id: int | None = None) -> bool:
        """The single exactly-once gate: True for the one caller that may now send the
        final answer. Claimed *before* sending: a crash between claim and send loses
        that one message (the result stays stored) but can never show it twice."""
        return await self._requests.mark_delivered(request_id, message_id=message_id)

    async def attach_message(self, request_id: int, message_id: int) -> None:
        await self._requests.attach_message(request_id, message_id)

    def begin_shutdown(self) -> None:
        """From now on, jobs the engine stops are interruptions, not cancellations."""
        self._closing = True

    async def close(self) -> None:
        """Let in-flight recorders write their outcome before the database closes."""
        self._closing = True
        if self._recorders:
            await asyncio.wait(set(self._recorders.values()), timeout=5)
