"""Stop strings, requests and a Job's own stream, without an engine."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.generation.backend import SamplingParams, SequenceUpdate
from bot.generation.jobs import GenerationRequest, Job, JobState, StopFilter


def feed_all(stops: tuple[str, ...], deltas: list[str]) -> list[str]:
    """What a reader would see after each delta."""
    stop_filter = StopFilter(stops)
    seen = []
    for delta in deltas:
        stop_filter.feed(delta)
        seen.append(stop_filter.visible)
    return seen


def test_stop_string_cuts_the_text_at_its_first_occurrence() -> None:
    stop_filter = StopFilter(("THE END", "\n\n"))
    for delta in ["Roses ", "are red.", "\n", "\nTHE END"]:
        stop_filter.feed(delta)
    assert stop_filter.stopped
    assert stop_filter.visible == "Roses are red."


def test_a_partial_stop_string_is_held_back_then_released_if_it_does_not_match() -> None:
    seen = feed_all(("THE END",), ["a ", "THE", " E", "ND"])
    assert seen == ["a ", "a ", "a ", "a "]

    seen = feed_all(("THE END",), ["a ", "THE", " cat"])
    assert seen == ["a ", "a ", "a THE cat"]


def test_a_stop_string_split_across_many_deltas_is_found() -> None:
    stop_filter = StopFilter(("<|end|>",))
    for ch in "hello<|end|>tail":
        stop_filter.feed(ch)
    assert stop_filter.stopped and stop_filter.visible == "hello"


def test_flush_releases_a_held_back_tail_when_no_more_text_comes() -> None:
    stop_filter = StopFilter(("THE END",))
    stop_filter.feed("so TH")
    assert stop_filter.visible == "so "
    stop_filter.flush()
    assert stop_filter.visible == "so TH"


def test_no_stop_strings_passes_text_through() -> None:
    assert feed_all((), ["a", "b"]) == ["a", "ab"]
    assert feed_all(("",), ["a"]) == ["a"]  # an empty stop string is ignored


def test_request_needs_messages_and_a_token_budget() -> None:
    with pytest.raises(ValueError):
        GenerationRequest(messages=(), params=SamplingParams(), guild_id=None, user_id=1)
    with pytest.raises(ValueError):
        GenerationRequest(
            messages=({"role": "user", "content": "hi"},),
            params=SamplingParams(max_new_tokens=0),
            guild_id=None,
            user_id=1,
        )


def test_request_needs_at_least_one_candidate_and_choose_is_not_data() -> None:
    def make(**extra: Any) -> GenerationRequest:
        return GenerationRequest(
            messages=({"role": "user", "content": "hi"},),
            params=SamplingParams(),
            guild_id=None,
            user_id=1,
            **extra,
        )

    with pytest.raises(ValueError, match="n >= 1"):
        make(n=0)
    assert make().n == 1 and make().choose is None
    picky = make(n=3, choose=len)
    assert picky == make(n=3, choose=lambda texts: 0)  # a function is not compared
    assert "choose" not in repr(picky)


async def test_candidates_stream_separately_and_text_is_the_chosen_one_once_done() -> None:
    request = GenerationRequest(
        messages=({"role": "user", "content": "x"},),
        params=SamplingParams(stop=("END",)),
        guild_id=None,
        user_id=1,
        n=3,
    )
    job = Job(request, submitted_at=0.0, on_cancel=lambda job: False)
    job._mark_running(1.0)
    job._apply(1, SequenceUpdate(11, "one", 1), 1.1)
    assert job.timings.first_token_at == 1.1  # any candidate's first token counts
    job._apply(0, SequenceUpdate(10, "zero", 1), 1.2)
    assert job._apply(2, SequenceUpdate(12, "two END more", 3), 1.3)  # its own stop string
    assert job.text == "zero" and job.candidates == ("zero", "one", "two ")
    assert job.generated_tokens == 5 and job.chosen is None

    assert not job._end_candidate(0, finish_reason="eos")
    assert not job._end_candidate(1, error="broke")
    assert job._end_candidate(2, finish_reason="stop")  # the last one has ended
    assert job._finished_candidates() == [0, 2]
    job._finish(JobState.DONE, 2.0, finish_reason="stop", chosen=2)
    assert (job.text, job.chosen, job.snapshot().text) == ("two ", 2, "two ")


def test_terminal_states() -> None:
    assert {s for s in JobState if s.terminal} == {
        JobState.DONE,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMED_OUT,
    }


async def test_updates_coalesce_for_a_slow_reader_and_end_after_the_terminal_state() -> None:
    request = GenerationRequest(
        messages=({"role": "user", "content": "x"},),
        params=SamplingParams(),
        guild_id=None,
        user_id=1,
        job_id="job-1",
    )
    job = Job(request, submitted_at=0.0, on_cancel=lambda job: False)
    stream = job.updates()

    first = await anext(stream)
    assert (first.id, first.state, first.text) == ("job-1", JobState.QUEUED, "")

    # Three changes while the reader is away: it sees only the newest one.
    job._mark_running(1.0)
    job._apply(0, SequenceUpdate(1, "a ", 1), 1.1)
    job._apply(0, SequenceUpdate(1, "b", 2), 1.2)
    second = await anext(stream)
    assert (second.state, second.text, second.generated_tokens) == (JobState.RUNNING, "a b", 2)

    # A reader waiting for the next change is woken by it.
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not pending.done()
    job._finish(JobState.DONE, 2.0, finish_reason="eos", chosen=0)
    third = await pending
    assert third.state is JobState.DONE and third.finish_reason == "eos"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)

    # A job that has already ended yields its final snapshot once.
    assert [s.state async for s in job.updates()] == [JobState.DONE]
    assert await job.wait() is job
