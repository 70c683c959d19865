"""Form checker: syllables, rhyme, per-form verdicts and picking the best candidate."""

from __future__ import annotations

import pytest

from bot.forms import FORM_SPECS, FormReport, best_of, check, count_syllables, rhyme_key, rhymes
from bot.prompts import FIXED_FORMS, POEM_FORMS

# Reference counts (CMU dictionary's usual reading). Heuristics miss some English;
# the table holds common poem words, a few of them deliberately hard.
SYLLABLES: dict[str, int] = {
    "the": 1,
    "cat": 1,
    "water": 2,
    "table": 2,
    "little": 2,
    "beautiful": 3,
    "poem": 2,
    "people": 2,
    "whale": 1,
    "lovely": 2,
    "hopeless": 2,
    "movement": 2,
    "walked": 1,
    "wanted": 2,
    "loved": 1,
    "played": 1,
    "cried": 1,
    "horses": 2,
    "boxes": 2,
    "places": 2,
    "times": 1,
    "eyes": 1,
    "skies": 1,
    "cities": 2,
    "being": 2,
    "going": 2,
    "flying": 2,
    "something": 2,
    "somewhere": 2,
    "lion": 2,
    "video": 3,
    "usual": 3,
    "quiet": 2,
    "silence": 2,
    "again": 2,
    "moonlight": 2,
    "river": 2,
    "morning": 2,
    "rhythm": 2,
    "happier": 3,
    "hundred": 2,
    "family": 3,
    "only": 2,
    "yellow": 2,
    "beyond": 2,
    "through": 1,
    "thought": 1,
    "shadow": 2,
    "whisper": 2,
    "gentle": 2,
    "ocean": 2,
    "forest": 2,
    "mountain": 2,
    "memory": 3,
    "alone": 2,
    "piano": 3,
    "curious": 3,
    "glorious": 3,
    "million": 2,
    "tonight": 2,
    "anything": 3,
    "butterfly": 3,
    "wandered": 2,
    "flowers": 2,
    "remember": 3,
    "whitecaps": 2,  # known miss: the silent e inside a compound
    "loneliness": 3,  # known miss, same reason
    "realize": 3,  # known miss: "ea" split in two
}


def test_syllable_accuracy_on_common_words() -> None:
    misses = {w: count_syllables(w) for w, n in SYLLABLES.items() if count_syllables(w) != n}
    accuracy = 1 - len(misses) / len(SYLLABLES)
    assert accuracy >= 0.9, misses
    assert len(SYLLABLES) >= 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 3),
        ("1999", 9),  # a cardinal, documented: "one thousand nine hundred ninety nine"
        ("well-known", 2),
        ("ninety-nine", 3),
        ("didn't", 2),
        ("don't", 1),
        ("horse's", 2),
        ("o'er", 1),
        ("heav’n", 1),
        ("CAFÉ", 1),
        ("...", 0),
        ("", 0),
        ("THUNDER", 2),
    ],
)
def test_syllables_of_numbers_contractions_and_odd_tokens(text: str, expected: int) -> None:
    assert count_syllables(text) == expected


@pytest.mark.parametrize(
    "words",
    [
        ("night", "light", "bright", "white", "write", "kite", "sight"),
        ("day", "away", "say", "grey", "weigh", "they", "May"),
        ("tree", "sea", "me", "free", "thee", "key", "eternity"),
        ("sky", "high", "eye", "I", "fly", "lie", "goodbye", "buy"),
        ("moon", "soon", "June", "tune"),
        ("heart", "part", "start"),
        ("fire", "desire", "higher"),
        ("rose", "goes", "knows", "those"),
        ("stone", "alone", "known", "bone"),
        ("dance", "chance", "glance"),
    ],
)
def test_rhyme_families_share_a_key(words: tuple[str, ...]) -> None:
    keys = {rhyme_key(w) for w in words}
    assert len(keys) == 1, {w: rhyme_key(w) for w in words}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("feared", "beard"),
        ("skies", "rise"),
        ("singing", "ringing"),
        ("temperate", "date"),
        ("shines", "declines"),
        ("dimm'd", "untrimm'd"),
        ("love", "above"),
        ("flower", "hour"),
        ("NIGHT!", "light,"),
        ("do", "flue"),
        ("nation", "station"),
    ],
)
def test_rhyming_pairs(a: str, b: str) -> None:
    assert rhymes(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("night", "day"),
        ("love", "move"),
        ("tree", "sky"),
        ("cat", "dog"),
        ("stone", "one"),
        ("singing", "going"),
        ("heart", "hurt"),
        ("", "night"),
        ("...", "..."),
    ],
)
def test_non_rhyming_pairs(a: str, b: str) -> None:
    assert not rhymes(a, b)


