"""CreationService.submit/resume with policy, styles and community taste, on real
SQLite and the real engine over FakeStepBackend (which writes back the user turn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.domain import NewRequest, RequestRecord, RequestStatus
from bot.errors import InvalidInput, LimitReached
from bot.generation.engine import Engine, EngineConfig
from bot.generation.model_loader import LoadedModel
from bot.prompts import WORKED_EXAMPLES
from bot.services.creations import CreationService, Requester
from bot.services.policy import MASK
from tests.bots import sung
from tests.fakes import FakeStepBackend
from tests.integration.services_kit import (
    CHANNEL,
    FRIEND,
    GUILD,
    MEMBER,
    OTHER_CHANNEL,
    OTHER_GUILD,
    Kit,
    creation_service,
    open_kit,
    stored,
)

HERE = Requester(GUILD, CHANNEL, MEMBER)
POEM = {"theme": "rain on a tin roof", "form": "free verse", "length": "short"}
STYLE_FIELDS: dict[str, Any] = {
    "description": "Salt and wind",
    "instructions": "Sing it like a sea shanty.",
    "example": None,
    "commands": [],
    "mature": False,
    "by_user": FRIEND,
    "create": True,
}


@dataclass
class World:
    kit: Kit
    backend: FakeStepBackend
    engine: Engine
    creations: CreationService

    def user_turns(self) -> list[str]:
        """The last message of every sequence the model was given, in order."""
        return [seq.messages[-1]["content"] for seq in self.backend.inputs.values()]

    async def run(
        self, inputs: dict[str, Any], requester: Requester = HERE, command: str = "poem", **kw: Any
    ) -> RequestRecord:
        submission = await self.creations.submit(requester, command, inputs, **kw)
        await submission.job.wait()
        await self.creations.settled(submission.request_id)
        record = await self.kit.requests.get(
            requester.guild_id, submission.request_id, user_id=requester.user_id
        )
        assert record is not None
        return record


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with open_kit(tmp_path, poem_candidates=3) as kit:
        backend = FakeStepBackend(script=sung)
        engine = Engine(backend, EngineConfig(close_timeout_s=1))
        await engine.start()
        creations = creation_service(kit, engine)
        try:
            yield World(kit, backend, engine, creations)
        finally:
            await engine.close()
            await creations.close()


async def test_submit_stores_the_resolved_style_and_writes_with_it(world: World) -> None:
    record = await world.run(POEM | {"style": " Noir"})
    assert record.status is RequestStatus.DONE
    assert record.inputs == POEM | {"style": "noir"}
    (turn,) = world.user_turns()
    assert "hard-boiled noir voice" in turn and "rain on a tin roof" in turn
    assert record.output is not None and "hard-boiled" in record.output


async def test_defaults_apply_and_no_style_stores_none(world: World) -> None:
    plain = await world.run(POEM | {"style": None})
    assert "style" not in plain.inputs
    await world.kit.styles.set_default(GUILD, "poem", CHANNEL, "gothic")
    defaulted = await world.run(POEM)
    elsewhere = await world.run(POEM, Requester(GUILD, OTHER_CHANNEL, MEMBER))
    assert defaulted.inputs["style"] == "gothic" and "style" not in elsewhere.inputs
    assert "gothic mood" in world.user_turns()[1]


async def test_refused_requests_store_nothing(world: World) -> None:
    await world.kit.policy.update(GUILD, blocked_words="tin", allowed_channel_ids=[CHANNEL])
    with pytest.raises(InvalidInput, match="blocked"):
        await world.creations.submit(HERE, "poem", POEM)
    with pytest.raises(InvalidInput, match="not open in this channel"):
        await world.creations.submit(Requester(GUILD, OTHER_CHANNEL, MEMBER), "poem", POEM)
    with pytest.raises(InvalidInput, match="no style called `opera`"):
        await world.creations.submit(HERE, "poem", {"theme": "sea", "style": "opera"})
    with pytest.raises(InvalidInput, match="age-restricted"):
        await world.creations.submit(HERE, "poem", {"theme": "sea", "style": "pulp-horror"})
    assert await world.kit.library.history(GUILD) == []
    assert world.backend.inputs == {}
    mature = await world.run({"theme": "sea", "style": "pulp-horror"}, channel_nsfw=True)
    assert mature.inputs["style"] == "pulp-horror"


async def test_member_limits_come_from_the_servers_settings(world: World) -> None:
    await world.kit.policy.update(GUILD, cooldown_s=60)
    await world.run(POEM)
    with pytest.raises(LimitReached, match="ask again in 60 s"):
        await world.creations.submit(HERE, "poem", POEM)
    assert len(await world.kit.library.history(GUILD)) == 1


async def test_a_server_cannot_use_anothers_style(world: World) -> None:
    await world.kit.styles.save(GUILD, "shanty", **STYLE_FIELDS)
    ours = await world.run(POEM | {"style": "shanty"})
    assert ours.inputs["style"] == "shanty"
    with pytest.raises(InvalidInput, match="no style called `shanty`"):
        await world.creations.submit(
            Requester(OTHER_GUILD, CHANNEL, MEMBER), "poem", POEM | {"style": "shanty"}
        )


async def test_community_taste_shows_favourites_only_when_enabled(world: World) -> None:
    kit = world.kit
    loved = await stored(kit, inputs={"theme": "sea", "form": "free verse"}, output="gulls grue")
    await stored(kit, inputs={"theme": "sea", "style": "noir"}, output="wet neon alleys")
    other = await stored(kit, OTHER_GUILD, output="another server's poem")
    for record in (loved, other):
        await kit.library.toggle_favourite(record.guild_id, record.id, FRIEND)
    await world.run(POEM)
    assert "gulls" not in world.user_turns()[-1]

    await kit.policy.update(GUILD, community_taste=True, blocked_words=["grue"])
    await world.run(POEM)
    turn = world.user_turns()[-1]
    assert "Pieces this server loved" in turn
    assert f"gulls {MASK}" in turn and "grue" not in turn
    assert "neon" not in turn  # a different style (and not starred)
    assert "another server" not in turn


async def test_fixed_forms_run_candidates_in_one_job_and_record_the_chosen(world: World) -> None:
    # Each candidate writes one line of the worked example haiku: the checker must pick
    # the one that is a whole haiku.
    haiku = WORKED_EXAMPLES["haiku"][0][1]
    calls: list[int] = []

    def script(seq: Any) -> list[str]:
        calls.append(seq.seq_id)
        return [haiku] if len(calls) == 2 else ["not a haiku at all"]

    world.backend.script = script
    record = await world.run({"theme": "rain", "form": "haiku"})
    assert len(world.backend.inputs) == 3
    assert record.status is RequestStatus.DONE and record.output == haiku
    assert record.inputs == {"theme": "rain", "form": "haiku"}


async def test_candidates_never_exceed_what_the_engine_runs_at_once(world: World) -> None:
    # The engine's capacity, not a setting, is the limit: a remote server's concurrency
    # can be below max_batch_size.
    engine = Engine(FakeStepBackend(script=sung, max_batch_size=2), EngineConfig(close_timeout_s=1))
    await engine.start()
    try:
        creations = creation_service(world.kit, engine)
        submission = await creations.submit(HERE, "poem", {"theme": "rain", "form": "haiku"})
        await submission.job.wait()
        await creations.settled(submission.request_id)
        assert world.kit.settings.poem_candidates > 2
        assert len(submission.job.candidates) == 2
    finally:
        await engine.close()


async def test_resume_rebuilds_with_the_style_or_without_a_deleted_one(world: World) -> None:
    kit = world.kit
    await kit.styles.save(GUILD, "shanty", **STYLE_FIELDS)
    kept = await kit.requests.create(
        NewRequest(
            guild_id=GUILD,
            channel_id=CHANNEL,
            user_id=MEMBER,
            command="poem",
            inputs=POEM | {"style": "shanty"},
        )
    )
    gone = await kit.requests.create(
        NewRequest(
            guild_id=GUILD,
            channel_id=CHANNEL,
            user_id=FRIEND,
            command="poem",
            inputs=POEM | {"style": "vanished"},
        )
    )
    # A default set since does not apply to a request stored without a style.
    await kit.styles.set_default(GUILD, "poem", None, "gothic")
    bare = await kit.requests.create(
        NewRequest(guild_id=GUILD, channel_id=CHANNEL, user_id=FRIEND, command="poem", inputs=POEM)
    )
    for record in (kept, gone, bare):
        submission = await world.creations.resume(record)
        assert submission is not None
        await submission.job.wait()
        await world.creations.settled(record.id)
    turns = world.user_turns()
    assert "sea shanty" in turns[0]
    assert "Write in this style" not in turns[1] and "Write in this style" not in turns[2]
    for record in (kept, gone, bare):
        row = await kit.requests.get(GUILD, record.id)
        assert row is not None and row.status is RequestStatus.DONE


@pytest.mark.model
async def test_a_styled_poem_with_community_taste_on_the_real_model(
    tmp_path: Path, loaded: LoadedModel
) -> None:
    from bot.generation.local_backend import LocalBackend

    async with open_kit(tmp_path, max_batch_size=4) as kit:
        loved = await stored(kit, output="Salt wind in the rigging,\nwe haul and we sing.")
        await kit.library.toggle_favourite(GUILD, loved.id, FRIEND)
        await kit.policy.update(GUILD, community_taste=True)
        engine = Engine(LocalBackend(loaded, max_batch_size=4), EngineConfig())
        await engine.start()
        creations = creation_service(kit, engine)
        try:
            submission = await creations.submit(
                HERE, "poem", {"theme": "the harbour", "form": "haiku", "style": "minimalist"}
            )
            await submission.job.wait()
            await creations.settled(submission.request_id)
        finally:
            await engine.close()
            await creations.close()
        record = await kit.requests.get(GUILD, submission.request_id)
        assert record is not None and record.status is RequestStatus.DONE
        assert record.output and record.output == record.output.strip()
        assert record.inputs["style"] == "minimalist"
        assert len(submission.job.candidates) == kit.settings.poem_candidates
        assert submission.job.chosen is not None
