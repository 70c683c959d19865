"""StyleService on real SQLite: built-ins, overrides, validation, defaults, isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError, InvalidInput
from bot.services.styles import (
    BUILTIN_STYLES_FILE,
    DESCRIPTION_MAX_CHARS,
    load_builtin_styles,
)
from tests.integration.services_kit import (
    CHANNEL,
    GUILD,
    MEMBER,
    OTHER_CHANNEL,
    OTHER_GUILD,
    Kit,
    open_kit,
)


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[Kit]:
    async with open_kit(tmp_path) as opened:
        yield opened


def fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "description": "Salt, wind and sailors' songs",
        "instructions": "Write like a sea shanty, with a chorus.",
        "example": None,
        "commands": ["poem"],
        "mature": False,
        "by_user": MEMBER,
        "create": True,
    }
    return base | changes


async def names(kit: Kit, guild_id: int | None, command: str = "poem") -> list[str]:
    return [s.name for s in await kit.styles.available(guild_id, command)]


# -- the built-in file -----------------------------------------------------------------


def test_the_shipped_styles_load_and_cover_every_command() -> None:
    styles = {s.name: s for s in load_builtin_styles()}
    assert {"romantic", "noir", "minimalist", "whimsical", "gothic", "shakespearean"} <= set(styles)
    for command in ("poem", "script", "critique"):
        assert any(s.applies_to(command) for s in styles.values()), command
    assert all(s.builtin and not s.disabled for s in styles.values())
    assert all(len(s.description) <= DESCRIPTION_MAX_CHARS for s in styles.values())
    assert styles["pulp-horror"].mature and not styles["noir"].mature
    assert styles["minimalist"].commands == frozenset()  # every command
    assert styles["gentle-mentor"].commands == {"critique"}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('name = "Bad Name"\ndescription = "d"\ninstructions = "i"', "slug 'bad-name'"),
        ('name = "x"\ndescription = "d"\ninstructions = "i"\ncommands = ["opera"]', "opera"),
        ('name = "x"\ndescription = "d"\ninstructions = "i"\ncolour = "red"', "colour"),
        ('name = "x"\ndescription = "d"', "instructions is empty"),
        ('name = "x"\ndescription = "d"\ninstructions = "i"\nmature = "yes"', "true or false"),
    ],
)
def test_a_broken_builtin_file_names_the_style_and_the_problem(
    tmp_path: Path, entry: str, problem: str
) -> None:
    path = tmp_path / "styles.toml"
    path.write_text(f"[[style]]\n{entry}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_builtin_styles(path)


def test_a_builtin_name_used_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "styles.toml"
    one = '[[style]]\nname = "x"\ndescription = "d"\ninstructions = "i"\n'
    path.write_text(one + one, encoding="utf-8")
    with pytest.raises(ConfigError, match="used twice"):
        load_builtin_styles(path)
    assert BUILTIN_STYLES_FILE.name == "styles.toml"


# -- available and resolve ---------------------------------------------------------------


async def test_available_lists_builtins_for_the_command(kit: Kit) -> None:
    poem = await names(kit, GUILD)
    critique = await names(kit, GUILD, "critique")
    assert "noir" in poem and "gentle-mentor" not in poem
    assert "gentle-mentor" in critique and "noir" not in critique
    assert "minimalist" in poem and "minimalist" in critique
    assert poem == sorted(poem)
    assert await names(kit, None) == poem  # DMs get the built-ins


async def test_resolve_explicit_names_and_refusals(kit: Kit) -> None:
    style = await kit.styles.resolve(GUILD, CHANNEL, "poem", "  Noir ")
    assert style is not None and style.name == "noir"
    with pytest.raises(InvalidInput, match="no style called `opera-house` here"):
        await kit.styles.resolve(GUILD, CHANNEL, "poem", "opera-house")
    with pytest.raises(InvalidInput, match="`gentle-mentor` is for critique, not /poem"):
        await kit.styles.resolve(GUILD, CHANNEL, "poem", "gentle-mentor")
    with pytest.raises(InvalidInput, match="no style called"):
        await kit.styles.resolve(GUILD, CHANNEL, "poem", "!!!")
    assert await kit.styles.resolve(GUILD, CHANNEL, "poem", None) is None
    assert await kit.styles.resolve(GUILD, CHANNEL, "poem", "  ") is None


async def test_defaults_channel_first_then_server(kit: Kit) -> None:
    await kit.styles.set_default(GUILD, "poem", None, "romantic")
    await kit.styles.set_default(GUILD, "poem", CHANNEL, "noir")
    here = await kit.styles.resolve(GUILD, CHANNEL, "poem", None)
    elsewhere = await kit.styles.resolve(GUILD, OTHER_CHANNEL, "poem", None)
    assert here is not None and here.name == "noir"
    assert elsewhere is not None and elsewhere.name == "romantic"
    # Another command, another server and DMs have no defaults.
    assert await kit.styles.resolve(GUILD, CHANNEL, "script", None) is None
    assert await kit.styles.resolve(OTHER_GUILD, CHANNEL, "poem", None) is None
    assert await kit.styles.resolve(None, CHANNEL, "poem", None) is None
    # An explicit choice beats any default; clearing the channel's falls back.
    chosen = await kit.styles.resolve(GUILD, CHANNEL, "poem", "gothic")
    assert chosen is not None and chosen.name == "gothic"
    await kit.styles.set_default(GUILD, "poem", CHANNEL, None)
    fallback = await kit.styles.resolve(GUILD, CHANNEL, "poem", None)
    assert fallback is not None and fallback.name == "romantic"


async def test_set_default_refuses_unknown_commands_and_styles(kit: Kit) -> None:
    with pytest.raises(InvalidInput, match="not opera"):
        await kit.styles.set_default(GUILD, "opera", None, "noir")
    with pytest.raises(InvalidInput, match="no style called"):
        await kit.styles.set_default(GUILD, "poem", None, "nope")
    with pytest.raises(InvalidInput, match="is for critique"):
        await kit.styles.set_default(GUILD, "poem", None, "tough-editor")
    assert await kit.styles.defaults(GUILD) == {}


# -- save ---------------------------------------------------------------------------------


async def test_add_edit_and_list_a_server_style(kit: Kit) -> None:
    saved = await kit.styles.save(GUILD, "Sea Shanty", **fields())
    assert saved.name == "sea-shanty" and saved.guild_id == GUILD and not saved.builtin
    assert saved.updated_by == MEMBER and saved.updated_at is not None
    assert "sea-shanty" in await names(kit, GUILD)
    assert "sea-shanty" not in await names(kit, GUILD, "script")

    with pytest.raises(InvalidInput, match=r"already exists here\. Use /style edit"):
        await kit.styles.save(GUILD, "sea-shanty", **fields())
    edited = await kit.styles.save(
        GUILD, "sea-shanty", **fields(description="Louder", commands=[], create=False)
    )
    assert edited.description == "Louder" and edited.applies_to("script")
    style = await kit.styles.get(GUILD, "sea-shanty")
    assert style is not None and style.description == "Louder"
    with pytest.raises(InvalidInput, match="no style called `lullaby` here to edit"):
        await kit.styles.save(GUILD, "lullaby", **fields(create=False))


async def test_editing_a_builtin_overrides_it_in_that_server_only(kit: Kit) -> None:
    with pytest.raises(InvalidInput, match="`noir` already exists"):
        await kit.styles.save(GUILD, "noir", **fields())
    await kit.styles.save(
        GUILD, "noir", **fields(instructions="Chandler, but sunny.", create=False)
    )
    ours = await kit.styles.resolve(GUILD, CHANNEL, "poem", "noir")
    theirs = await kit.styles.resolve(OTHER_GUILD, CHANNEL, "poem", "noir")
    assert ours is not None and ours.instructions == "Chandler, but sunny."
    assert ours.guild_id == GUILD
    assert theirs is not None and theirs.builtin and "hard-boiled" in theirs.instructions
    assert (await names(kit, GUILD)).count("noir") == 1


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        ("", {}, "needs a name"),
        ("a" * 33, {}, "33 characters long; the limit is 32"),
        ("-edge", {}, "can't be a style name"),
        ("two--dashes", {}, "can't be a style name"),
        ("café!", {}, "can't be a style name"),
        ("ok", {"description": "  "}, "description is empty"),
        ("ok", {"description": "d" * 101}, "description is 101 characters long; the limit is 100"),
        ("ok", {"instructions": ""}, "instructions is empty"),
        ("ok", {"instructions": "i" * 1001}, "instructions is 1001 characters long"),
        ("ok", {"example": "e" * 1001}, "example is 1001 characters long; the limit is 1000"),
        ("ok", {"commands": ["poem", "opera"]}, "not to opera"),
    ],
)
async def test_save_explains_what_to_change(
    kit: Kit, name: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await kit.styles.save(GUILD, name, **fields(**changes))
    assert await kit.style_repo.list(GUILD) == []


async def test_instructions_are_bounded_by_the_servers_input_limit(kit: Kit) -> None:
    await kit.policy.update(GUILD, max_input_chars=50)
    with pytest.raises(InvalidInput, match="51 characters long; the limit is 50"):
        await kit.styles.save(GUILD, "long", **fields(instructions="i" * 51))
    # The other server keeps the default limit.
    saved = await kit.styles.save(OTHER_GUILD, "long", **fields(instructions="i" * 51))
    assert len(saved.instructions) == 51


async def test_text_is_normalised_and_an_empty_example_is_none(kit: Kit) -> None:
    saved = await kit.styles.save(
        GUILD,
        "tidy",
        **fields(
            description=" two\nlines ",
            instructions="in\u200bvisible ",
            example="   ",
            commands=["poem", "script", "critique"],
        ),
    )
    assert saved.description == "two lines"
    assert saved.instructions == "invisible"
    assert saved.example is None
    assert saved.commands == frozenset()  # all of them: stored as "every command"


# -- remove ---------------------------------------------------------------------------------


async def test_removing_a_builtin_disables_it_here_and_clears_its_defaults(kit: Kit) -> None:
    await kit.styles.set_default(GUILD, "poem", CHANNEL, "gothic")
    assert await kit.styles.remove(GUILD, "gothic") is True
    assert "gothic" not in await names(kit, GUILD)
    assert "gothic" in await names(kit, OTHER_GUILD)
    (row,) = await kit.style_repo.list(GUILD)
    assert row.name == "gothic" and row.disabled
    assert await kit.styles.defaults(GUILD) == {}
    with pytest.raises(InvalidInput, match="no style called `gothic`"):
        await kit.styles.resolve(GUILD, CHANNEL, "poem", "gothic")
    assert await kit.styles.remove(GUILD, "gothic") is False
    with pytest.raises(InvalidInput, match="no style called `gothic` here to edit"):
        await kit.styles.save(GUILD, "gothic", **fields(create=False))
    # Adding it again brings the name back as the server's own.
    again = await kit.styles.save(GUILD, "gothic", **fields())
    assert again.guild_id == GUILD and not again.disabled
    assert "gothic" in await names(kit, GUILD)


async def test_removing_an_override_keeps_the_builtin_hidden(kit: Kit) -> None:
    await kit.styles.save(GUILD, "noir", **fields(create=False))
    assert await kit.styles.remove(GUILD, "noir") is True
    assert "noir" not in await names(kit, GUILD)


async def test_removing_a_server_style_deletes_it(kit: Kit) -> None:
    await kit.styles.save(GUILD, "shanty", **fields())
    await kit.styles.set_default(GUILD, "poem", None, "shanty")
    assert await kit.styles.remove(GUILD, "shanty") is True
    assert await kit.style_repo.list(GUILD) == []
    assert await kit.styles.defaults(GUILD) == {}
    assert await kit.styles.remove(GUILD, "shanty") is False


# -- isolation ------------------------------------------------------------------------------


async def test_a_server_cannot_see_use_edit_or_remove_anothers_style(kit: Kit) -> None:
    await kit.styles.save(GUILD, "shanty", **fields())
    assert "shanty" not in await names(kit, OTHER_GUILD)
    assert await kit.styles.get(OTHER_GUILD, "shanty") is None
    with pytest.raises(InvalidInput, match="no style called `shanty`"):
        await kit.styles.resolve(OTHER_GUILD, CHANNEL, "poem", "shanty")
    with pytest.raises(InvalidInput, match="no style called `shanty`"):
        await kit.styles.set_default(OTHER_GUILD, "poem", None, "shanty")
    with pytest.raises(InvalidInput, match="here to edit"):
        await kit.styles.save(OTHER_GUILD, "shanty", **fields(create=False))
    assert await kit.styles.remove(OTHER_GUILD, "shanty") is False
    with pytest.raises(InvalidInput, match="no style called"):
        await kit.styles.resolve(None, CHANNEL, "poem", "shanty")
    assert await kit.styles.get(GUILD, "shanty") is not None
