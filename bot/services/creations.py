"""Creating things: accept a request, persist it, run it on the engine, record the result.

Cogs call this; it knows nothing about Discord. A request is written to SQLite
before the member is answered, so nothing accepted is ever lost. Before that, the
server's rules (``PolicyService``) and styles (``StyleService``) apply; the prompt is
built from the stored inputs alone, so a restart rebuilds exactly the same one.

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

from bot.domain import GuildSettings, NewRequest, RequestRecord, RequestStatus, Style
from bot.errors import InvalidInput, UserFacingError
from bot.generation.engine import Engine
from bot.generation.jobs import GenerationRequest, Job, JobState
from bot.prompts import Prompt, PromptContext, build_prompt, clean_output
from bot.storage.repositories import RequestRepository

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.services.policy import PolicyService
    from bot.services.styles import StyleService
    from bot.storage.library import FavouriteRepository

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


# Favourites shown to the model as community taste, best first; the prompt keeps as
# many whole ones as fit in Settings.taste_max_chars.
TASTE_EXAMPLES = 5

RESUME_FAILED = "I could not pick this request up again after a restart. Please ask again."

_FINAL_STATUS = {
    JobState.DONE: RequestStatus.DONE,
    JobState.FAILED: RequestStatus.FAILED,
    JobState.CANCELLED: RequestStatus.CANCELLED,
    JobState.TIMED_OUT: RequestStatus.TIMED_OUT,
}


class CreationService:
    def __init__(
        self,
        engine: Engine,
        requests: RequestRepository,
        settings: Settings,
        *,
        policy: PolicyService,
        styles: StyleService,
        favourites: FavouriteRepository,
    ) -> None:
        self._engine = engine
        self._requests = requests
        self._settings = settings
        self._policy = policy
        self._styles = styles
        self._favourites = favourites
        self._recorders: dict[int, asyncio.Task[None]] = {}
        self._cancelled_by_member: set[int] = set()
        self._closing = False

    async def submit(
        self,
        requester: Requester,
        command: str,
        inputs: Mapping[str, Any],
        *,
        channel_nsfw: bool = False,
    ) -> Submission:
        """Check, persist, then queue a member's request.

        ``inputs`` are the member's choices (an explicit ``style`` name among them, if
        any). Raises ``InvalidInput``/``LimitReached`` with the reason when refused;
        nothing is stored for a request the server's rules refuse.
        """
        chosen = inputs.get("style")
        style = await self._styles.resolve(
            requester.guild_id,
            requester.channel_id,
            command,
            chosen if isinstance(chosen, str) else None,
        )
        settings = await self._policy.check(
            requester, command, inputs, style=style, channel_nsfw=channel_nsfw
        )
        # The resolved name is stored, so a restart or a Regenerate writes in the same
        # voice even if the channel's default changes meanwhile.
        stored = {key: value for key, value in inputs.items() if key != "style"}
        if style is not None:
            stored["style"] = style.name
        # Built before storing: an input the builder rejects leaves no row behind.
        prompt = await self._prompt(requester.guild_id, command, stored, style, settings)
        record = await self._requests.create(
            NewRequest(
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                user_id=requester.user_id,
                command=command,
                inputs=stored,
                application_id=requester.application_id,
                interaction_token=requester.interaction_token,
            )
        )
        try:
            job = self._engine.submit(self._generation(prompt, record))
        except UserFacingError as refusal:
            # Refused requests stay on record (and count as answered: the member saw why).
            await self._requests.finish(record.id, RequestStatus.FAILED, error=refusal.message)
            await self._requests.mark_delivered(record.id)
            raise
        return self._follow(record.id, job)

    async def resume(self, record: RequestRecord) -> Submission | None:
        """Run an unfinished stored request again (after a restart), under its own id.

        The prompt is rebuilt from the stored inputs the same way ``submit`` built it.
        A style deleted since is left out rather than failing the request. If it cannot
        be queued, the row is finished as failed (with a reason for the member) and None
        is returned: the caller delivers that outcome like any other finished row.
        """
        try:
            style = await self._stored_style(record)
            settings = await self._policy.settings(record.guild_id)
            prompt = await self._prompt(
                record.guild_id, record.command, record.inputs, style, settings
            )
            job = self._engine.submit(self._generation(prompt, record))
        except (UserFacingError, ValueError, KeyError) as refusal:
            reason = refusal.message if isinstance(refusal, UserFacingError) else RESUME_FAILED
            log.warning("request %s could not be resumed: %s", record.id, refusal)
            await self._requests.finish(record.id, RequestStatus.FAILED, error=reason)
            return None
        return self._follow(record.id, job)

    async def _stored_style(self, record: RequestRecord) -> Style | None:
        name = record.inputs.get("style")
        if not isinstance(name, str) or not name:
            return None  # stored without a style: defaults added since do not apply
        try:
            return await self._styles.resolve(
                record.guild_id, record.channel_id, record.command, name
            )
        except InvalidInput:
            log.info("request %s: style %r is gone; writing without it", record.id, name)
            return None

    async def _prompt(
        self,
        guild_id: int | None,
        command: str,
        inputs: Mapping[str, Any],
        style: Style | None,
        settings: GuildSettings,
    ) -> Prompt:
        examples: tuple[str, ...] = ()
        if settings.community_taste and guild_id is not None:
            favourites = await self._favourites.examples(
                guild_id, command, None if style is None else style.name, TASTE_EXAMPLES
            )
            # Masked like any output: blocked words must not reach the model as examples.
            examples = tuple(self._policy.mask(r.output, settings) for r in favourites if r.output)
        return build_prompt(command, inputs, self._settings, PromptContext(style, examples))

    def _generation(self, prompt: Prompt, record: RequestRecord) -> GenerationRequest:
        return GenerationRequest(
            messages=prompt.messages,
            params=prompt.params,
            guild_id=record.guild_id,
            user_id=record.user_id,
            job_id=str(record.id),
            # More candidates than the batch holds could never be dispatched.
            n=max(1, min(prompt.candidates, self._engine.capacity)),
            choose=prompt.choose,
        )

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
