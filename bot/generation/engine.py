"""The generation engine: queue, limits, fairness, batching, time budgets, streaming.

Two halves, so a remote server can replace the local model without touching the rest:

* ``Engine`` lives on the event loop. It admits requests (``Limits``), orders them
  (``FairQueue``), owns every ``Job`` and its deadline, and hands work to a ``Worker``
  only while the worker has room, so fairness decides who runs next, not arrival order.
* A ``Worker`` runs sequences and reports back on the loop. ``LocalWorker`` drives a
  ``StepBackend`` on one dedicated thread, the way aiosqlite drives sqlite3: a queue in,
  ``loop.call_soon_threadsafe`` out. The event loop never waits on the model.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from bot.errors import GenerationFailed, LimitReached
from bot.generation.backend import SamplingParams, SequenceInput, SequenceUpdate, StepBackend
from bot.generation.jobs import GenerationRequest, Job, JobFinishReason, JobState
from bot.generation.scheduler import FairQueue, Limits

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

ADD_FAILED = "The model could not start writing this request. Please try again."
STEP_FAILED = "The model ran into an error while writing this. Please try again."
QUEUE_TIMEOUT = "This request waited too long in the queue. Please try again in a minute."
RUN_TIMEOUT = "This took longer than the time limit, so it was stopped here."
SHUTDOWN = "The bot is shutting down, so this request was stopped. Please try again soon."
CLOSED = "The bot is shutting down and is not taking new requests. Please try again soon."


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's knobs; names match ``Settings`` so ``from_settings`` is a plain copy."""

    queue_limit: int = 256
    guild_queue_limit: int = 32
    member_inflight_limit: int = 2
    # Counted from submission, queue included: it bounds how long a member ever waits.
    job_timeout_s: float = 180.0
    max_batch_size: int = 32
    # How long close() waits for a model call in progress before leaving the thread.
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("queue_limit", "guild_queue_limit", "member_inflight_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.job_timeout_s <= 0 or self.close_timeout_s < 0:
            raise ValueError("job_timeout_s must be positive and close_timeout_s not negative")

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        return cls(
            queue_limit=settings.queue_limit,
            guild_queue_limit=settings.guild_queue_limit,
            member_inflight_limit=settings.member_inflight_limit,
            job_timeout_s=settings.job_timeout_s,
            max_batch_size=settings.max_batch_size,
        )


@dataclass(frozen=True, slots=True)
class EngineStats:
    queued: int  # waiting, including those handed to the worker but not yet started
    running: int
    capacity: int  # how many sequences the worker runs at once
    submitted: int
    refused: int
    done: int
    cancelled: int
    failed: int
    timed_out: int


# -- the worker side -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What a worker tells the engine; always delivered on the event loop."""

    at: float  # time.monotonic() when the report was made
    started: tuple[int, ...] = ()  # sequences that entered the batch
    started_at: float = 0.0  # when they began (before prefill)
    updates: tuple[SequenceUpdate, ...] = ()
    failed: tuple[tuple[int, str], ...] = ()  # (seq_id, message for the member)
    released: tuple[int, ...] = ()  # sequences the worker no longer holds (room freed)

    def __bool__(self) -> bool:
        return bool(self.started or self.updates or self.failed or self.released)


ReportSink = Callable[[WorkerReport], None]


class Worker(Protocol):
    """Runs sequences handed over by the engine; the engine never exceeds ``capacity``.

    Every dispatched sequence is eventually ``released`` (finished, failed, cancelled),
    which is how the engine knows it may dispatch more.
    """

    @property
    def capacity(self) -> int: ...

    async def start(self, sink: ReportSink) -> None:
        """Begin work; ``sink`` must only be called on the event loop."""
        ...

    def dispatch(self, sequences: Sequence[SequenceInput]) -> None:
        """Take new sequences; must not block (called on the loop)."""
        ...

    def cancel(self, seq_ids: Collection[int]) -> None:
        """Drop these sequences soon (unknown or finished ids are ignored)."""
        ...

    async def close(self) -> None:
        """Stop working; bounded in time."""
        ...


class LocalWorker:
    """Drives a ``StepBackend`` on one daemon thread with continuous batching.

    At every step boundary the thread removes cancelled sequences, prefills all newly
    dispatched ones in one ``add`` call, then decodes one token for the whole batch, so
    short requests leave as soon as they finish and newcomers never wait for the longest.
    """

    def __init__(
        self,
        backend: StepBackend,
        max_batch_size: int,
        *,
        close_timeout_s: float = 5.0,
        name: str = "atelier-generation",
        join_chunk: int | None = None,
    ) -> None:
        self._backend = backend
        # At most this many sequences join per step (None: as many as there is room
        # for). Chunking a burst lets its first requests stream sooner, but measured
        # with SmolLM2 on 2 cores, chunks of 8 cost 10-15% throughput for no better
        # median first token (the backend's packed prefill is already cheap), so the
        # default admits the whole burst at once.
        self._join_chunk = max(1, join_chunk) if join_chunk is not None else 1 << 30
        self._capacity = max(1, min(max_batch_size, backend.max_batch_size))
        self._close_timeout_s = close_timeout_s
        self._name = name
        self._cond = threading.Condition()
        # Guarded by _cond: the only state shared with the loop.
        self._inbox: list[SequenceInput] = []
        self._cancelled: set[int] = set()
        self._stopping = False
        self._dead = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: ReportSink | None = None
        self._exited: asyncio.Future[None] | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    async def start(self, sink: ReportSink) -> None:
        if self._thread is not None:
            raise RuntimeError("LocalWorker.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        self._exited = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def dispatch(self, sequences: Sequence[SequenceInput]) -> None:
        with self._cond:
            if not self._dead:
                self._inbox.extend(sequences)
                self._cond.notify()
                return
        # The thread is gone: fail at once rather than let the jobs wait for a deadline.
        ids = tuple(s.seq_id for s in sequences)
        self._emit(WorkerReport(time.monotonic(), failed=_each(ids, ADD_FAILED), released=ids))

    def cancel(self, seq_ids: Collection[int]) -> None:
        with self._cond:
            self._cancelled.update(seq_ids)
            self._cond.notify()

    async def close(self) -> None:
        if self._thread is None or self._exited is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify()
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), self._close_timeout_s)
        except TimeoutError:
            # A model call is stuck; the daemon thread will not keep the process alive.
            log.warning(
                "generation thread still busy after %.1fs; leaving it behind",
                self._close_timeout_s,
            )

    # -- on the generation thread ------------------------------------------------------

    def _run(self) -> None:
        log.info("generation thread started (batch up to %d)", self._capacity)
        held: set[int] = set()  # sequences inside the backend
        admit: list[SequenceInput] = []
        try:
            while True:
                with self._cond:
                    while not (self._stopping or self._inbox or self._cancelled or held):
                        self._cond.wait()
                    if self._stopping:
                        break
                    cancelled, self._cancelled = self._cancelled, set()
                    dropped = [s.seq_id for s in self._inbox if s.seq_id in cancelled]
                    waiting = [s for s in self._inbox if s.seq_id not in cancelled]
                    room = min(max(0, self._capacity - len(held)), self._join_chunk)
                    admit, self._inbox = waiting[:room], waiting[room:]
                self._tick(held, admit, cancelled & held, dropped)
        except BaseException:
            # A bug here must not strand jobs: fail everything this worker holds.
            log.exception("generation thread crashed")
            with self._cond:
                self._dead = True
                taken = [*held, *(s.seq_id for s in admit), *(s.seq_id for s in self._inbox)]
                lost = tuple(dict.fromkeys(taken))  # admitted ones may also be held
                self._inbox = []
            self._emit(
                WorkerReport(time.monotonic(), failed=_each(lost, STEP_FAILED), released=lost)
            )
        finally:
            self._reset()
            log.info("generation thread stopped")
            if self._loop is not None and self._exited is not None:
                self._call_on_loop(_resolve, self._exited)

    def _tick(
        self,
        held: set[int],
        admit: list[SequenceInput],
        remove: set[int],
        dropped: list[int],
    ) -> None:
        """One step boundary: leave, join, then decode one token for everyone."""
        released: list[int] = list(dropped)
        failed: list[tuple[int, str]] = []
        if remove:
            released += remove
            held -= remove
            try:
                self._backend.remove(remove)
            except Exception:
                log.exception("backend.remove failed; failing the running batch")
                failed += _each(tuple(held), STEP_FAILED)
                released += held
                held.clear()
                self._reset()

        started: tuple[int, ...] = ()
        started_at = time.monotonic()
        updates: list[SequenceUpdate] = []
        if admit:
            started, updates, refused = self._admit(admit)
            failed += _each(refused, ADD_FAILED)
            released += refused
            held.update(started)
            released += _finished(updates, held)
        self._emit(
            WorkerReport(
                time.monotonic(),
                started=started,
                started_at=started_at,
                updates=tuple(updates),
                failed=tuple(failed),
                released=tuple(released),
            )
        )

        if not held:
            return
        try:
            updates = self._backend.step()
        except Exception:
            log.exception("backend.step failed; failing %d running sequences", len(held))
            lost = tuple(held)
            held.clear()
            self._reset()
            self._emit(
                WorkerReport(time.monotonic(), failed=_each(lost, STEP_FAILED), released=lost)
            )
            return
        done = _finished(updates, held)
        self._emit(WorkerReport(time.monotonic(), updates=tuple(updates), released=tuple(done)))

    def _admit(
        self, admit: list[SequenceInput]
    ) -> tuple[tuple[int, ...], list[SequenceUpdate], tuple[int, ...]]:
        """Prefill together; if that fails, one by one, so a single bad request cannot
        sink the others admitted at the same step. Returns (started, updates, failed)."""
        ids = tuple(s.seq_id for s in admit)
        try:
            return ids, self._backend.add(admit), ()
        except Exception:
            log.exception("backend.add failed for sequences %s", ids)
        if len(admit) == 1:
            return (), [], ids
        started: list[int] = []
        updates: list[SequenceUpdate] = []
        failed: list[int] = []
        for seq in admit:
            try:
                updates += self._backend.add([seq])
            except Exception:
                log.exception("backend.add failed for sequence %d alone", seq.seq_id)
                failed.append(seq.seq_id)
            else:
                started.append(seq.seq_id)
        return tuple(started), updates, tuple(failed)

    def _reset(self) -> None:
        try:
            self._backend.reset()
        except Exception:
            log.exception("backend.reset failed")

    def _emit(self, report: WorkerReport) -> None:
        if report:
            self._call_on_loop(self._deliver, report)

    def _deliver(self, report: WorkerReport) -> None:
        if self._sink is not None:
            self._sink(report)

    def _call_on_loop(self, callback: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop is closed: nobody is left to tell, so stop working.
            with self._cond:
                self._stopping = True


def _finished(updates: list[SequenceUpdate], held: set[int]) -> list[int]:
    done = [u.seq_id for u in updates if u.finished is not None and u.seq_id in held]
    held.difference_update(done)
    return done


def _each(ids: tuple[int, ...], message: str) -> tuple[tuple[int, str], ...]:
    return tuple((seq_id, message) for seq_id in ids)


def _candidate_params(params: SamplingParams, index: int) -> SamplingParams:
    """Candidate ``index``'s sampling settings: a seeded request stays reproducible but
    its candidates differ (seed + index). Unseeded ones need nothing: every sequence
    draws its own random noise."""
    if params.seed is None or index == 0:
        return params
    return replace(params, seed=params.seed + index)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# -- the loop side ---------------------------------------------------------------------


class Engine:
    """Schedules generation requests onto a worker and keeps every ``Job`` up to date.

    All methods are called on the event loop; none of them waits on the model.
    """

    def __init__(self, backend: StepBackend, config: EngineConfig) -> None:
        worker = LocalWorker(backend, config.max_batch_size, close_timeout_s=config.close_timeout_s)
        self._setup(worker, config)

    @classmethod
    def with_worker(cls, worker: Worker, config: EngineConfig) -> Engine:
        """An engine over any worker, e.g. one streaming from a remote server."""
        engine = cls.__new__(cls)
        engine._setup(worker, config)
        return engine

    def _setup(self, worker: Worker, config: EngineConfig) -> None:
        self._worker = worker
        self.config = config
        self._limits = Limits(
            queue_limit=config.queue_limit,
            guild_limit=config.guild_queue_limit,
            member_limit=config.member_inflight_limit,
        )
        self._queue: FairQueue[Job] = FairQueue()
        self._jobs: dict[str, Job] = {}  # every live (non-terminal) job by id
        self._seqs_of: dict[Job, tuple[int, ...]] = {}  # live jobs handed to the worker
        # Sequence -> (job, candidate index), only while that candidate is still writing.
        self._job_of: dict[int, tuple[Job, int]] = {}
        # Handed over, no candidate started yet, in dispatch order (values unused).
        self._pending: dict[Job, None] = {}
        self._inflight: set[int] = set()  # sequences the worker still holds
        self._deadlines: dict[Job, asyncio.TimerHandle] = {}
        self._seq_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump_scheduled = False
        self._closed = False
        self._counts: Counter[str] = Counter()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop is not None or self._closed:
            raise RuntimeError("Engine.start() called twice or after close()")
        self._loop = asyncio.get_running_loop()
        await self._worker.start(self._on_report)
        self._schedule_pump()

    async def close(self) -> None:
        """Stop every live job with a clear reason, then stop the worker. Never hangs."""
        if self._closed:
            return
        self._closed = True
        live = list(self._jobs.values())
        for job in live:
            self._end(job, JobState.CANCELLED, error=SHUTDOWN)
        if live:
            log.info("engine closing: stopped %d unfinished jobs", len(live))
        await self._worker.close()

    # -- what callers use --------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> Job:
        """Queue a request, or refuse it at once with ``LimitReached``/``QueueFull``.

        ``ValueError`` if the request wants more candidates than the worker runs at once:
        such a job could never be dispatched.
        """
        if self._closed:
            raise GenerationFailed(CLOSED)
        if request.n > self._worker.capacity:
            raise ValueError(
                f"{request.n} candidates exceed the worker's capacity of "
                f"{self._worker.capacity} sequences"
            )
        if request.job_id is not None and request.job_id in self._jobs:
            raise ValueError(f"job id {request.job_id!r} is already live")
        try:
            self._limits.check(request.guild_id, request.user_id)
        except LimitReached:
            self._counts["refused"] += 1
            raise
        loop = asyncio.get_running_loop()
        job = Job(request, submitted_at=time.monotonic(), on_cancel=self._cancel_job)
        self._limits.add(request.guild_id, request.user_id)
        self._jobs[job.id] = job
        self._queue.push(job, request.guild_id, request.user_id)
        self._deadlines[job] = loop.call_later(self.config.job_timeout_s, self._on_deadline, job)
        self._counts["submitted"] += 1
        self._refresh_positions()
        # Dispatch at the end of this loop iteration, so requests submitted together
        # reach the worker together (one batched prefill) and in fair order.
        self._schedule_pump()
        return job

    def get(self, job_id: str) -> Job | None:
        """A live (queued or running) job by id."""
        return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        return job is not None and job.cancel()

    @property
    def capacity(self) -> int:
        """Sequences the worker runs at once: the most candidates one job may ask for."""
        return self._worker.capacity

    @property
    def idle(self) -> bool:
        """No job is waiting or running and the worker holds nothing."""
        return not self._jobs and not self._inflight

    def stats(self) -> EngineStats:
        running = sum(1 for job in self._jobs.values() if job.state is JobState.RUNNING)
        counts = self._counts
        return EngineStats(
            queued=len(self._jobs) - running,
            running=running,
            capacity=self._worker.capacity,
            submitted=counts["submitted"],
            refused=counts["refused"],
            done=counts[JobState.DONE.value],
            cancelled=counts[JobState.CANCELLED.value],
            failed=counts[JobState.FAILED.value],
            timed_out=counts[JobState.TIMED_OUT.value],
        )

    # -- scheduling --------------------------------------------------------------------

    def _schedule_pump(self) -> None:
        if self._loop is not None and not self._pump_scheduled and not self._closed:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Hand the next jobs in fair order to the worker while it has room.

        A job takes one slot per candidate and goes only when all of them fit, so its
        candidates are prefilled and decoded together. Strict head of line: when the
        next job in fair order needs more slots than are free, nothing behind it is
        dispatched until running sequences free enough. Letting smaller jobs overtake
        would refill every freed slot and could starve a best-of-n job forever; waiting
        keeps the fair order exactly and costs at most n - 1 idle slots, for no longer
        than the running jobs take to end (each bounded by ``job_timeout_s``).
        """
        self._pump_scheduled = False
        if self._closed:
            return
        batch: list[SequenceInput] = []
        while self._queue:
            free = self._worker.capacity - len(self._inflight)
            if free < 1:
                break
            # Iterating replays pop()'s order, so its first item is the one pop() takes.
            if next(iter(self._queue)).request.n > free:
                break
            job = self._queue.pop()
            request = job.request
            seq_ids = tuple(next(self._seq_ids) for _ in range(request.n))
            self._seqs_of[job] = seq_ids
            self._pending[job] = None
            for index, seq_id in enumerate(seq_ids):
                self._job_of[seq_id] = (job, index)
                self._inflight.add(seq_id)
                params = _candidate_params(request.params, index)
                batch.append(SequenceInput(seq_id, request.messages, params))
        # Popping the head of the line and appending it to _pending keeps everyone's
        # position as it was, so no refresh is needed here.
        if batch:
            self._worker.dispatch(batch)

    def _refresh_positions(self) -> None:
        waiting = itertools.chain(self._pending, self._queue)
        for position, job in enumerate(waiting, start=1):
            job._set_position(position)

    def _on_report(self, report: WorkerReport) -> None:
        moved = False
        for seq_id in report.started:
            owner = self._job_of.get(seq_id)
            # The job runs from its first candidate's start (they usually start together).
            if owner is not None and owner[0] in self._pending:
                job = owner[0]
                del self._pending[job]
                job._mark_running(report.started_at)
                moved = True
        for update in report.updates:
            owner = self._job_of.get(update.seq_id)
            if owner is None:
                continue  # ended on this side already (cancelled, timed out, stopped)
            job, index = owner
            if job._apply(index, update, report.at):
                # The worker is still writing past the stop string unless it also ended.
                held = update.finished is None
                self._end_candidate(update.seq_id, finish_reason="stop", cancel=held)
            elif update.finished is not None:
                self._end_candidate(update.seq_id, finish_reason=update.finished)
        for seq_id, message in report.failed:
            if seq_id in self._job_of:
                self._end_candidate(seq_id, error=message)
        if report.failed:
            log.warning("worker failed %d sequences", len(report.failed))
        for seq_id in report.released:
            self._inflight.discard(seq_id)
            owner = self._job_of.get(seq_id)
            if owner is not None:
                # The worker dropped a sequence it never finished: a worker bug.
                log.error("worker released an unfinished sequence of job %s", owner[0].id)
                self._end_candidate(seq_id, error=STEP_FAILED)
        if moved:
            self._refresh_positions()
        if report.released:
            self._schedule_pump()

    # -- endings -----------------------------------------------------------------------

    def _cancel_job(self, job: Job) -> bool:
        if job.done:
            return False
        self._end(job, JobState.CANCELLED)
        return True

    def _on_deadline(self, job: Job) -> None:
        self._deadlines.pop(job, None)
        if job.done:
            return
        if job._finished_candidates():
            # Some candidates of a best-of-n job are complete: a finished text is worth
            # more to the member than a cut-off one, so the rest are stopped instead.
            self._settle(job)
            return
        queued = job.state is JobState.QUEUED
        self._end(job, JobState.TIMED_OUT, error=QUEUE_TIMEOUT if queued else RUN_TIMEOUT)

    def _end_candidate(
        self,
        seq_id: int,
        *,
        finish_reason: JobFinishReason | None = None,
        error: str | None = None,
        cancel: bool = False,
    ) -> None:
        """One candidate has ended; the job ends with its last candidate.

        ``cancel``: the worker is still running the sequence (a stop string ended it).
        """
        job, index = self._job_of.pop(seq_id)
        if cancel and seq_id in self._inflight:
            self._worker.cancel((seq_id,))
        if job._end_candidate(index, finish_reason=finish_reason, error=error):
            self._settle(job)

    def _settle(self, job: Job) -> None:
        """End ``job`` on its candidates' outcome: DONE with the chosen one among those
        that finished (any still writing are stopped), FAILED if none finished."""
        finished = job._finished_candidates()
        if not finished:
            self._end(job, JobState.FAILED, error=job._first_error() or STEP_FAILED)
            return
        chosen = finished[self._choose(job, finished)]
        self._end(
            job, JobState.DONE, finish_reason=job._candidate_finish_reason(chosen), chosen=chosen
        )

    def _choose(self, job: Job, finished: list[int]) -> int:
        """The request's pick among the finished candidates (an index into ``finished``)."""
        choose = job.request.choose
        if choose is None or len(finished) == 1:
            return 0
        texts = [job.candidates[i] for i in finished]
        try:
            pick = choose(texts)
        except Exception:
            # A broken picker must not lose finished writing: keep the first.
            log.exception("choosing among the candidates of job %s failed", job.id)
            return 0
        if not isinstance(pick, int) or not 0 <= pick < len(texts):
            log.error("job %s: choose() returned %r for %d candidates", job.id, pick, len(texts))
            return 0
        return pick

    def _end(
        self,
        job: Job,
        state: JobState,
        *,
        finish_reason: JobFinishReason | None = None,
        error: str | None = None,
        chosen: int | None = None,
    ) -> None:
        """The one place a job ends: free its place in line, its limits and its sequences.

        Candidates still writing are cancelled on the worker; those that ended there
        already were forgotten when they ended.
        """
        was_waiting = job.state is JobState.QUEUED
        self._queue.remove(job)
        self._pending.pop(job, None)
        stop: list[int] = []
        for seq_id in self._seqs_of.pop(job, ()):
            # Forget the mapping now so late updates are ignored, but keep the sequence
            # in _inflight until the worker says it has let go (room is real room).
            if self._job_of.pop(seq_id, None) is not None and seq_id in self._inflight:
                stop.append(seq_id)
        if stop:
            self._worker.cancel(stop)
        deadline = self._deadlines.pop(job, None)
        if deadline is not None:
            deadline.cancel()
        del self._jobs[job.id]
        self._limits.discard(job.request.guild_id, job.request.user_id)
        job._finish(
            state, time.monotonic(), finish_reason=finish_reason, error=error, chosen=chosen
        )
        self._counts[state.value] += 1
        timings = job.timings
        log.debug(
            "job %s %s after %.2fs, %d tokens",
            job.id,
            state.value,
            (timings.finished_at or 0.0) - timings.submitted_at,
            job.generated_tokens,
        )
        if was_waiting:
            self._refresh_positions()
