"""The engine against a deterministic fake backend: batching, fairness, limits, faults.

The fake writes the words of the prompt, one per token (see tests/fakes.py). Tests that
care about step boundaries use ``manual_steps`` and release steps one at a time, so no
assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any

import pytest

from bot.errors import GenerationFailed, LimitReached, QueueFull
from bot.generation.backend import FinishReason, SamplingParams, SequenceInput, SequenceUpdate
from bot.generation.engine import Engine, EngineConfig, LocalWorker, ReportSink, WorkerReport
from bot.generation.jobs import GenerationRequest, JobState
from tests.fakes import FakeStepBackend

THREAD = "atelier-generation"

MakeEngine = Callable[..., Awaitable[tuple[Engine, FakeStepBackend]]]


def req(
    text: str = "a b c",
    *,
    guild: int | None = 1,
    user: int = 1,
    job_id: str | None = None,
    n: int = 1,
    choose: Callable[[Sequence[str]], int] | None = None,
    **params: Any,
) -> GenerationRequest:
    params.setdefault("max_new_tokens", 50)
    return GenerationRequest(
        messages=({"role": "user", "content": text},),
        params=SamplingParams(**params),
        guild_id=guild,
        user_id=user,
        job_id=job_id,
        n=n,
        choose=choose,
    )


async def until(condition: Callable[[], bool], within: float = 3.0) -> None:
    """Let the loop run until ``condition`` holds (fails the test instead of hanging)."""
    async with asyncio.timeout(within):
        # Polling on purpose: the conditions are set by the generation thread, and an
        # Event per condition would mean test hooks in the engine.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def content(backend: FakeStepBackend, seq_id: int) -> str:
    return backend.inputs[seq_id].messages[-1]["content"]


def seq_of(backend: FakeStepBackend, text: str) -> int:
    return next(seq for seq, s in backend.inputs.items() if s.messages[-1]["content"] == text)


@pytest.fixture
async def make_engine() -> AsyncIterator[MakeEngine]:
    made: list[tuple[Engine, FakeStepBackend]] = []

    async def make(
        backend: FakeStepBackend | None = None, **config: Any
    ) -> tuple[Engine, FakeStepBackend]:
        backend = backend or FakeStepBackend()
        config = {"job_timeout_s": 10.0, "close_timeout_s": 2.0, **config}
        engine = Engine(backend, EngineConfig(**config))
        await engine.start()
        made.append((engine, backend))
        return engine, backend

    yield make
    for engine, backend in made:
        backend.open()
        await asyncio.wait_for(engine.close(), 5)


# -- the happy path ---------------------------------------------------------------------


async def test_a_request_is_written_on_the_generation_thread(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine()

    job = engine.submit(req("Roses are red"))
    assert job.state is JobState.QUEUED and job.position == 1
    await job.wait()

    assert job.state is JobState.DONE
    assert job.text == "Roses are red"
    assert job.finish_reason == "eos"
    assert job.generated_tokens == 3
    assert job.position is None and job.error is None
    t = job.timings
    assert t.started_at is not None and t.first_token_at is not None
    assert t.finished_at is not None and t.started_wall is not None
    assert t.submitted_at <= t.started_at <= t.first_token_at <= t.finished_at
    # The model was only ever touched by the one generation thread.
    assert backend.threads == {THREAD}
    assert threading.current_thread().name != THREAD
    await until(lambda: engine.idle)
    stats = engine.stats()
    assert (stats.submitted, stats.done, stats.queued, stats.running) == (1, 1, 0, 0)


async def test_token_budget_ends_with_length(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine()

    one, two = (
        engine.submit(req("a b c", max_new_tokens=1)),
        engine.submit(req("a b c", user=2, max_new_tokens=2)),
    )
    await one.wait()
    await two.wait()

    assert (one.text, one.finish_reason) == ("a ", "length")
    assert (two.text, two.finish_reason) == ("a b ", "length")


async def test_per_request_params_reach_the_backend(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine()
    greedy = req("x", user=1, temperature=0.0, top_k=0, seed=7, max_new_tokens=5)
    warm = req("y", user=2, temperature=1.3, top_p=0.8, repetition_penalty=1.3, max_new_tokens=9)

    jobs = [engine.submit(greedy), engine.submit(warm)]
    for job in jobs:
        await job.wait()

    assert backend.params[seq_of(backend, "x")] == greedy.params
    assert backend.params[seq_of(backend, "y")] == warm.params
    assert len(backend.add_calls) == 1  # and they shared one prefill


# -- continuous batching ------------------------------------------------------------------


async def test_requests_waiting_together_are_admitted_in_one_add(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True))
    long = engine.submit(req("l1 l2 l3 l4 l5 l6 l7 l8"))
    await until(lambda: long.state is JobState.RUNNING)
    await until(backend.in_step.is_set)  # the thread is now inside a (held) step

    newcomers = [engine.submit(req(f"n{i}", user=10 + i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert all(job.state is JobState.QUEUED for job in newcomers)
    backend.allow(1)
    await until(lambda: all(job.state is not JobState.QUEUED for job in newcomers))

    assert len(backend.add_calls) == 2
    assert sorted(content(backend, s) for s in backend.add_calls[1]) == ["n0", "n1", "n2"]


async def test_a_request_submitted_mid_run_joins_at_the_next_step(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True))
    long = engine.submit(req(" ".join(f"w{i}" for i in range(30))))
    await until(lambda: long.state is JobState.RUNNING)
    backend.allow(2)
    await until(lambda: long.generated_tokens == 3)

    short = engine.submit(req("x y", user=2))
    await asyncio.sleep(0)  # submit() hands work over at the next loop iteration
    backend.allow(1)  # finishes the step in flight; the next boundary admits `short`
    await until(lambda: short.state is JobState.RUNNING)
    assert short.text == "x "
    backend.allow(1)
    await short.wait()

    assert short.state is JobState.DONE and short.text == "x y"
    assert long.state is JobState.RUNNING  # the short one did not wait for the long one
    assert long.generated_tokens == 5
    assert backend.add_calls == [(seq_of(backend, long.request.messages[0]["content"]),),
                                 (seq_of(backend, "x y"),)]  # fmt: skip
    assert backend.step_sizes == [1, 1, 1, 2]


async def test_the_batch_never_exceeds_max_batch_size(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(max_batch_size=3, member_inflight_limit=10)

    jobs = [engine.submit(req(f"j{i} a b c d", user=i)) for i in range(10)]
    for job in jobs:
        await job.wait()

    assert all(job.state is JobState.DONE for job in jobs)
    assert max(backend.step_sizes) == 3  # the fake also raises if overfilled
    assert max(len(call) for call in backend.add_calls) == 3


# -- cancellation ---------------------------------------------------------------------------


async def test_cancel_while_queued_leaves_the_line_at_once(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True), max_batch_size=1)
    running = engine.submit(req("r1 r2 r3", user=1))
    first = engine.submit(req("q1", user=2))
    second = engine.submit(req("q2", user=3))
    await until(lambda: running.state is JobState.RUNNING)
    assert (first.position, second.position) == (1, 2)

    assert first.cancel()
    assert first.state is JobState.CANCELLED and first.text == ""
    assert second.position == 1
    assert not first.cancel()  # already over
    assert await asyncio.wait_for(first.wait(), 1) is first

    backend.open()
    await second.wait()
    assert second.state is JobState.DONE
    assert "q1" not in [s.messages[-1]["content"] for s in backend.inputs.values()]


async def test_cancel_while_running_keeps_partial_text(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True))
    job = engine.submit(req("a b c d e f g h"))
    await until(lambda: job.state is JobState.RUNNING)
    backend.allow(2)
    await until(lambda: job.generated_tokens == 3)

    assert engine.cancel(job.id)
    assert job.state is JobState.CANCELLED
    assert job.text == "a b c "
    assert engine.get(job.id) is None

    backend.allow(1)  # the step in flight ends; the sequence leaves at that boundary
    seq = backend.add_calls[0][0]
    await until(lambda: seq in backend.removed)
    assert job.text == "a b c "  # the extra token is not appended after the cancel
    assert seq not in backend.active_ids
    await until(lambda: engine.idle)

    backend.open()
    after = engine.submit(req("still here"))
    await after.wait()
    assert after.text == "still here"


# -- limits ----------------------------------------------------------------------------------


async def test_member_limit_refuses_with_the_limit_named(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(FakeStepBackend(manual_steps=True), member_inflight_limit=2)
    first = engine.submit(req("a", user=1))
    engine.submit(req("b", user=1))

    with pytest.raises(LimitReached) as refused:
        engine.submit(req("c", user=1))
    assert refused.value.message == (
        "You already have 2 requests in progress — the limit per member is 2. "
        "Please wait for one to finish."
    )
    engine.submit(req("d", user=2))  # others are not affected
    first.cancel()
    engine.submit(req("c", user=1))  # a finished request frees its place
    assert engine.stats().refused == 1


async def test_guild_limit_refuses_with_the_limit_named(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(FakeStepBackend(manual_steps=True), guild_queue_limit=2)
    engine.submit(req("a", guild=1, user=1))
    engine.submit(req("b", guild=1, user=2))

    with pytest.raises(LimitReached, match="the limit per server is 2"):
        engine.submit(req("c", guild=1, user=3))
    engine.submit(req("c", guild=2, user=3))
    engine.submit(req("d", guild=None, user=4))


async def test_full_queue_refuses_with_queue_full(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(FakeStepBackend(manual_steps=True), queue_limit=2)
    engine.submit(req("a", guild=1, user=1))
    engine.submit(req("b", guild=2, user=2))

    with pytest.raises(QueueFull, match="holds at most 2"):
        engine.submit(req("c", guild=3, user=3))


async def test_job_ids_are_the_callers_when_given_and_unique(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(FakeStepBackend(manual_steps=True))
    job = engine.submit(req(job_id="row-42"))
    assert job.id == "row-42" and engine.get("row-42") is job
    with pytest.raises(ValueError):
        engine.submit(req(user=2, job_id="row-42"))
    assert len(engine.submit(req(user=3)).id) == 32  # a fresh uuid hex otherwise


# -- fairness --------------------------------------------------------------------------------


async def test_a_busy_guild_does_not_starve_another(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(
        FakeStepBackend(manual_steps=True), max_batch_size=1, member_inflight_limit=20
    )
    busy = [engine.submit(req(f"A{i} x", guild=1, user=1)) for i in range(10)]
    other = engine.submit(req("B0 x", guild=2, user=2))

    assert other.position == 2  # right after A's first, not behind all ten
    assert [job.position for job in busy] == [1, *range(3, 12)]
    await until(lambda: busy[0].state is JobState.RUNNING)
    assert other.position == 1 and busy[1].position == 2

    backend.open()
    for job in [*busy, other]:
        await job.wait()
    served = [content(backend, call[0]) for call in backend.add_calls]
    assert served == ["A0 x", "B0 x", *(f"A{i} x" for i in range(1, 10))]


async def test_members_take_turns_within_a_guild(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(
        FakeStepBackend(manual_steps=True), max_batch_size=1, member_inflight_limit=5
    )
    for i in range(3):
        engine.submit(req(f"u1-{i}", user=1))
    late = engine.submit(req("u2-0", user=2))
    assert late.position == 2

    backend.open()
    await late.wait()
    await until(lambda: engine.idle)
    served = [content(backend, call[0]) for call in backend.add_calls]
    assert served == ["u1-0", "u2-0", "u1-1", "u1-2"]


# -- faults ----------------------------------------------------------------------------------


async def test_a_failing_add_fails_only_its_own_request(make_engine: MakeEngine) -> None:
    backend = FakeStepBackend(
        manual_steps=True, fail_add=lambda s: "BOOM" in s.messages[-1]["content"]
    )
    engine, _ = await make_engine(backend)
    running = engine.submit(req("r1 r2 r3 r4", user=1))
    await until(lambda: running.state is JobState.RUNNING)

    good1 = engine.submit(req("g1 x", user=2))
    bad = engine.submit(req("BOOM", user=3))
    good2 = engine.submit(req("g2 y", user=4))
    backend.open()
    for job in (running, good1, bad, good2):
        await job.wait()

    assert bad.state is JobState.FAILED
    assert bad.error is not None and "try again" in bad.error
    assert [j.state for j in (running, good1, good2)] == [JobState.DONE] * 3
    assert (good1.text, good2.text) == ("g1 x", "g2 y")
    after = engine.submit(req("after"))
    await after.wait()
    assert after.state is JobState.DONE and engine.stats().failed == 1


async def test_a_failing_step_fails_the_batch_and_the_engine_keeps_serving(
    make_engine: MakeEngine,
) -> None:
    backend = FakeStepBackend(
        fail_step=lambda s, generated: "BOOM" in s.messages[-1]["content"] and generated >= 2
    )
    engine, _ = await make_engine(backend, max_batch_size=2, member_inflight_limit=5)
    victim = engine.submit(req("v1 v2 v3 v4 v5 v6", user=1))
    poison = engine.submit(req("BOOM b c d e", user=2))
    waiting = engine.submit(req("w1 w2", user=3))  # no room yet: waits in line

    for job in (victim, poison, waiting):
        await asyncio.wait_for(job.wait(), 3)

    assert victim.state is JobState.FAILED and poison.state is JobState.FAILED
    assert victim.text == "v1 v2 "  # partial text survives the failure
    assert victim.error is not None and "try again" in victim.error
    assert backend.resets >= 1
    assert waiting.state is JobState.DONE and waiting.text == "w1 w2"


async def test_a_timeout_keeps_partial_text_even_if_the_model_is_stuck(
    make_engine: MakeEngine,
) -> None:
    engine, backend = await make_engine(
        FakeStepBackend(manual_steps=True), job_timeout_s=0.3, max_batch_size=1
    )
    job = engine.submit(req("a b c d e f"))
    queued = engine.submit(req("never", user=2))
    await until(lambda: job.state is JobState.RUNNING)
    backend.allow(2)
    await until(lambda: job.generated_tokens == 3)

    await asyncio.wait_for(job.wait(), 2)  # the step now in flight never returns by itself
    await asyncio.wait_for(queued.wait(), 2)

    assert job.state is JobState.TIMED_OUT and job.text == "a b c "
    assert job.error is not None and "time limit" in job.error
    assert queued.state is JobState.TIMED_OUT and queued.text == ""
    assert queued.error is not None and "queue" in queued.error
    backend.open()
    seq = backend.add_calls[0][0]
    await until(lambda: seq in backend.removed)
    await until(lambda: engine.idle)
    assert engine.stats().timed_out == 2


# -- stop strings ----------------------------------------------------------------------------


async def test_a_stop_string_ends_the_job_and_leaves_the_batch(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True))
    job = engine.submit(req("Roses are red. THE END and more words", stop=("THE END",)))
    await until(lambda: job.state is JobState.RUNNING)
    backend.allow(3)
    await until(lambda: job.generated_tokens == 4)
    assert job.text == "Roses are red. "  # "THE " might start the stop string: held back

    backend.allow(1)
    await job.wait()
    assert job.state is JobState.DONE and job.finish_reason == "stop"
    assert job.text == "Roses are red. "
    backend.allow(1)  # the step in flight ends; the engine removes the sequence
    seq = backend.add_calls[0][0]
    await until(lambda: seq in backend.removed)
    assert engine.stats().done == 1


async def test_a_held_back_partial_stop_is_released_at_the_end(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine()

    job = engine.submit(req("so THE", stop=("THE END",)))
    await job.wait()

    assert (job.text, job.finish_reason) == ("so THE", "eos")


# -- streaming -------------------------------------------------------------------------------


async def test_updates_coalesce_and_end_after_the_terminal_state(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True))
    job = engine.submit(req("a b c d e f"))
    stream = job.updates()
    first = await anext(stream)
    assert first.state is JobState.QUEUED and first.position == 1

    await until(lambda: job.state is JobState.RUNNING)
    backend.allow(3)
    await until(lambda: job.generated_tokens == 4)
    latest = await anext(stream)  # four changes happened; the reader sees only the last
    assert (latest.state, latest.text, latest.generated_tokens) == (
        JobState.RUNNING,
        "a b c d ",
        4,
    )

    backend.open()
    rest = [snapshot async for snapshot in stream]
    assert rest[-1].state is JobState.DONE and rest[-1].text == "a b c d e f"
    assert all(not s.state.terminal for s in rest[:-1])
    assert len(rest) <= 2  # coalesced: at most the last token, then the ending


async def test_the_event_loop_keeps_running_while_the_model_is_busy(
    make_engine: MakeEngine,
) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True))
    job = engine.submit(req("a b"))
    await until(backend.in_step.is_set)

    beats = 0
    for _ in range(50):  # a heartbeat ticking while a model step is in progress
        await asyncio.sleep(0)
        beats += 1
    assert backend.in_step.is_set() and beats == 50
    status = engine.stats()
    assert status.running == 1

    backend.allow(1)
    await job.wait()
    assert job.state is JobState.DONE


# -- several candidates per job ---------------------------------------------------------


def seeded_words(seq: SequenceInput) -> list[str]:
    """A script that differs per candidate: seed s writes "s<s>" then s - 100 words.

    Seeds are 100 + candidate index in these tests, so candidate i writes i + 1 tokens.
    """
    seed = seq.params.seed
    assert seed is not None
    return [f"s{seed}", *(f" w{i}" for i in range(seed - 100))]


async def test_candidates_are_dispatched_together_with_distinct_seeds(
    make_engine: MakeEngine,
) -> None:
    engine, backend = await make_engine(FakeStepBackend(script=seeded_words))

    job = engine.submit(req("poem", n=3, seed=100))
    assert job.position == 1 and job.candidates == ("", "", "")
    await job.wait()

    assert len(backend.add_calls) == 1 and len(backend.add_calls[0]) == 3  # one prefill
    seeds = [backend.params[seq].seed for seq in backend.add_calls[0]]
    assert seeds == [100, 101, 102]
    assert {content(backend, seq) for seq in backend.add_calls[0]} == {"poem"}
    assert job.state is JobState.DONE
    assert job.candidates == ("s100", "s101 w0", "s102 w0 w1")
    assert (job.chosen, job.text) == (0, "s100")  # no choose: the first
    assert job.generated_tokens == 1 + 2 + 3  # every candidate's tokens
    assert job.finish_reason == "eos"
    await until(lambda: engine.idle)
    assert engine.stats().done == 1


async def test_unseeded_candidates_leave_the_seed_to_the_backend(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine()
    job = engine.submit(req("a b", n=2))
    await job.wait()
    # Each unseeded row draws its own noise in the sampler; no seed is invented here.
    assert [backend.params[seq].seed for seq in backend.add_calls[0]] == [None, None]
    assert job.candidates == ("a b", "a b")


async def test_choose_picks_among_the_candidates(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(FakeStepBackend(script=seeded_words))
    seen: list[Sequence[str]] = []

    def longest(texts: Sequence[str]) -> int:
        seen.append(texts)
        return max(range(len(texts)), key=lambda i: len(texts[i]))

    job = engine.submit(req("poem", n=3, seed=100, choose=longest))
    await job.wait()

    assert list(seen[0]) == ["s100", "s101 w0", "s102 w0 w1"]
    assert (job.state, job.chosen, job.text) == (JobState.DONE, 2, "s102 w0 w1")
    assert job.snapshot().text == "s102 w0 w1"


async def test_a_broken_choose_keeps_the_first_candidate(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(FakeStepBackend(script=seeded_words), member_inflight_limit=3)

    def broken(texts: Sequence[str]) -> int:
        raise RuntimeError("a bug in the picker")

    raising = engine.submit(req("poem", n=2, seed=100, choose=broken))
    out_of_range = engine.submit(req("poem", n=2, seed=100, choose=lambda texts: 7))
    for job in (raising, out_of_range):
        await job.wait()
        assert (job.state, job.chosen, job.text) == (JobState.DONE, 0, "s100")


async def test_text_follows_candidate_zero_while_running(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True, script=seeded_words))
    job = engine.submit(req("poem", n=3, seed=100, choose=lambda texts: len(texts) - 1))
    await until(lambda: job.state is JobState.RUNNING)
    backend.allow(1)
    await until(lambda: job.generated_tokens == 5)  # 1 + 2 + 2: candidate 0 ended at once

    assert job.text == "s100" and job.chosen is None
    assert job.candidates == ("s100", "s101 w0", "s102 w0")
    backend.open()
    await job.wait()
    assert (job.chosen, job.text) == (2, "s102 w0 w1")


async def test_a_job_with_candidates_counts_once_in_line(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(
        FakeStepBackend(manual_steps=True), max_batch_size=4, member_inflight_limit=5
    )
    running = engine.submit(req("r1 r2 r3", guild=1, user=1))
    await until(lambda: running.state is JobState.RUNNING)

    best_of = engine.submit(req("b x", guild=1, user=2, n=3))  # needs 3 of the 3 free slots
    after = engine.submit(req("a x", guild=2, user=3))
    await asyncio.sleep(0)  # let submit()'s dispatch run
    assert engine.stats().queued == 2  # jobs, not sequences
    backend.open()
    for job in (running, best_of, after):
        await job.wait()

    assert best_of.candidates == ("b x", "b x", "b x")
    assert [len(call) for call in backend.add_calls] == [1, 3, 1]
    assert max(backend.step_sizes) == 4


async def test_a_job_waiting_for_room_holds_the_line_behind_it(make_engine: MakeEngine) -> None:
    # Strict head of line: the smaller job behind may not take the one free slot, or a
    # stream of small jobs could keep a best-of-n job waiting forever.
    engine, backend = await make_engine(
        FakeStepBackend(manual_steps=True), max_batch_size=2, member_inflight_limit=5
    )
    running = engine.submit(req("r1 r2 r3", guild=1, user=1))
    await until(lambda: running.state is JobState.RUNNING)
    best_of = engine.submit(req("b x", guild=1, user=2, n=2))
    small = engine.submit(req("s x", guild=2, user=3))
    assert (best_of.position, small.position) == (1, 2)  # the 2 candidates count once

    backend.allow(1)
    await until(lambda: running.generated_tokens == 2)
    assert best_of.state is JobState.QUEUED and small.state is JobState.QUEUED
    assert (best_of.position, small.position) == (1, 2)

    backend.open()
    for job in (running, best_of, small):
        await job.wait()
    served = [sorted(content(backend, seq) for seq in call) for call in backend.add_calls]
    assert served == [["r1 r2 r3"], ["b x", "b x"], ["s x"]]


async def test_limits_count_a_job_with_candidates_once(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(
        FakeStepBackend(manual_steps=True),
        member_inflight_limit=2,
        guild_queue_limit=3,
        queue_limit=4,
    )
    engine.submit(req("a", guild=1, user=1, n=4))
    engine.submit(req("b", guild=1, user=1, n=4))
    with pytest.raises(LimitReached, match="You already have 2 requests"):
        engine.submit(req("c", guild=1, user=1))

    engine.submit(req("d", guild=1, user=2, n=3))
    with pytest.raises(LimitReached, match="This server already has 3 requests"):
        engine.submit(req("e", guild=1, user=3))

    engine.submit(req("f", guild=2, user=4, n=8))
    with pytest.raises(QueueFull, match="4 requests waiting or in progress"):
        engine.submit(req("g", guild=3, user=5))
    assert engine.stats().submitted == 4


async def test_more_candidates_than_the_worker_runs_at_once_are_refused(
    make_engine: MakeEngine,
) -> None:
    engine, _ = await make_engine(max_batch_size=4)

    with pytest.raises(ValueError, match="5 candidates exceed the worker's capacity of 4"):
        engine.submit(req(n=5))

    assert engine.stats().submitted == 0 and engine.idle
    job = engine.submit(req("just fits", n=4))
    await job.wait()
    assert job.candidates == ("just fits",) * 4


async def test_cancel_ends_every_candidate(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True))
    job = engine.submit(req("a b c d e f g h", n=3))
    await until(lambda: job.state is JobState.RUNNING)
    backend.allow(1)
    await until(lambda: job.generated_tokens == 6)

    assert job.cancel()
    assert job.state is JobState.CANCELLED and job.chosen is None
    assert job.text == "a b " and job.candidates == ("a b ",) * 3  # partial text kept

    backend.allow(1)  # the step in flight ends; all three leave at that boundary
    seqs = set(backend.add_calls[0])
    await until(lambda: seqs <= set(backend.removed))
    await until(lambda: engine.idle)
    assert backend.active == 0 and job.generated_tokens == 6


async def test_a_failing_candidate_leaves_the_choice_to_the_others(
    make_engine: MakeEngine,
) -> None:
    backend = FakeStepBackend(script=seeded_words, fail_add=lambda s: s.params.seed == 101)
    engine, _ = await make_engine(backend)
    seen: list[Sequence[str]] = []

    def last(texts: Sequence[str]) -> int:
        seen.append(texts)
        return len(texts) - 1

    job = engine.submit(req("poem", n=3, seed=100, choose=last))
    await job.wait()

    assert list(seen[0]) == ["s100", "s102 w0 w1"]  # only the finished ones are offered
    assert (job.state, job.chosen, job.text) == (JobState.DONE, 2, "s102 w0 w1")
    assert job.candidates[1] == ""
    assert engine.stats().failed == 0


async def test_a_job_fails_only_when_every_candidate_fails(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(FakeStepBackend(fail_add=lambda s: True))

    job = engine.submit(req("poem", n=2, choose=lambda texts: 0))
    await job.wait()

    assert job.state is JobState.FAILED and job.chosen is None
    assert job.error is not None and "try again" in job.error
    await until(lambda: engine.idle)


async def test_stop_strings_apply_to_each_candidate(make_engine: MakeEngine) -> None:
    def script(seq: SequenceInput) -> list[str]:
        if seq.params.seed == 100:
            return ["Roses ", "red. ", "THE ", "END ", "never ", "shown"]
        return ["Violets ", "blue. ", "still ", "going ", "on ", "and ", "on"]

    engine, backend = await make_engine(FakeStepBackend(manual_steps=True, script=script))
    job = engine.submit(req("x", n=2, seed=100, stop=("THE END",), choose=lambda t: 0))
    await until(lambda: job.state is JobState.RUNNING)
    backend.allow(3)
    await until(lambda: job.generated_tokens == 8)

    assert job.candidates == ("Roses red. ", "Violets blue. still going ")
    assert not job.done  # the other candidate is still writing
    backend.allow(1)  # the step in flight ends; the stopped one leaves at that boundary
    stopped = backend.add_calls[0][0]
    await until(lambda: stopped in backend.removed)
    backend.open()
    await job.wait()

    assert job.candidates == ("Roses red. ", "Violets blue. still going on and on")
    assert (job.text, job.finish_reason) == ("Roses red. ", "stop")


async def test_a_timeout_keeps_the_candidates_that_finished(make_engine: MakeEngine) -> None:
    def script(seq: SequenceInput) -> list[str]:
        return ["short"] if seq.params.seed == 100 else ["long "] * 10

    engine, backend = await make_engine(
        FakeStepBackend(manual_steps=True, script=script), job_timeout_s=0.3
    )
    # Candidate 0 ends with its first token; the others wait on a step that never comes.
    job = engine.submit(req("poem", n=3, seed=100))
    await asyncio.wait_for(job.wait(), 2)

    assert (job.state, job.chosen, job.text) == (JobState.DONE, 0, "short")
    assert job.candidates == ("short", "long ", "long ")
    backend.open()
    others = set(backend.add_calls[0][1:])
    await until(lambda: others <= set(backend.removed))
    await until(lambda: engine.idle)


async def test_close_ends_every_candidate(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True))
    job = engine.submit(req("a b c d", n=2))
    await until(lambda: job.state is JobState.RUNNING)

    backend.open()
    await asyncio.wait_for(engine.close(), 3)

    assert job.state is JobState.CANCELLED and job.error is not None
    assert "shutting down" in job.error


# -- shutdown --------------------------------------------------------------------------------


async def test_close_stops_pending_jobs_and_does_not_hang(make_engine: MakeEngine) -> None:
    engine, _ = await make_engine(
        FakeStepBackend(step_delay=0.005), max_batch_size=2, member_inflight_limit=5
    )
    words = " ".join(f"w{i}" for i in range(500))
    jobs = [engine.submit(req(words, user=i)) for i in range(5)]
    await until(lambda: jobs[0].generated_tokens >= 2)

    await asyncio.wait_for(engine.close(), 3)

    assert all(job.state is JobState.CANCELLED for job in jobs)
    assert all(job.error is not None and "shutting down" in job.error for job in jobs)
    assert jobs[0].text.startswith("w0 w1 ")  # running jobs keep what they wrote
    assert jobs[4].text == ""
    for job in jobs:
        await asyncio.wait_for(job.wait(), 1)
    with pytest.raises(GenerationFailed):
        engine.submit(req())
    # The thread said it is exiting before close() returned; let it finish returning.
    await until(lambda: not any(t.name == THREAD for t in threading.enumerate()))
    await engine.close()  # twice is fine


async def test_close_returns_even_if_a_model_call_is_stuck(make_engine: MakeEngine) -> None:
    engine, backend = await make_engine(FakeStepBackend(manual_steps=True), close_timeout_s=0.1)
    job = engine.submit(req("a b c"))
    await until(backend.in_step.is_set)

    await asyncio.wait_for(engine.close(), 2)

    assert job.state is JobState.CANCELLED and job.text == "a "
    backend.open()  # let the stranded thread finish so it does not outlive the test
    await until(lambda: not any(t.name == THREAD for t in threading.enumerate()))


async def test_jobs_submitted_before_start_run_after_it() -> None:
    backend = FakeStepBackend()
    engine = Engine(backend, EngineConfig(job_timeout_s=5.0))
    job = engine.submit(req("early bird"))
    assert job.position == 1
    await engine.start()
    try:
        await asyncio.wait_for(job.wait(), 2)
        assert job.text == "early bird"
    finally:
        await engine.close()


def test_config_from_settings_copies_the_matching_fields() -> None:
    from bot.config import Settings

    settings = Settings(queue_limit=9, guild_queue_limit=4, member_inflight_limit=3,
                        job_timeout_s=12.5, max_batch_size=6)  # fmt: skip
    config = EngineConfig.from_settings(settings)
    assert (config.queue_limit, config.guild_queue_limit, config.member_inflight_limit) == (
        9,
        4,
        3,
    )
    assert (config.job_timeout_s, config.max_batch_size) == (12.5, 6)
    with pytest.raises(ValueError):
        EngineConfig(member_inflight_limit=0)


def test_fake_backend_writes_the_prompt_words() -> None:
    backend = FakeStepBackend()
    seq = SequenceInput(1, ({"role": "user", "content": "one two"},), SamplingParams())
    first = backend.add([seq])
    second = backend.step()
    assert [(u.text_delta, u.finished) for u in first + second] == [("one ", None), ("two", "eos")]
    assert backend.active == 0


async def test_a_crashed_generation_thread_fails_jobs_instead_of_stranding_them(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = await make_engine(member_inflight_limit=5)
    worker = engine._worker
    assert isinstance(worker, LocalWorker)

    def bug(*args: object) -> None:
        raise KeyError("a bug in the worker, not the model")

    monkeypatch.setattr(worker, "_tick", bug)
    first = engine.submit(req("a b"))
    await asyncio.wait_for(first.wait(), 2)
    later = engine.submit(req("c d", user=2))  # the thread is gone: fail at once
    await asyncio.wait_for(later.wait(), 2)

    assert first.state is JobState.FAILED and later.state is JobState.FAILED
    assert later.error is not None and "try again" in later.error
    await until(lambda: engine.idle)


class AsyncWorker:
    """A stand-in for a remote-server worker: asyncio tasks, no thread, a concurrency cap."""

    capacity = 2

    def __init__(self) -> None:
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.peak = 0

    async def start(self, sink: ReportSink) -> None:
        self.sink = sink

    def dispatch(self, sequences: Sequence[SequenceInput]) -> None:
        for seq in sequences:
            self.tasks[seq.seq_id] = asyncio.create_task(self._stream(seq))
        self.peak = max(self.peak, len(self.tasks))

    async def _stream(self, seq: SequenceInput) -> None:
        now = asyncio.get_running_loop().time
        self.sink(WorkerReport(now(), started=(seq.seq_id,), started_at=now()))
        words = seq.messages[-1]["content"].split()
        try:
            for i, word in enumerate(words, start=1):
                await asyncio.sleep(0)
                done: FinishReason | None = "eos" if i == len(words) else None
                update = SequenceUpdate(seq.seq_id, word, i, done)
                self.sink(WorkerReport(now(), updates=(update,)))
        finally:
            del self.tasks[seq.seq_id]
            self.sink(WorkerReport(now(), released=(seq.seq_id,)))

    def cancel(self, seq_ids: Collection[int]) -> None:
        for seq_id in seq_ids:
            if seq_id in self.tasks:
                self.tasks[seq_id].cancel()

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()


async def test_the_engine_runs_on_any_worker_with_the_same_rules() -> None:
    worker = AsyncWorker()
    engine = Engine.with_worker(worker, EngineConfig(member_inflight_limit=1, job_timeout_s=5))
    await engine.start()
    try:
        jobs = [engine.submit(req("x y z", guild=1, user=i)) for i in range(4)]
        with pytest.raises(LimitReached, match="limit per member is 1"):
            engine.submit(req("again", guild=1, user=0))
        cancelled = engine.submit(req("never runs", guild=2, user=9))
        assert cancelled.position == 2  # fairness: right after guild 1's first request
        cancelled.cancel()
        for job in jobs:
            await asyncio.wait_for(job.wait(), 2)
        assert [job.text for job in jobs] == ["xyz"] * 4
        assert worker.peak == 2  # the worker's capacity is respected
        await until(lambda: engine.idle)
    finally:
        await engine.close()
