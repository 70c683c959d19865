"""Fountain: model output in its many shapes becomes a well-formed screenplay scene."""

from __future__ import annotations

import pytest

from bot.fountain import excerpt, title_page, to_fountain


def test_colon_dialogue_becomes_cues_and_dialogue() -> None:
    raw = "INT. KITCHEN - NIGHT\nMara: Give me the map.\nJonah: (quietly) Never."
    assert to_fountain(raw) == (
        "INT. KITCHEN - NIGHT\n\nMARA\nGive me the map.\n\nJONAH\n(quietly)\nNever."
    )


def test_a_missing_heading_comes_from_the_setting_or_a_default() -> None:
    assert to_fountain("Mara: Hello.", setting="a small kitchen at night").startswith(
        "INT. SMALL KITCHEN - NIGHT\n\nMARA\nHello."
    )
    assert to_fountain("Mara: Hello.", setting="the beach at dawn").startswith(
        "EXT. BEACH - DAWN\n\n"
    )
    assert to_fountain("Mara: Hello.").startswith("INT. SOMEWHERE - DAY\n\n")


@pytest.mark.parametrize(
    ("line", "heading"),
    [
        ("Scene 1: A lighthouse at night", "INT. LIGHTHOUSE - NIGHT"),
        ("Scene 2: the harbour wall at dawn", "EXT. HARBOUR WALL - DAWN"),
        ("**Setting: the old library, evening**", "INT. OLD LIBRARY - EVENING"),
        ("[Location: a crowded train]", "INT. CROWDED TRAIN - DAY"),
        ("int kitchen - day", "INT. KITCHEN - DAY"),
        ("ext. park - dusk", "EXT. PARK - DUSK"),
        ("INT/EXT CAR - MOVING", "INT./EXT. CAR - MOVING"),
        ("### EXT. ROOFTOP - NIGHT", "EXT. ROOFTOP - NIGHT"),
    ],
)
def test_heading_like_lines_become_int_ext_headings(line: str, heading: str) -> None:
    assert to_fountain(f"{line}\nMara: Hi.").split("\n")[0] == heading


def test_lone_cues_parentheticals_and_extensions() -> None:
    raw = (
        "EXT. PIER - DAWN\n\nThe fog rolls in.\n\nMARA (V.O.)\nI waited.\n(beat)\n"
        "All night.\n\nJONAH\n\nYou always wait."
    )
    assert to_fountain(raw) == (
        "EXT. PIER - DAWN\n\nThe fog rolls in.\n\nMARA (V.O.)\nI waited.\n(beat)\nAll night."
        "\n\nJONAH\nYou always wait."
    )


def test_speaker_extensions_written_after_the_name() -> None:
    assert "MARA (O.S.)\nWho's there?" in to_fountain("Mara (O.S.): Who's there?")


def test_markdown_and_stage_directions_are_cleaned() -> None:
    raw = "**INT. OFFICE - DAY**\n\n**Boss:** Sit down.\n[She sits.]\n(The clock ticks.)"
    assert to_fountain(raw) == (
        "INT. OFFICE - DAY\n\nBOSS\nSit down.\n\nShe sits.\nThe clock ticks."
    )


def test_transitions_are_fountain_transitions() -> None:
    out = to_fountain("INT. ROOM - DAY\n\nMara: Go.\n\ncut to:\n\nFADE OUT.")
    assert out.endswith("MARA\nGo.\n\nCUT TO:\n\n> FADE OUT.")


def test_action_that_would_read_as_a_cue_is_forced() -> None:
    out = to_fountain("INT. ROOM - DAY\n\nThe lights go out.\nTHE DOOR SLAMS.\nSilence.")
    assert "The lights go out.\n!THE DOOR SLAMS.\nSilence." in out


def test_labels_are_not_speakers() -> None:
    out = to_fountain("INT. ROOM - DAY\nNote: this is tense.\nTitle: The Map")
    assert "NOTE" not in out and "TITLE" not in out


def test_scene_numbers_alone_are_dropped() -> None:
    assert to_fountain("Scene 2\nINT. HALL - DAY\nMara: Hi.").startswith("INT. HALL - DAY")


def test_normalised_output_is_stable() -> None:
    raw = "Scene: a bar at night\nSam: One more.\n[He pours.]\nLou: Make it two."
    once = to_fountain(raw)
    assert to_fountain(once) == once


def test_excerpt_cuts_on_paragraph_boundaries() -> None:
    scene = to_fountain("INT. ROOM - DAY\n" + "\n".join(f"Mara: Line {i}." for i in range(50)))
    short = excerpt(scene, 200)
    assert len(short) <= 200
    assert scene.startswith(short)
    assert short.endswith(".")  # a cue never ends the excerpt without its dialogue
    assert excerpt(scene, 10_000) == scene


def test_excerpt_inside_one_huge_paragraph_cuts_at_a_word() -> None:
    text = "word " * 100
    cut = excerpt(text, 52)
    assert len(cut) <= 52 and cut.endswith("word")
    with pytest.raises(ValueError):
        excerpt(text, 0)


def test_title_page_keeps_values_on_one_line() -> None:
    page = title_page("The\nMap", "Ada  Lovelace")
    assert page == "Title: The Map\nCredit: Written by\nAuthor: Ada Lovelace\n\n"
    assert title_page("", "x").startswith("Title: Untitled")


def test_a_heading_run_on_into_the_scene_is_split() -> None:
    raw = 'Int. KITCHEN - NIGHT - She looks at him. "Well?" she asks.\nCole: Nothing.'
    assert to_fountain(raw) == (
        'INT. KITCHEN - NIGHT\n\nShe looks at him. "Well?" she asks.\n\nCOLE\nNothing.'
    )


def test_quoted_speech_after_a_name_becomes_dialogue() -> None:
    out = to_fountain('INT. HALL - DAY\nMara, "I love the cat."\nJonah: "Me too."')
    assert out == "INT. HALL - DAY\n\nMARA\nI love the cat.\n\nJONAH\nMe too."


def test_a_scene_that_opens_with_action_gets_a_heading_first() -> None:
    out = to_fountain("Rain hammers the glass.\n\nINT. CAR - NIGHT\n\nLee: Drive.", setting="a car")
    assert out.startswith("INT. CAR - DAY\n\nRain hammers the glass.\n\nINT. CAR - NIGHT")
    assert to_fountain("FADE IN:\n\nMara: Hi.").startswith("> FADE IN:\n\nINT. SOMEWHERE - DAY")