def test_every_checked_form_is_offered_and_gets_best_of_n() -> None:
    # Free forms (ode, elegy, prose poem) are offered without a checker.
    assert set(FORM_SPECS) <= set(POEM_FORMS)
    assert set(FORM_SPECS) - {"free verse"} == FIXED_FORMS
    with pytest.raises(ValueError, match="unknown poem form"):
        check("villanelle", "a\nb\nc")


BASHO = "An old silent pond\nA frog jumps into the pond—\nSplash! Silence again."
WRIGHT = "Whitecaps on the bay:\nA broken signboard banging\nIn the April wind."
MORNING = "Morning mist rises\nover the quiet river\na heron waits, still"


@pytest.mark.parametrize("poem", [BASHO, WRIGHT, MORNING])
def test_known_haiku_pass(poem: str) -> None:
    report = check("haiku", poem)
    assert report.passes, report
    assert report.score > 0.9


def test_haiku_problems_name_the_line_and_the_target() -> None:
    poem = "The cold wind is blowing hard across the frozen lake\nsnow\nwinter is here"
    report = check("haiku", poem)
    assert not report.passes
    assert "line 1 has 13 syllables, a haiku wants 5" in report.problems
    assert "line 2 has 1 syllable, a haiku wants 7" in report.problems
    assert report.score < 0.6


def test_haiku_tolerates_one_syllable_but_not_two() -> None:
    near = "An old quiet pond\nA frog jumps into the pond\nSplash! Silence now"  # 5-7-4
    far = "An old pond\nA frog jumps into the pond\nSplash!"  # 3-7-1
    assert check("haiku", near).passes
    assert not check("haiku", far).passes
    assert check("haiku", BASHO).score > check("haiku", near).score > check("haiku", far).score


def test_haiku_with_four_lines_fails_but_keeps_partial_credit() -> None:
    report = check("haiku", BASHO + "\nand then the frog left")
    assert not report.passes
    assert "4 lines; a haiku has 3" in report.problems
    assert 0.3 < report.score < 0.9


def test_tanka() -> None:
    tanka = MORNING + "\nthe sun climbs slowly over\nthe hills and the sleeping town"
    report = check("tanka", tanka)
    assert report.passes, report
    assert not check("tanka", MORNING).passes


LEAR_BEARD = """There was an Old Man with a beard,
Who said, 'It is just as I feared!
Two Owls and a Hen,
Four Larks and a Wren,
Have all built their nests in my beard!'"""
LEAR_CHIN = """There was a Young Lady whose chin,
Resembled the point of a pin;
So she had it made sharp,
And purchased a harp,
And played several tunes with her chin."""
FLEA = """A flea and a fly in a flue
Were imprisoned, so what could they do?
Said the fly, "let us flee!"
"Let us fly!" said the flea.
So they flew through a flaw in the flue."""
PROSE = (
    "I went to the shop this morning because we had run out of milk and bread, and on "
    "the way back it started raining so hard that I had to shelter under a bus stop for "
    "twenty minutes before walking home."
)


@pytest.mark.parametrize("poem", [LEAR_BEARD, LEAR_CHIN, FLEA])
def test_classic_limericks_pass(poem: str) -> None:
    report = check("limerick", poem)
    assert report.passes, report
    assert report.score >= 0.9


def test_limerick_rhyme_failures() -> None:
    broken_b = LEAR_CHIN.replace("And purchased a harp", "And purchased a drum")
    report = check("limerick", broken_b)
    assert not report.passes
    assert any("lines 3 and 4 do not rhyme" in p for p in report.problems)
    # One stray A-line is forgiven (lines 1 and 5 still rhyme), at a cost in score.
    one_miss = LEAR_CHIN.replace("point of a pin", "point of a nail")
    assert check("limerick", one_miss).passes
    assert check("limerick", one_miss).score < check("limerick", LEAR_CHIN).score
    two_stray = one_miss.replace("tunes with her chin", "tunes with her toes")
    assert not check("limerick", two_stray).passes


