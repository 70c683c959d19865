"""LibraryService on real SQLite: history, favourites, export, delete, forgetting, purging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain import RequestStatus
from bot.errors import InvalidInput, UserFacingError
from bot.services.library import ANTHOLOGY_FILE, SCRIPTS_FILE, anthology_cursor
from tests.integration.services_kit import (
    FRIEND,
    GUILD,
    MEMBER,
    OTHER_GUILD,
    STRANGER,
    Kit,
    open_kit,
    stored,
)

SCENE = "INT. KITCHEN - NIGHT\n\nAnna stirs the soup.\n\nANNA\nIt's burning again."


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    async with open_kit(tmp_path) as opened:
        yield opened


# -- history and get ------------------------------------------------------------------------


async def test_history_pages_newest_first_within_one_server(kit: Kit) -> None:
    mine = [await stored(kit) for _ in range(3)]
    script = await stored(kit, user_id=FRIEND, command="script", inputs={"premise": "soup"})
    await stored(kit, OTHER_GUILD)
    first = await kit.library.history(GUILD, limit=2)
    assert [r.id for r in first] == [script.id, mine[2].id]
    rest = await kit.library.history(GUILD, before_id=first[-1].id, limit=10)
    assert [r.id for r in rest] == [mine[1].id, mine[0].id]
    assert [r.id for r in await kit.library.history(GUILD, user_id=FRIEND)] == [script.id]
    assert [r.id for r in await kit.library.history(GUILD, command="script")] == [script.id]
    other = await kit.library.history(OTHER_GUILD)
    assert len(other) == 1 and other[0].guild_id == OTHER_GUILD


async def test_history_refuses_bad_pages(kit: Kit) -> None:
    with pytest.raises(InvalidInput, match="from 1 to 25"):
        await kit.library.history(GUILD, limit=26)
    with pytest.raises(InvalidInput, match="Pick one of poem, script, critique"):
        await kit.library.history(GUILD, command="opera")
    with pytest.raises(ValueError, match="must name the member"):
        await kit.library.history(None)


async def test_get_is_scoped_by_server_and_dm_member(kit: Kit) -> None:
    record = await stored(kit)
    dm = await stored(kit, None)
    assert await kit.library.get(GUILD, record.id) == record
    assert await kit.library.get(OTHER_GUILD, record.id) is None
    assert await kit.library.get(None, dm.id, user_id=MEMBER) == dm
    assert await kit.library.get(None, dm.id, user_id=STRANGER) is None
    assert await kit.library.get(None, dm.id) is None


# -- favourites -----------------------------------------------------------------------------


async def test_favourite_toggles_and_counts(kit: Kit) -> None:
    record = await stored(kit)
    assert await kit.library.toggle_favourite(GUILD, record.id, FRIEND) == (True, 1)
    assert await kit.library.toggle_favourite(GUILD, record.id, STRANGER) == (True, 2)
    assert await kit.library.starred_by(GUILD, record.id, FRIEND)
    assert await kit.library.toggle_favourite(GUILD, record.id, FRIEND) == (False, 1)
    assert await kit.library.stars(GUILD, record.id) == 1
    assert not await kit.library.starred_by(GUILD, record.id, FRIEND)


async def test_favourite_refusals(kit: Kit) -> None:
    record = await stored(kit)
    running = await stored(kit, status=RequestStatus.RUNNING)
    failed = await stored(kit, status=RequestStatus.FAILED)
    dm = await stored(kit, None)
    with pytest.raises(UserFacingError, match=f"can't find creation #{record.id} in this server"):
        await kit.library.toggle_favourite(OTHER_GUILD, record.id, STRANGER)
    with pytest.raises(UserFacingError, match="can't find creation #999"):
        await kit.library.toggle_favourite(GUILD, 999, FRIEND)
    for unfinished in (running, failed):
        with pytest.raises(UserFacingError, match="Only finished creations can be favourited"):
            await kit.library.toggle_favourite(GUILD, unfinished.id, FRIEND)
    with pytest.raises(UserFacingError, match="direct messages can't be starred"):
        await kit.library.toggle_favourite(None, dm.id, MEMBER)
    assert await kit.library.stars(GUILD, record.id) == 0
    assert await kit.library.stars(OTHER_GUILD, record.id) == 0
    assert await kit.library.stars(None, dm.id) == 0


async def test_anthology_and_hall_of_fame(kit: Kit) -> None:
    quiet = await stored(kit)
    loved = await stored(kit, user_id=FRIEND, command="script", inputs={"premise": "soup"})
    unstarred = await stored(kit)
    await kit.library.toggle_favourite(GUILD, quiet.id, FRIEND)
    await kit.library.toggle_favourite(GUILD, loved.id, MEMBER)
    await kit.library.toggle_favourite(GUILD, loved.id, STRANGER)
    anthology = await kit.library.anthology(GUILD)
    assert {e.request.id for e in anthology} == {quiet.id, loved.id}
    assert unstarred.id not in {e.request.id for e in anthology}
    first = await kit.library.anthology(GUILD, limit=1)
    second = await kit.library.anthology(GUILD, limit=1, before=anthology_cursor(first[0]))
    assert [e.request.id for e in first + second] == [e.request.id for e in anthology]
    assert [e.request.id for e in await kit.library.anthology(GUILD, author_id=FRIEND)] == [
        loved.id
    ]
    assert [e.request.id for e in await kit.library.anthology(GUILD, command="poem")] == [quiet.id]
    fame = await kit.library.hall_of_fame(GUILD)
    assert [(e.request.id, e.stars) for e in fame] == [(loved.id, 2), (quiet.id, 1)]
    assert [e.request.id for e in await kit.library.hall_of_fame(GUILD, offset=1)] == [quiet.id]
    assert await kit.library.anthology(OTHER_GUILD) == []
    assert await kit.library.hall_of_fame(OTHER_GUILD) == []
    with pytest.raises(InvalidInput, match="can't be negative"):
        await kit.library.hall_of_fame(GUILD, offset=-1)
    with pytest.raises(InvalidInput, match="from 1 to 25"):
        await kit.library.anthology(GUILD, limit=0)


# -- export ---------------------------------------------------------------------------------


async def test_export_writes_markdown_and_fountain(kit: Kit) -> None:
    poem = await stored(
        kit,
        inputs={"theme": "rain <@123456789012345678>", "form": "haiku", "style": "noir"},
        output="Rain on the roof\n```\nall night",
    )
    scene = await stored(
        kit,
        user_id=FRIEND,
        command="script",
        inputs={"premise": "burnt soup", "genre": "comedy", "setting": "a kitchen"},
        output=SCENE,
    )
    await stored(kit, command="critique", inputs={"text": "my poem"}, output="Strong verbs.")
    await kit.library.toggle_favourite(GUILD, poem.id, FRIEND)
    await kit.library.toggle_favourite(GUILD, poem.id, STRANGER)
    await kit.library.toggle_favourite(GUILD, scene.id, MEMBER)

    files = dict(await kit.library.export(GUILD, names={FRIEND: "@everyone Bea"}))
    assert set(files) == {ANTHOLOGY_FILE, SCRIPTS_FILE}
    markdown = files[ANTHOLOGY_FILE].decode()
    assert markdown.startswith("# Favourites anthology\n")
    assert "2 creations" in markdown
    assert f"## #{poem.id} · Poem · haiku · style: noir — rain" in markdown
    assert f"By member {MEMBER} · ⭐ 2 stars" in markdown
    assert f"## #{scene.id} · Scene · comedy — burnt soup" in markdown
    assert "By @\u200beveryone Bea · ⭐ 1 star ·" in markdown
    # The poem's own ``` cannot close its block: the fence is longer.
    assert "````text\nRain on the roof\n```\nall night\n````" in markdown
    assert "<@123456789012345678>" not in markdown and "@everyone" not in markdown
    assert "Strong verbs." not in markdown  # not starred

    fountain = files[SCRIPTS_FILE].decode()
    assert fountain.startswith("Title: Favourite scenes\n")
    assert f"# #{scene.id}: burnt soup" in fountain
    assert "INT. KITCHEN - NIGHT" in fountain and "ANNA\nIt's burning again." in fountain
    assert "Rain on the roof" not in fountain


async def test_export_filters_and_refuses_an_empty_anthology(kit: Kit) -> None:
    poem = await stored(kit)
    await kit.library.toggle_favourite(GUILD, poem.id, FRIEND)
    files = await kit.library.export(GUILD, author_id=MEMBER)
    assert [name for name, _ in files] == [ANTHOLOGY_FILE]  # no scenes, no .fountain
    assert f"# Favourites anthology: member {MEMBER}" in files[0][1].decode()
    with pytest.raises(UserFacingError, match="nothing in this member's anthology"):
        await kit.library.export(GUILD, author_id=FRIEND)
    with pytest.raises(UserFacingError, match="nothing in this server's anthology"):
        await kit.library.export(GUILD, command="script")
    # Another server exports nothing of the first one's.
    with pytest.raises(UserFacingError, match="nothing in this server's anthology"):
        await kit.library.export(OTHER_GUILD)


async def test_export_pages_through_a_large_anthology(kit: Kit) -> None:
    records = [await stored(kit, output=f"poem number {i}") for i in range(130)]
    for record in records:
        await kit.library.toggle_favourite(GUILD, record.id, FRIEND)
    ((_, data),) = await kit.library.export(GUILD)
    markdown = data.decode()
    assert "130 creations" in markdown
    assert all(f"## #{r.id} ·" in markdown for r in records)


# -- delete ---------------------------------------------------------------------------------


async def test_delete_by_owner_or_moderator_only(kit: Kit) -> None:
    mine = await stored(kit)
    theirs = await stored(kit, user_id=FRIEND)
    await kit.library.toggle_favourite(GUILD, mine.id, FRIEND)
    with pytest.raises(UserFacingError, match="Only the member who asked for this creation"):
        await kit.library.delete(GUILD, mine.id, user_id=STRANGER, moderator=False)
    assert await kit.library.delete(GUILD, mine.id, user_id=MEMBER, moderator=False)
    assert await kit.library.get(GUILD, mine.id) is None
    assert await kit.library.anthology(GUILD) == []  # its favourites went with it
    assert await kit.library.delete(GUILD, theirs.id, user_id=STRANGER, moderator=True)
    with pytest.raises(UserFacingError, match=f"can't find creation #{mine.id}"):
        await kit.library.delete(GUILD, mine.id, user_id=MEMBER, moderator=False)


async def test_delete_refusals(kit: Kit) -> None:
    record = await stored(kit)
    running = await stored(kit, status=RequestStatus.RUNNING)
    dm = await stored(kit, None)
    # A moderator of another server finds nothing.
    with pytest.raises(UserFacingError, match="can't find creation"):
        await kit.library.delete(OTHER_GUILD, record.id, user_id=STRANGER, moderator=True)
    with pytest.raises(UserFacingError, match="still being written: cancel it first"):
        await kit.library.delete(GUILD, running.id, user_id=MEMBER, moderator=False)
    with pytest.raises(UserFacingError, match="can't find creation"):
        await kit.library.delete(None, dm.id, user_id=STRANGER, moderator=True)
    assert await kit.library.get(GUILD, record.id) is not None
    assert await kit.library.delete(None, dm.id, user_id=MEMBER, moderator=False)


# -- forget and purge ---------------------------------------------------------------------


async def test_forget_member_removes_their_requests_stars_and_prefs(kit: Kit) -> None:
    mine = [await stored(kit) for _ in range(2)]
    friends = await stored(kit, user_id=FRIEND)
    elsewhere = await stored(kit, OTHER_GUILD)
    await kit.library.toggle_favourite(GUILD, friends.id, MEMBER)  # their star on another's
    await kit.library.toggle_favourite(GUILD, mine[0].id, FRIEND)  # another's star on theirs
    await kit.library.toggle_favourite(OTHER_GUILD, elsewhere.id, MEMBER)
    await kit.settings_repo.set_critique_opt_in(GUILD, MEMBER, True)

    assert await kit.library.forget_member(GUILD, MEMBER) == (2, 1)
    assert await kit.library.history(GUILD, user_id=MEMBER) == []
    assert await kit.library.stars(GUILD, friends.id) == 0
    assert await kit.library.anthology(GUILD) == []
    assert not await kit.settings_repo.critique_opt_in(GUILD, MEMBER)
    # Other members and the other server keep everything.
    assert await kit.library.get(GUILD, friends.id) is not None
    assert await kit.library.stars(OTHER_GUILD, elsewhere.id) == 1
    assert await kit.library.get(OTHER_GUILD, elsewhere.id) is not None
    assert await kit.library.forget_member(GUILD, MEMBER) == (0, 0)


async def test_forget_member_in_dms(kit: Kit) -> None:
    await stored(kit, None)
    kept = await stored(kit)
    assert await kit.library.forget_member(None, MEMBER) == (1, 0)
    assert await kit.library.get(GUILD, kept.id) is not None


async def test_purge_departed_servers_after_the_configured_days(kit: Kit) -> None:
    gone = await stored(kit)
    kept = await stored(kit, OTHER_GUILD)
    await kit.library.toggle_favourite(GUILD, gone.id, FRIEND)
    await kit.guilds.left(GUILD)
    kit.clock.advance(days=10)
    await kit.guilds.left(OTHER_GUILD)
    kit.clock.advance(days=21)
    assert await kit.library.purge_departed(30) == 1
    assert await kit.library.get(GUILD, gone.id) is None
    assert await kit.favourites.stars(GUILD, gone.id) == 0
    assert await kit.library.get(OTHER_GUILD, kept.id) is not None
    with pytest.raises(ValueError, match="not be negative"):
        await kit.library.purge_departed(-1)
