"""What a caller holds while its text is written: the request, the ``Job`` and its stream.

A ``Job`` lives on the event loop. Only the engine changes it (through the underscore
methods below); cogs and services read it, ``await job.wait()`` or iterate
``job.updates()``. Nothing here knows about threads, models or Discord.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from bot.generation.backend import ChatMessage, FinishReason, SamplingParams, SequenceUpdate

JobFinishReason = FinishReason | Literal["stop"]
"""Why a DONE job ended: end of text, token budget, or one of its stop strings."""


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything the engine needs to schedule and run one piece of writing."""

    messages: tuple[ChatMessage, ...]
    params: SamplingParams
    guild_id: int | None  # None: a DM; all DMs share one fairness bucket
    user_id: int
    # A durable job passes its own id (e.g. a DB row id) so buttons and rows can find
    # it again; otherwise the engine makes a fresh uuid hex.
    job_id: str | None = None
    # Candidates sampled from the same prompt and run side by side (best-of-n): each
    # takes a worker slot, but the job counts once for queue place and limits.
    n: int = 1
    # Picks the winner among the texts of the candidates that finished (an index into
    # that sequence); None keeps the first. A function is not data: it stays out of
    # equality and repr.
    choose: Callable[[Sequence[str]], int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a generation request needs at least one message")
        if self.params.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.n < 1:
            raise ValueError("a generation request needs at least one candidate (n >= 1)")


@dataclass(slots=True)
class JobTimings:
    """``*_at`` are ``time.monotonic()`` readings; ``*_wall`` are for people and storage."""

    submitted_at: float
    submitted_wall: datetime
    started_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    started_wall: datetime | None = None
    finished_wall: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """An immutable view of a job at one moment, as ``Job.updates()`` yields it."""

    id: str
    state: JobState
    text: str
    position: int | None
    generated_tokens: int
    finish_reason: JobFinishReason | None
    error: str | None


class StopFilter:
    """Applies stop strings to streamed text.

    Text that could still grow into a stop string is held back, so a member never sees
    half of a stop marker flash by before it is cut.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._raw = ""
        self.visible = ""
        self.stopped = False

    def feed(self, delta: str) -> None:
        if self.stopped or not delta:
            return
        before = len(self._raw)
        self._raw += delta
        if not self._stops:
            self.visible = self._raw
            return
        # Any new match must end inside ``delta``: the old text held none.
        start = max(0, before - self._longest + 1)
        hits = [i for s in self._stops if (i := self._raw.find(s, start)) != -1]
        if hits:
            self.visible = self._raw[: min(hits)]
            self.stopped = True
            return
        self.visible = self._raw[: len(self._raw) - self._held_back()]

    def flush(self) -> None:
        """No more text is coming, so a held-back tail cannot become a stop string."""
        if not self.stopped:
            self.visible = self._raw

    def _held_back(self) -> int:
        for size in range(min(self._longest - 1, len(self._raw)), 0, -1):
            tail = self._raw[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0


@dataclass(slots=True)
class _Candidate:
    """One of a job's sampled texts (a job has ``request.n`` of them)."""

    filter: StopFilter
    tokens: int = 0
    finish_reason: JobFinishReason | None = None  # set when it finished writing
    error: str | None = None  # set when it failed

    @property
    def ended(self) -> bool:
        return self.finish_reason is not None or self.error is not None


class Job:
    """One request's life on the event loop: queue position, streamed text, outcome.

    A request with ``n > 1`` writes several candidates at once; ``text`` follows
    candidate 0 while they are written and is the chosen one once the job is DONE.
    """

    def __init__(
        self,
        request: GenerationRequest,
        *,
        submitted_at: float,
        on_cancel: Callable[[Job], bool],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._request = request
        self._id = request.job_id or uuid.uuid4().hex
        self._on_cancel = on_cancel
        self._state = JobState.QUEUED
        self._candidates = [_Candidate(StopFilter(request.params.stop)) for _ in range(request.n)]
        self._chosen: int | None = None
        self._position: int | None = None
        self._finish_reason: JobFinishReason | None = None
        self._error: str | None = None
        self.timings = JobTimings(submitted_at=submitted_at, submitted_wall=_now())
        self._done: asyncio.Future[None] = self._loop.create_future()
        # Change signalling: a version number plus one shared future per "next change".
        # A slow reader just sees the newest version; nothing is buffered.
        self._version = 0
        self._changed: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        state, tokens = self._state.value, self.generated_tokens
        return f"<Job {self._id} {state} n={self._request.n} tokens={tokens}>"

    # -- what callers read ------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def request(self) -> GenerationRequest:
        return self._request

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state.terminal

    @property
    def text(self) -> str:
        """The text so far (final once ``done``), stop strings already applied.

        Candidate 0's text until the job is DONE, then the chosen candidate's.
        """
        return self._candidates[self._chosen or 0].filter.visible

    @property
    def candidates(self) -> tuple[str, ...]:
        """Every candidate's text so far, in candidate order (one item when ``n == 1``)."""
        return tuple(c.filter.visible for c in self._candidates)

    @property
    def chosen(self) -> int | None:
        """Which candidate ``text`` is, once the job is DONE; None before or otherwise."""
        return self._chosen

    @property
    def position(self) -> int | None:
        """1-based place in line while QUEUED; None otherwise."""
        return self._position

    @property
    def generated_tokens(self) -> int:
        """Tokens generated over all candidates."""
        return sum(c.tokens for c in self._candidates)

    @property
    def finish_reason(self) -> JobFinishReason | None:
        """Set when the job is DONE."""
        return self._finish_reason

    @property
    def error(self) -> str | None:
        """A message for the member when the job FAILED, TIMED_OUT or was stopped."""
        return self._error

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(
            id=self._id,
            state=self._state,
            text=self.text,
            position=self._position,
            generated_tokens=self.generated_tokens,
            finish_reason=self._finish_reason,
            error=self._error,
        )

    def cancel(self) -> bool:
        """Stop the job, keeping any partial text. False if it had already ended."""
        return self._on_cancel(self)

    async def wait(self) -> Job:
        """Return once the job has ended (the engine's time limit bounds the wait)."""
        # Shielded so that cancelling one waiter does not cancel the shared future.
        await asyncio.shield(self._done)
        return self

    async def updates(self) -> AsyncIterator[JobSnapshot]:
        """Yield the latest snapshot now and after each change, ending with the terminal one.

        Changes that happen while the reader is busy are coalesced into one snapshot.
        """
        seen = -1
        while True:
            if self._version == seen:
                if self._changed is None:
                    self._changed = self._loop.create_future()
                await asyncio.shield(self._changed)
            seen = self._version
            snapshot = self.snapshot()
            yield snapshot
            if snapshot.state.terminal:
                return

    # -- engine-only mutators ------------------------------------------------------------

    def _set_position(self, position: int | None) -> None:
        if position != self._position:
            self._position = position
            self._notify()

    def _mark_running(self, started_at: float) -> None:
        self._state = JobState.RUNNING
        self._position = None
        self.timings.started_at = started_at
        self.timings.started_wall = _now()
        self._notify()

    def _apply(self, index: int, update: SequenceUpdate, at: float) -> bool:
        """Take one step's output for candidate ``index``; True if a stop string has now
        ended that candidate's text."""
        if self.timings.first_token_at is None:
            self.timings.first_token_at = at
        candidate = self._candidates[index]
        candidate.tokens = update.generated_tokens
        candidate.filter.feed(update.text_delta)
        self._notify()
        return candidate.filter.stopped

    def _end_candidate(
        self,
        index: int,
        *,
        finish_reason: JobFinishReason | None = None,
        error: str | None = None,
    ) -> bool:
        """Record how candidate ``index`` ended; True once every candidate has ended."""
        assert (finish_reason is None) != (error is None), (finish_reason, error)
        candidate = self._candidates[index]
        if finish_reason is not None:
            candidate.filter.flush()
        candidate.finish_reason = finish_reason
        candidate.error = error
        return all(c.ended for c in self._candidates)

    def _finished_candidates(self) -> list[int]:
        """Indices of the candidates that finished writing (not failed, not cut off)."""
        return [i for i, c in enumerate(self._candidates) if c.finish_reason is not None]

    def _candidate_finish_reason(self, index: int) -> JobFinishReason | None:
        return self._candidates[index].finish_reason

    def _first_error(self) -> str | None:
        return next((c.error for c in self._candidates if c.error is not None), None)

    def _finish(
        self,
        state: JobState,
        at: float,
        *,
        finish_reason: JobFinishReason | None = None,
        error: str | None = None,
        chosen: int | None = None,
    ) -> None:
        assert state.terminal and not self.done, (state, self._state)
        assert (chosen is not None) == (state is JobState.DONE), (state, chosen)
        for candidate in self._candidates:
            candidate.filter.flush()
        self._state = state
        self._position = None
        self._finish_reason = finish_reason
        self._error = error
        self._chosen = chosen
        self.timings.finished_at = at
        self.timings.finished_wall = _now()
        self._done.set_result(None)
        self._notify()

    def _notify(self) -> None:
        self._version += 1
        if self._changed is not None:
            self._changed.set_result(None)
            self._changed = None


def _now() -> datetime:
    return datetime.now(UTC)