@pytest.mark.parametrize("form", sorted(FORM_SPECS))
def test_prose_fails_every_form(form: str) -> None:
    report = check(form, PROSE)
    assert not report.passes
    assert report.score < 0.2
    assert any("prose" in p for p in report.problems)


SONNET_18 = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;

Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;

But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:

So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee."""


def test_sonnet_18_passes() -> None:
    report = check("sonnet", SONNET_18)
    assert report.passes, report
    assert report.score >= 0.95


def test_sonnet_needs_fourteen_lines_and_its_couplet() -> None:
    lines = SONNET_18.replace("\n\n", "\n").split("\n")
    assert not check("sonnet", "\n".join(lines[:12])).passes
    no_couplet = "\n".join([*lines[:13], "So long lives this, and this gives life to you."])
    report = check("sonnet", no_couplet)
    assert not report.passes
    assert report.score > 0.7  # everything else still fits


RIME = """Water, water, every where,
And all the boards did shrink;
Water, water, every where,
Nor any drop to drink.

The very deep did rot: O Christ!
That ever this should be!
Yea, slimy things did crawl with legs
Upon the slimy sea."""


def test_ballad() -> None:
    assert check("ballad", RIME).passes
    # Half a ballad is not a ballad; quatrains must stay whole.
    assert not check("ballad", RIME.split("\n\n")[0]).passes
    report = check("ballad", RIME + "\nAnd one line more")
    assert not report.passes
    assert "9 lines do not divide into quatrains" in report.problems


GHAZAL = """The lamps are low, the river speaks of rain tonight;
I count the lanterns drifting down the lane tonight.
The ferryman has tied his boat and gone to sleep,
and all the bells of the old town complain tonight.
Whoever left the window open let the moths
come in to write their names upon the pane tonight.
I am the one who listens when the water talks;
call me by any name, I will remain tonight."""


def test_ghazal_needs_its_radif() -> None:
    assert check("ghazal", GHAZAL).passes
    broken = GHAZAL.replace("complain tonight", "complain at dawn").replace(
        "pane tonight", "pane again"
    )
    report = check("ghazal", broken)
    assert not report.passes
    assert any('radif "tonight"' in p for p in report.problems)


def test_free_verse() -> None:
    poem = "the kettle sings\nand nobody answers\nsteam writes a name on the window\nthen forgets"
    assert check("free verse", poem).passes
    assert not check("free verse", "one line only").passes


def test_edge_cases() -> None:
    for form in FORM_SPECS:
        assert check(form, "") == FormReport(0.0, False, ("the poem is empty",))
        assert check(form, "\n \n\t\n").score == 0.0
    shouted = (
        "\n\n\nAN OLD SILENT POND\n\n\n\nA FROG JUMPS INTO THE POND…\n\n«SPLASH!» SILENCE AGAIN.\n"
    )
    assert check("haiku", shouted) == check("haiku", BASHO)
    # Decorative lines are not lines of verse.
    assert check("haiku", "~~~\n" + BASHO + "\n* * *").passes


def test_scores_stay_in_range() -> None:
    for form in FORM_SPECS:
        for text in (BASHO, LEAR_BEARD, SONNET_18, RIME, GHAZAL, PROSE, "x", "a\n" * 60):
            report = check(form, text)
            assert 0.0 <= report.score <= 1.0


def test_best_of_picks_the_candidate_that_fits() -> None:
    candidates = [PROSE, "An old pond\nA frog jumps in\nSplash", BASHO, MORNING, ""]
    index, report = best_of("haiku", candidates)
    assert index == 2  # BASHO and MORNING both score 1.0: the earlier one wins
    assert report == check("haiku", BASHO)
    assert best_of("limerick", [SONNET_18, LEAR_CHIN, LEAR_CHIN])[0] == 1
    assert best_of("sonnet", [LEAR_CHIN, SONNET_18])[0] == 1


def test_best_of_handles_empty_input() -> None:
    assert best_of("haiku", []) == (-1, FormReport(0.0, False, ("no candidates",)))
    index, report = best_of("haiku", ["", "  "])
    assert index == 0
    assert not report.passes
