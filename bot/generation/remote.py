"""A ``Worker`` that streams from an OpenAI-compatible chat-completions server.

vLLM, TGI, llama.cpp's server and Ollama all speak ``POST {base}/chat/completions`` with
``stream: true``: server-sent events whose ``data:`` lines carry JSON chunks
(``choices[0].delta.content``, then a ``finish_reason``) and end with ``data: [DONE]``.

The engine keeps its job: admission, fairness, deadlines, stop strings. This worker only
runs what it is handed, one asyncio task per sequence on the event loop (no thread), at
most ``concurrency`` at once, which is its ``capacity``, so the engine's fair queue still
decides who goes next rather than the server's arrival order. A job with several
candidates arrives as that many sequences, so each candidate is its own streamed request
(seeded with seed + index by the engine when the job has a seed).

Failures are per request. Busy answers (429, 5xx) and connection errors are retried with
backoff, but only before the first token has reached the member: a retry after that
would write the text again, so a mid-stream failure fails that one job, partial text kept.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import SecretStr

from bot.generation.backend import FinishReason, SamplingParams, SequenceInput, SequenceUpdate
from bot.generation.engine import (
    ADD_FAILED,
    STEP_FAILED,
    Engine,
    EngineConfig,
    ReportSink,
    WorkerReport,
)

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

BUSY = "The model server is busy right now. Please try again in a minute."
UNREACHABLE = "The model server could not be reached. Please try again soon."
REFUSED = "The model server refused this request. The bot's operators can see why in its logs."

# 408/409 and 5xx are transient by convention (the openai client retries the same set).
RETRY_STATUSES = frozenset({408, 409, 429})
# Errors on the wire that may pass if we try again; a timeout reading a chunk included.
WIRE_ERRORS = (aiohttp.ClientError, TimeoutError, ConnectionError)


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    base_url: str  # ".../v1"; "/chat/completions" is appended
    model: str
    api_key: SecretStr | None = None  # SecretStr: stays "**********" in any repr
    concurrency: int = 8
    # Per chunk, not per request: a long poem may stream for minutes; the engine's job
    # deadline bounds the total by cancelling the sequence.
    read_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    # A server asking for a longer pause than this gets a quick "busy" for the member
    # instead of a silent wait that would end at the job's time limit anyway.
    max_retry_after_s: float = 30.0
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if min(self.read_timeout_s, self.connect_timeout_s) <= 0:
            raise ValueError("timeouts must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteConfig:
        key = settings.openai_api_key
        return cls(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=key if key is not None and key.get_secret_value() else None,
            concurrency=settings.openai_concurrency,
            read_timeout_s=settings.openai_timeout_s,
            connect_timeout_s=min(10.0, settings.openai_timeout_s),
            max_retries=settings.openai_max_retries,
        )


def request_body(model: str, seq: SequenceInput) -> dict[str, Any]:
    """The chat-completions request for one sequence."""
    p: SamplingParams = seq.params
    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in seq.messages],
        "stream": True,
        "max_tokens": p.max_new_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        # Not in OpenAI's API, but vLLM, llama.cpp and TGI read them; others ignore them.
        # 0 means "no top-k" here, in llama.cpp and in current vLLM. Not -1: the
        # llama-cpp-python server rejects it (found against the real server).
        "top_k": max(0, p.top_k),
        "repetition_penalty": p.repetition_penalty,  # vLLM / TGI spelling
        "repeat_penalty": p.repetition_penalty,  # llama.cpp spelling
    }
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        # The engine applies stop strings too; sending them lets the server stop early.
        body["stop"] = list(p.stop)
    return body


class _Retryable(Exception):
    """This attempt failed in a way that may pass on another try (if nothing streamed)."""

    def __init__(self, message: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.message = message  # for the member, should retries run out
        self.reason = reason  # for the log
        self.retry_after = retry_after


class _Failed(Exception):
    """This request cannot succeed; ``message`` is for the member."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(reason)
        self.message = message
        self.reason = reason


@dataclass(slots=True)
class _Progress:
    started: bool = False  # reported to the engine as started
    tokens: int = 0  # content chunks streamed; one per token on the servers above
    finished: bool = False


