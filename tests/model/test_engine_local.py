"""The engine driving the real local backend end to end."""

from __future__ import annotations

import asyncio

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
