"""PolicyService on real SQLite: every refusal, masking, settings updates, moderators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.domain import GuildSettings, RequestStatus, Style
from bot.errors import InvalidInput, LimitReached
from bot.services.creations import Requester
from bot.services.policy import MASK, SETTING_NAMES
from tests.integration.services_kit import (
    CHANNEL,
    GUILD,
    MEMBER,
    OTHER_CHANNEL,
    OTHER_GUILD,
    STRANGER,
    Kit,
    open_kit,
    stored,
)

HERE = Requester(GUILD, CHANNEL, MEMBER)
POEM = {"theme": "rain on a tin roof", "form": "haiku"}
MATURE = Style(guild_id=None, name="pulp", description="d", instructions="i", mature=True)


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    async with open_kit(tmp_path) as opened:
        yield opened


async def check(
    kit: Kit,
    inputs: dict[str, Any] | None = None,
    *,
    requester: Requester = HERE,
    command: str = "poem",
    style: Style | None = None,
    nsfw: bool = False,
) -> GuildSettings:
    return await kit.policy.check(
        requester, command, inputs or POEM, style=style, channel_nsfw=nsfw
    )


async def test_a_new_server_and_dms_get_the_defaults(kit: Kit) -> None:
    assert await check(kit) == GuildSettings()
    assert await kit.policy.settings(None) == GuildSettings()
    assert await check(kit, requester=Requester(None, CHANNEL, MEMBER)) == GuildSettings()


async def test_only_allowed_channels_take_requests(kit: Kit) -> None:
    await kit.policy.update(GUILD, allowed_channel_ids=[OTHER_CHANNEL])
    with pytest.raises(InvalidInput, match=f"not open in this channel. Try <#{OTHER_CHANNEL}>."):
        await check(kit)
    assert (await check(kit, requester=Requester(GUILD, OTHER_CHANNEL, MEMBER))).cooldown_s == 0
    # The rule is that server's alone.
    await check(kit, requester=Requester(OTHER_GUILD, CHANNEL, MEMBER))


async def test_cooldown_says_how_long_to_wait(kit: Kit) -> None:
    await kit.policy.update(GUILD, cooldown_s=30)
    await check(kit)  # nothing asked yet
    await stored(kit)
    kit.clock.advance(seconds=10.5)
    with pytest.raises(LimitReached, match=r"ask again in 20 s \(this server's cooldown is 30 s\)"):
        await check(kit)
    # Other members and other servers are not slowed down.
    await check(kit, requester=Requester(GUILD, CHANNEL, STRANGER))
    await check(kit, requester=Requester(OTHER_GUILD, CHANNEL, MEMBER))
    kit.clock.advance(seconds=20)
    await check(kit)


async def test_in_flight_limit_counts_queued_and_running(kit: Kit) -> None:
    await stored(kit, status=RequestStatus.QUEUED)
    await stored(kit, status=RequestStatus.RUNNING)
    with pytest.raises(
        LimitReached, match="already have 2 requests in progress; the limit here is 2"
    ):
        await check(kit)
    await check(kit, requester=Requester(OTHER_GUILD, CHANNEL, MEMBER))
    await check(kit, requester=Requester(GUILD, CHANNEL, STRANGER))
    await kit.policy.update(GUILD, max_in_flight=3)
    await check(kit)


async def test_queued_limit(kit: Kit) -> None:
    await kit.policy.update(GUILD, max_in_flight=5, max_queued=1)
    await stored(kit, status=RequestStatus.RUNNING)
    await check(kit)  # a running request is not waiting
    await stored(kit, status=RequestStatus.QUEUED)
    with pytest.raises(LimitReached, match="1 requests waiting in the queue; the limit here is 1"):
        await check(kit)


async def test_finished_requests_do_not_count(kit: Kit) -> None:
    for status in (RequestStatus.DONE, RequestStatus.FAILED, RequestStatus.CANCELLED):
        await stored(kit, status=status)
    await check(kit)


async def test_every_free_text_input_is_length_checked(kit: Kit) -> None:
    await kit.policy.update(GUILD, max_input_chars=40)
    long = "x" * 41
    for key, label in [
        ("theme", "theme"),
        ("premise", "premise"),
        ("characters", "list of characters"),
        ("setting", "setting"),
    ]:
        with pytest.raises(
            InvalidInput, match=f"The {label} is 41 characters long; the limit here is 40"
        ):
            await check(kit, {key: long}, command="script")
    # Critique reads whole pieces: its own cap, not the server's input limit.
    await check(kit, {"text": "y" * 3000, "focus": "overall"}, command="critique")
    with pytest.raises(
        InvalidInput, match="The text is 4001 characters long; the limit here is 4000"
    ):
        await check(kit, {"text": "y" * 4001}, command="critique")
    # A Continue's earlier output is the bot's own text, not the member's input.
    await check(kit, {"theme": "rain", "previous": "z" * 500, "continue_of": 7})


async def test_blocked_words_are_refused_without_echoing_them(kit: Kit) -> None:
    await kit.policy.update(GUILD, blocked_words="Grue, dark lord")
    for theme in [
        "a GRUE in the cellar",
        "the gr\u200bue again",  # zero-width space cannot split it
        "ｇｒｕｅ",  # full-width letters are the same letters
        "the Dark   Lord rises",
    ]:
        with pytest.raises(InvalidInput) as refused:
            await check(kit, {"theme": theme})
        assert "blocked" in refused.value.message
        assert "grue" not in refused.value.message.lower()
        assert "dark" not in refused.value.message.lower()
    # Whole words only: inside another word it is fine, and other servers don't block it.
    await check(kit, {"theme": "congruent lines, darkly lordly"})
    await check(kit, {"theme": "a grue"}, requester=Requester(OTHER_GUILD, CHANNEL, MEMBER))
    with pytest.raises(InvalidInput, match="The premise contains a word this server has blocked"):
        await check(kit, {"premise": "grue"}, command="script")


async def test_mature_styles_need_an_age_restricted_channel(kit: Kit) -> None:
    with pytest.raises(InvalidInput, match="`pulp` is for age-restricted channels only here"):
        await check(kit, style=MATURE)
    await check(kit, style=MATURE, nsfw=True)
    await check(kit, style=replace(MATURE, mature=False))
    await kit.policy.update(GUILD, mature_only_in_age_restricted=False)
    await check(kit, style=MATURE)


async def test_mask_hides_blocked_words_in_output(kit: Kit) -> None:
    settings = await kit.policy.update(GUILD, blocked_words=["grue", "dark lord"])
    text = "The Grue sleeps.\nCongruent dark\u200b lord, GRUE!"
    assert kit.policy.mask(text, settings) == f"The {MASK} sleeps.\nCongruent {MASK}, {MASK}!"
    assert kit.policy.mask(text, GuildSettings()) == text


async def test_update_validates_and_saves(kit: Kit) -> None:
    updated = await kit.policy.update(
        GUILD,
        cooldown_s="15",
        max_in_flight=3,
        max_queued=1,
        max_input_chars=500,
        blocked_words=["Grue", "grue", "  dark   Lord "],
        community_taste="on",
        critique_opt_in=False,
        allowed_channel_ids="<#123456789012345678> 223456789012345678",
        moderator_role_id="<@&323456789012345678>",
    )
    assert updated == GuildSettings(
        cooldown_s=15,
        max_in_flight=3,
        max_queued=1,
        max_input_chars=500,
        blocked_words=("grue", "dark lord"),
        community_taste=True,
        critique_opt_in=False,
        allowed_channel_ids=frozenset({123456789012345678, 223456789012345678}),
        moderator_role_id=323456789012345678,
    )
    assert await kit.policy.settings(GUILD) == updated
    assert await kit.policy.settings(OTHER_GUILD) == GuildSettings()
    cleared = await kit.policy.update(GUILD, allowed_channel_ids="", moderator_role_id=None)
    assert cleared.allowed_channel_ids == frozenset() and cleared.moderator_role_id is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"volume": 11}, "no setting called `volume`"),
        ({"cooldown_s": -1}, "from 0 to 3600 seconds"),
        ({"cooldown_s": 3601}, "from 0 to 3600 seconds"),
        ({"cooldown_s": "soon"}, "whole number"),
        ({"max_in_flight": 0}, "from 1 to 10"),
        ({"max_queued": 11}, "from 1 to 10"),
        ({"max_input_chars": 5}, "from 20 to 4000 characters"),
        ({"max_in_flight": True}, "whole number"),
        ({"community_taste": "maybe"}, "on or off"),
        ({"allowed_channel_ids": "#general"}, "is not a channel or role"),
        ({"moderator_role_id": [323456789012345678, 423456789012345678]}, "at most 1"),
        ({"blocked_words": ["x" * 51]}, "at most 50 characters"),
        ({"blocked_words": [f"w{i}" for i in range(201)]}, "at most 200 words"),
    ],
)
async def test_update_refuses_bad_values_and_saves_nothing(
    kit: Kit, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        # A valid change alongside: nothing at all is saved when one value is bad.
        await kit.policy.update(GUILD, **({"max_queued": 1} | changes))
    assert await kit.policy.settings(GUILD) == GuildSettings()


def test_every_setting_has_a_name_update_knows() -> None:
    assert set(SETTING_NAMES) == set(GuildSettings.__dataclass_fields__)


async def test_moderators_are_manage_server_or_the_configured_role(kit: Kit) -> None:
    role = 323456789012345678
    assert await kit.policy.is_moderator(GUILD, manage_guild=True, role_ids=[])
    assert not await kit.policy.is_moderator(GUILD, manage_guild=False, role_ids=[role])
    await kit.policy.update(GUILD, moderator_role_id=role)
    assert await kit.policy.is_moderator(GUILD, manage_guild=False, role_ids=[1, role])
    assert not await kit.policy.is_moderator(GUILD, manage_guild=False, role_ids=[1])
    # The role is that server's: the same role id elsewhere means nothing.
    assert not await kit.policy.is_moderator(OTHER_GUILD, manage_guild=False, role_ids=[role])
    assert not await kit.policy.is_moderator(None, manage_guild=True, role_ids=[role])
