"""The engine driving the real local backend end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bot.generation.backend import SamplingParams
from bot.generation.engine import Engine, EngineConfig
from bot.generation.jobs import GenerationRequest, JobState
from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import LoadedModel
from bot.prompts import poem_messages

pytestmark = pytest.mark.model


async def test_concurrent_poems_stream_through_the_engine(loaded: LoadedModel) -> None:
    engine = Engine(LocalBackend(loaded, max_batch_size=4), EngineConfig(max_batch_size=4))
    await engine.start()
    try:
        jobs = [
            engine.submit(
                GenerationRequest(
                    messages=poem_messages(theme, "free verse"),
                    params=SamplingParams(max_new_tokens=12 + 4 * i, seed=i),
                    guild_id=1,
                    user_id=i,
                )
            )
            for i, theme in enumerate(["rain", "a long road home at night", "tea"])
        ]
        await asyncio.wait_for(asyncio.gather(*(job.wait() for job in jobs)), timeout=120)
    finally:
        await engine.close()
    for i, job in enumerate(jobs):
        assert job.state is JobState.DONE, job.error
        assert job.text.strip()
        assert "<|" not in job.text
        assert 1 <= job.generated_tokens <= 12 + 4 * i
        assert job.timings.first_token_at is not None


async def test_candidates_of_one_job_write_different_poems(loaded: LoadedModel) -> None:
    engine = Engine(LocalBackend(loaded, max_batch_size=4), EngineConfig(max_batch_size=4))
    await engine.start()
    offered: list[Sequence[str]] = []

    def longest(texts: Sequence[str]) -> int:
        offered.append(texts)
        return max(range(len(texts)), key=lambda i: len(texts[i]))

    try:
        job = engine.submit(
            GenerationRequest(
                messages=poem_messages("the sea at dawn", "haiku"),
                params=SamplingParams(max_new_tokens=24, seed=3),
                guild_id=1,
                user_id=1,
                n=3,
                choose=longest,
            )
        )
        await asyncio.wait_for(job.wait(), timeout=120)
    finally:
        await engine.close()
    assert job.state is JobState.DONE, job.error
    assert len(job.candidates) == 3 and all(text.strip() for text in job.candidates)
    assert len(set(job.candidates)) == 3  # seeds 3, 4, 5: three different poems
    assert all("<|" not in text for text in job.candidates)
    assert job.chosen is not None and job.text == job.candidates[job.chosen]
    assert len(job.text) == max(len(text) for text in job.candidates)
    assert list(offered[0]) == list(job.candidates)
    assert 3 <= job.generated_tokens <= 3 * 24