class RemoteWorker:
    """Runs sequences as streaming requests to an OpenAI-compatible server."""

    def __init__(self, config: RemoteConfig) -> None:
        self._config = config
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None
        self._sink: ReportSink | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteWorker:
        return cls(RemoteConfig.from_settings(settings))

    @property
    def capacity(self) -> int:
        return self._config.concurrency

    async def start(self, sink: ReportSink) -> None:
        if self._session is not None or self._closed:
            raise RuntimeError("RemoteWorker.start() called twice or after close()")
        self._sink = sink
        headers = {"Accept": "text/event-stream"}
        if self._config.api_key is not None:
            headers["Authorization"] = f"Bearer {self._config.api_key.get_secret_value()}"
        # The pool limit repeats the engine's cap, so even a connection still closing
        # after a cancel cannot push the server above ``concurrency``.
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=self._config.concurrency),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._config.connect_timeout_s,
                sock_read=self._config.read_timeout_s,
            ),
        )
        log.info(
            "remote worker streaming from %s (model %s, %d at once)",
            self._url,
            self._config.model,
            self._config.concurrency,
        )

    def dispatch(self, sequences: Sequence[SequenceInput]) -> None:
        if self._session is None or self._closed:
            ids = tuple(s.seq_id for s in sequences)
            failed = tuple((seq_id, ADD_FAILED) for seq_id in ids)
            self._emit(WorkerReport(time.monotonic(), failed=failed, released=ids))
            return
        for seq in sequences:
            task = asyncio.create_task(self._run(seq), name=f"atelier-remote-{seq.seq_id}")
            self._tasks[seq.seq_id] = task
            # A done callback, not ``finally``: a task cancelled before its first step
            # never runs its body, yet the engine must still hear that the room is free.
            task.add_done_callback(functools.partial(self._release, seq.seq_id))

    def cancel(self, seq_ids: Collection[int]) -> None:
        # Cancelling the task unwinds through the response, which closes the connection:
        # the server sees the disconnect at once and stops generating.
        for seq_id in seq_ids:
            task = self._tasks.get(seq_id)
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self._config.close_timeout_s)
            if stuck:
                log.warning("%d remote requests still closing; leaving them", len(stuck))
        if self._session is not None:
            await self._session.close()

    # -- one sequence ------------------------------------------------------------------

    async def _run(self, seq: SequenceInput) -> None:
        progress = _Progress()
        try:
            await self._attempts(seq, progress)
        except _Failed as exc:
            log.warning("remote request for sequence %d failed: %s", seq.seq_id, exc.reason)
            self._emit(WorkerReport(time.monotonic(), failed=((seq.seq_id, exc.message),)))
        except Exception:
            log.exception("remote request for sequence %d crashed", seq.seq_id)
            message = STEP_FAILED if progress.tokens else ADD_FAILED
            self._emit(WorkerReport(time.monotonic(), failed=((seq.seq_id, message),)))

    async def _attempts(self, seq: SequenceInput, progress: _Progress) -> None:
        retries = 0
        while True:
            try:
                await self._attempt(seq, progress)
                return
            except _Retryable as exc:
                if progress.tokens:
                    # Text already reached the member: a retry would write it twice.
                    raise _Failed(STEP_FAILED, f"{exc.reason} after streaming") from None
                if retries >= self._config.max_retries:
                    raise _Failed(exc.message, f"{exc.reason}; {retries} retries") from None
                if (exc.retry_after or 0.0) > self._config.max_retry_after_s:
                    raise _Failed(exc.message, f"{exc.reason}; Retry-After too long") from None
                delay = exc.retry_after
                if delay is None:
                    delay = self._backoff(retries)
                retries += 1
                log.info(
                    "remote request for sequence %d: %s; retry %d/%d in %.2fs",
                    seq.seq_id,
                    exc.reason,
                    retries,
                    self._config.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)

    def _backoff(self, retries: int) -> float:
        # Exponential with "equal jitter": never zero, and clients that failed together
        # spread out instead of hammering the server in step.
        ceiling = min(self._config.backoff_max_s, self._config.backoff_base_s * 2**retries)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _attempt(self, seq: SequenceInput, progress: _Progress) -> None:
        assert self._session is not None
        sent_at = time.monotonic()
        try:
            response = await self._session.post(
                self._url, json=request_body(self._config.model, seq)
            )
        except WIRE_ERRORS as exc:
            raise _Retryable(UNREACHABLE, _describe(exc)) from None
        clean = False
        try:
            if response.status != 200:
                await self._refuse(response)
            if not progress.started:
                progress.started = True
                self._emit(
                    WorkerReport(time.monotonic(), started=(seq.seq_id,), started_at=sent_at)
                )
            try:
                await self._stream(seq.seq_id, response, progress)
            except WIRE_ERRORS as exc:
                if progress.finished:
                    return  # the text is complete; only the tail of the stream was lost
                raise _Retryable(UNREACHABLE, _describe(exc)) from None
            clean = True
        finally:
            if clean:
                response.release()  # read to the end: the connection can be reused
            else:
                # Cancelled, failed or refused: close the socket now, so the server
                # stops generating for a reader who has gone.
                response.close()

    async def _refuse(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        try:
            detail = self._redact((await response.text())[:300])
        except WIRE_ERRORS:
            detail = ""
        reason = f"HTTP {status} {detail}".strip()
        if status in RETRY_STATUSES or status >= 500:
            message = BUSY if status == 429 else ADD_FAILED
            raise _Retryable(message, reason, _retry_after(response.headers))
        raise _Failed(REFUSED, reason)

    async def _stream(
        self, seq_id: int, response: aiohttp.ClientResponse, progress: _Progress
    ) -> None:
        ended = False  # saw [DONE]
        async for data in _sse_data(response.content):
            if data == "[DONE]":
                ended = True
                break
            if progress.finished:
                continue  # e.g. a trailing usage chunk
            try:
                chunk = json.loads(data)
            except ValueError:
                raise _Failed(STEP_FAILED, "the server sent a chunk that is not JSON") from None
            if not isinstance(chunk, dict):
                raise _Failed(STEP_FAILED, "the server sent a chunk that is not an object")
            if "error" in chunk:
                raise _Failed(STEP_FAILED, f"error in stream: {self._redact(str(chunk)[:300])}")
            choices = chunk.get("choices") or [{}]
            choice = choices[0] if isinstance(choices[0], dict) else {}
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            reason = choice.get("finish_reason")
            finished: FinishReason | None = None
            if reason is not None:
                finished = "length" if reason == "length" else "eos"
            if text:
                progress.tokens += 1
            if text or finished is not None:
                progress.finished = finished is not None
                update = SequenceUpdate(seq_id, text or "", progress.tokens, finished)
                self._emit(WorkerReport(time.monotonic(), updates=(update,)))
        if not progress.finished:
            # [DONE] without a finish_reason is odd but complete; EOF without either is not.
            if not ended:
                raise aiohttp.ClientPayloadError("the stream ended before [DONE]")
            progress.finished = True
            update = SequenceUpdate(seq_id, "", progress.tokens, "eos")
            self._emit(WorkerReport(time.monotonic(), updates=(update,)))

    # -- on the loop -------------------------------------------------------------------

    def _release(self, seq_id: int, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(seq_id, None)
        self._emit(WorkerReport(time.monotonic(), released=(seq_id,)))

    def _emit(self, report: WorkerReport) -> None:
        if self._sink is not None and report:
            self._sink(report)

    def _redact(self, text: str) -> str:
        """Servers may echo the key in an error body; it must never reach a log."""
        key = self._config.api_key
        if key is not None and key.get_secret_value():
            text = text.replace(key.get_secret_value(), "**********")
        return text


def build_remote_engine(settings: Settings) -> Engine:
    """The engine over a remote OpenAI-compatible server (``backend = "openai"``)."""
    return Engine.with_worker(
        RemoteWorker.from_settings(settings), EngineConfig.from_settings(settings)
    )


async def _sse_data(content: aiohttp.StreamReader) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined with newlines)."""
    data: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment: servers send these as keep-alives
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or a date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(exc: BaseException) -> str:
    # The type and message only: aiohttp errors name the host, never the headers.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
