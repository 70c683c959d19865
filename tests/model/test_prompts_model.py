"""Every command's prompt on the real default model, through the engine, end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest

from bot import forms
from bot.config import Settings
from bot.fountain import to_fountain
from bot.generation.engine import Engine, EngineConfig
from bot.generation.jobs import GenerationRequest, Job, JobState
from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import LoadedModel
from bot.prompts import Prompt, build_prompt, clean_output

pytestmark = pytest.mark.model


async def run(loaded: LoadedModel, prompt: Prompt, *, seed: int, max_new_tokens: int) -> Job:
    """One job for ``prompt`` (all its candidates) on a fresh engine."""
    engine = Engine(LocalBackend(loaded, max_batch_size=4), EngineConfig(max_batch_size=4))
    await engine.start()
    try:
        params = dataclasses.replace(prompt.params, seed=seed, max_new_tokens=max_new_tokens)
        job = engine.submit(
            GenerationRequest(
                messages=prompt.messages,
                params=params,
                guild_id=1,
                user_id=1,
                n=prompt.candidates,
                choose=prompt.choose,
            )
        )
        await asyncio.wait_for(job.wait(), timeout=300)
    finally:
        await engine.close()
    assert job.state is JobState.DONE, job.error
    return job


async def test_haiku_best_of_n_sends_the_candidate_the_checker_ranks_first(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, poem_candidates=4)
    prompt = build_prompt("poem", {"theme": "rain on a tin roof", "form": "haiku"}, settings)
    assert prompt.candidates == 4
    job = await run(loaded, prompt, seed=11, max_new_tokens=prompt.params.max_new_tokens)
    assert len(job.candidates) == 4 and len(set(job.candidates)) > 1
    reports = [forms.check("haiku", clean_output(text)) for text in job.candidates]
    ranks = [(r.passes, r.score) for r in reports]
    assert job.chosen is not None and job.text == job.candidates[job.chosen]
    assert ranks[job.chosen] == max(ranks)
    assert clean_output(job.text) and "<|" not in clean_output(job.text)


async def test_script_becomes_fountain_with_a_heading_and_a_cue(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    inputs = {
        "premise": "two friends argue about who ate the last slice of cake",
        "characters": "Mara, Jonah",
        "genre": "comedy",
        "setting": "a small kitchen at night",
        "length": "short",
    }
    prompt = dataclasses.replace(build_prompt("script", inputs, settings), candidates=2)
    job = await run(loaded, prompt, seed=5, max_new_tokens=160)
    scenes = [to_fountain(clean_output(text), setting=inputs["setting"]) for text in job.candidates]
    for scene in scenes:
        assert re.match(r"^(INT|EXT)\. \S", scene), scene
        assert "<|" not in scene
    # A cue: a capitalised line after a blank line, with dialogue right under it. Two
    # samples, so one odd sample (all action) does not make the test flaky.
    cue = re.compile(r"(?:^|\n\n)[A-Z][A-Z0-9 .'’\-]*(?: \([^)]*\))?\n[^\n\s]")
    assert any(cue.search(scene) for scene in scenes), scenes


async def test_critique_is_plain_feedback(loaded: LoadedModel, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    text = (
        "The rain came down on the old tin roof,\n"
        "a thousand fingers drumming out of time;\n"
        "I lay awake and counted every proof\n"
        "that nothing I had loved would stay in rhyme."
    )
    prompt = build_prompt(
        "critique", {"text": text, "focus": "imagery", "tone": "gentle"}, settings
    )
    job = await run(loaded, prompt, seed=2, max_new_tokens=120)
    feedback = clean_output(job.text)
    assert len(feedback.split()) >= 10
    for leftover in ("<|", "|>", "im_start", "im_end", '"""', "Here is the writing:"):
        assert leftover not in feedback
