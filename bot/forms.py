"""Form checking for generated poems: syllables, rhyme and shape, scored from 0 to 1.

Used to pick the best of several sampled candidates for fixed forms. Pure Python and
deterministic: spelling heuristics plus small exception tables, no pronunciation
dictionary. A dictionary (CMUdict) would be more accurate on rare words, but the model
writes short, common words, and the tables below cover the irregular ones it favours;
heuristics also keep behaviour identical on every install.

Text conventions, kept simple on purpose: every non-empty line is a line of the poem
(blank lines between stanzas are ignored), punctuation is stripped, case is ignored.
There is no title handling: ``bot.prompts.clean_output`` has already removed preambles,
and a title line would simply count as a line.

Pass rules (``FormReport.passes``):

- haiku: exactly 3 lines, each within ±1 syllable of 5-7-5.
- tanka: exactly 5 lines, each within ±1 syllable of 5-7-5-7-7.
- limerick: exactly 5 lines; lines 3 and 4 rhyme, and at least two of lines 1, 2 and 5
  rhyme together (one stray A-line is forgiven; it still costs score).
- sonnet: exactly 14 lines and one of the classic schemes (Shakespearean, Spenserian,
  Petrarchan with either common sestet) holds for at least 5 of its 7 rhyme groups (a
  group of 4 holds with 3 of its lines); the English schemes also need their closing
  couplet.
- ballad: 8 to 48 lines in quatrains (a multiple of 4), lines 2 and 4 rhyme in at least
  three quarters of the quatrains (ABCB; ABAB satisfies this too).
- ghazal: 6 to 30 lines in couplets (an even count), and the second line of every
  couplet ends with the same word, the radif (one miss forgiven from four couplets on).
- free verse: at least 3 lines, none longer than 25 words, at most 14 words a line on
  average: a poem, not a prose paragraph.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "FORM_SPECS",
    "FormReport",
    "FormSpec",
    "best_of",
    "check",
    "count_syllables",
    "line_syllables",
    "rhyme_key",
    "rhymes",
]

# --------------------------------------------------------------------------- words

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})


def _ascii_lower(text: str) -> str:
    # "café" -> "cafe": the heuristics only know Latin letters.
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _words(line: str) -> list[str]:
    return _WORD.findall(_ascii_lower(line))


# Irregular words the rules get wrong, chosen from what poems (and small models) use.
_SYLLABLE_EXCEPTIONS: dict[str, int] = {
    "area": 3,
    "aren't": 1,
    "beloved": 3,
    "business": 2,
    "carriage": 2,
    "chaos": 2,
    "colonel": 2,
    "create": 2,
    "created": 3,
    "creation": 3,
    "creature": 2,
    "crooked": 2,
    "evening": 2,
    "every": 2,
    "everyone": 3,
    "everything": 3,
    "everywhere": 3,
    "eye": 1,
    "fire": 1,
    "friend": 1,
    "friendly": 2,
    "frontier": 2,
    "hour": 1,
    "idea": 3,
    "ideal": 3,
    "jagged": 2,
    "learned": 2,
    "marriage": 2,
    "mosaic": 3,
    "museum": 3,
    "naive": 2,
    "naked": 2,
    "ocean": 2,
    "oasis": 3,
    "poem": 2,
    "poet": 2,
    "poetry": 3,
    "quiet": 2,
    "ragged": 2,
    "react": 2,
    "real": 1,
    "really": 2,
    "recipe": 3,
    "rugged": 2,
    "sacred": 2,
    "science": 2,
    "simile": 3,
    "soldier": 2,
    "theatre": 3,
    "theater": 3,
    "wednesday": 2,
    "weren't": 1,
    "wicked": 2,
    "wretched": 2,
}

_VOWEL_GROUP = re.compile(r"[aeiouy]+")
# Vowel pairs usually spoken as two syllables ("li-on", "vi-de-o", "u-su-al"), with the
# contexts where they merge ("na-tion", "peo-ple", "qual-i-ty") excluded.
_SPLIT_PAIRS = re.compile(
    r"(?<![cst])ia|(?<![cstgxn])(?<!ll)io|iu|(?<![gpc])eo|(?<![gq])u[ao]|"
    r"oe[mt]|(?<![gq])ue[lnt]|iet|(?<![cstr])ien|rien|ism$|[sy]m$|thm$"
)
_COMPOUND_TAILS = (
    "where",
    "thing",
    "body",
    "one",
    "times",
    "time",
    "self",
    "light",
    "night",
    "day",
    "side",
    "more",
    "ward",
    "some",
    "place",
    "like",
)
_SILENT_E_SUFFIXES = ("ly", "ty", "ness", "less", "ful", "ment")
_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _number_words(n: int) -> list[str]:
    """Cardinal words for 0 <= n < 10**9 ("1999" reads as a number, not a year)."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = _number_words(n % size) if n % size else []
            return [*_number_words(n // size), name, *rest]
    return []  # unreachable for the documented range


def _has_vowel(text: str) -> bool:
    return any(c in "aeiouy" for c in text)


def _base_syllables(w: str) -> int:
    """Count for one lowercase word of letters with no recognised suffix."""
    s = w.replace("qu", "kw")  # the u of "qu" is a consonant: "queen", "quiet" is a table word
    # y before a vowel is a consonant ("yes", "beyond", "player"); elsewhere a vowel.
    s = re.sub(r"y(?=[aeiou])", "j", s)
    count = len(_VOWEL_GROUP.findall(s)) + len(_SPLIT_PAIRS.findall(s))
    if (
        s.endswith("e")
        and count > 1
        and len(s) > 2
        and s[-2] not in "aeiouy"
        # "ta-ble", "ac-re": a consonant before l or r keeps the final e sounded.
        and not (s[-2] in "lr" and s[-3] not in "aeiouylr")
    ):
        count -= 1
    if (
        s.endswith(("ier", "iest"))
        and len(s) >= 6
        and s[-4 if s.endswith("ier") else -5] not in ("aeiouy")
    ):
        count += 1  # "hap-pi-er", "love-li-est": the ie of a comparative is two vowels
    return max(count, 1)


def _word_syllables(w: str) -> int:
    """Syllables of one lowercase word: letters, maybe apostrophes (hyphens split earlier)."""
    if w in _SYLLABLE_EXCEPTIONS:
        return _SYLLABLE_EXCEPTIONS[w]
    if w.endswith("n't") and len(w) > 4 and w[-4] not in "aeiou":
        # "did-n't", "could-n't": the n is syllabic after a consonant; "don't", "can't" not.
        return _word_syllables(w[:-3]) + 1
    if w.endswith("'s"):
        # The possessive sounds like the plural: "horse's" like "horses".
        w = w[:-2] + "s"
    w = w.replace("'", "")  # "o'er", "heav'n", "lov'd": elisions are counted as spelled
    if not w:
        return 0
    if w in _SYLLABLE_EXCEPTIONS:
        return _SYLLABLE_EXCEPTIONS[w]
    for tail in _COMPOUND_TAILS:
        head = w[: -len(tail)]
        if w.endswith(tail) and len(head) >= 2 and _has_vowel(head):
            return _word_syllables(head) + _word_syllables(tail)
    for suffix in _SILENT_E_SUFFIXES:
        head = w[: -len(suffix)]
        # Only a silent e before the suffix needs help ("love-ly", "hope-less");
        # otherwise the whole word counts right ("ho-ly", "mo-ment").
        if w.endswith(suffix) and len(head) >= 3 and head.endswith("e") and head[-2] not in "aeiou":
            return _word_syllables(head) + 1
    if w.endswith("ing") and len(w) > 4 and _has_vowel(w[:-3]):
        return _word_syllables(w[:-3]) + 1  # "be-ing", "fly-ing", "go-ing"
    if w.endswith("ed") and len(w) > 3 and not w.endswith("eed") and _has_vowel(w[:-2]):
        stem = w[:-2]
        if stem[-1] in "td":
            return _word_syllables(stem) + 1  # "want-ed", "fad-ed"
        if stem[-1] == "l" and stem[-2] not in "aeiouylr":
            return _word_syllables(stem + "e")  # "bot-tled" like "bot-tle"
        if stem[-1] == "r" and stem[-2] not in "aeiouyr":
            return _word_syllables(stem) + 1  # "hun-dred", "ki-ndred"
        if stem.endswith("i") and len(stem) <= 3:
            return 1  # "died", "cried", "tied"
        return _word_syllables(stem)  # "walked", "loved", "played"
    if w.endswith("s") and len(w) > 3 and not w.endswith(("ss", "us", "is")):
        if w.endswith("ies") and len(w) > 4:
            return _word_syllables(w[:-3] + "y")  # "cit-ies" like "cit-y"
        if w.endswith("es") and w[:-2].endswith(("s", "x", "z", "ch", "sh")):
            return _word_syllables(w[:-2]) + 1  # "box-es", "wish-es"
        if w.endswith("es") and w[-3] in "cgsz":
            return _word_syllables(w[:-1]) + 1  # "pla-ces", "ro-ses"
        return _word_syllables(w[:-1])  # "times", "trees", "eyes"
    return _base_syllables(w)


def count_syllables(word: str) -> int:
    """English syllables in one word (0 for a token with no letters or digits).

    Numbers read as cardinals ("42" is "forty two"), hyphenated words are the sum of
    their parts, apostrophes and accents are tolerated.
    """
    total = 0
    for token in _WORD.findall(_ascii_lower(word)):
        for part in token.split("-"):
            digits = re.findall(r"\d+", part)
            letters = re.sub(r"\d+", "", part).strip("'")
            for number in digits:
                total += sum(_word_syllables(x) for x in _number_words(int(number[-9:])))
            if letters:
                total += _word_syllables(letters)
    return total


def line_syllables(line: str) -> int:
    """Syllables in a line of text."""
    return sum(count_syllables(w) for w in _words(line))


# --------------------------------------------------------------------------- rhyme

# Keys are a vowel code (upper case, ARPAbet-like) and a normalised coda (lower case).
_RHYME_EXCEPTIONS: dict[str, str] = {
    "are": "AAr",
    "bear": "EHr",
    "wear": "EHr",
    "pear": "EHr",
    "swear": "EHr",
    "there": "EHr",
    "where": "EHr",
    "their": "EHr",
    "were": "ERr",
    "heart": "AArt",
    "heard": "ERrd",
    "eye": "AY",
    "aye": "AY",
    "i": "AY",
    "hi": "AY",
    "do": "UW",
    "to": "UW",
    "too": "UW",
    "two": "UW",
    "who": "UW",
    "into": "UW",
    "through": "UW",
    "you": "UW",
    "though": "OW",
    "rough": "AHf",
    "tough": "AHf",
    "enough": "AHf",
    "cough": "AOf",
    "bough": "AW",
    "plough": "AW",
    "thou": "AW",
    "does": "AHs",
    "was": "AHs",
    "love": "AHv",
    "above": "AHv",
    "dove": "AHv",
    "glove": "AHv",
    "shove": "AHv",
    "of": "AHv",
    "move": "UWv",
    "prove": "UWv",
    "groove": "UWv",
    "have": "AEv",
    "give": "IHv",
    "live": "IHv",
    "forgive": "IHv",
    "come": "AHm",
    "some": "AHm",
    "become": "AHm",
    "one": "AHn",
    "done": "AHn",
    "none": "AHn",
    "someone": "AHn",
    "anyone": "AHn",
    "everyone": "AHn",
    "gone": "AOn",
    "lose": "UWs",
    "whose": "UWs",
    "great": "EYt",
    "break": "EYk",
    "steak": "EYk",
    "said": "EHd",
    "head": "EHd",
    "dead": "EHd",
    "bread": "EHd",
    "dread": "EHd",
    "thread": "EHd",
    "spread": "EHd",
    "instead": "EHd",
    "ahead": "EHd",
    "tread": "EHd",
    "fled": "EHd",
    "led": "EHd",
    "death": "EHth",
    "breath": "EHth",
    "good": "UHd",
    "wood": "UHd",
    "stood": "UHd",
    "hood": "UHd",
    "could": "UHd",
    "would": "UHd",
    "should": "UHd",
    "blood": "AHd",
    "flood": "AHd",
    "key": "IY",
    "they": "EY",
    "obey": "EY",
    "convey": "EY",
    "survey": "EY",
    "prey": "EY",
    "grey": "EY",
    "hey": "EY",
    "water": "AOtr",
    "hour": "AWr",
    "our": "AWr",
    "sour": "AWr",
    "flour": "AWr",
    "devour": "AWr",
    "power": "AWr",
    "tower": "AWr",
    "flower": "AWr",
    "shower": "AWr",
    "house": "AWs",
    "mouse": "AWs",
    "soul": "OWl",
    "youth": "UWth",
    "soup": "UWp",
    "group": "UWp",
    "young": "AHng",
    "again": "EHn",
    "been": "IHn",
    "says": "EHs",
    "machine": "IYn",
    "sure": "UWr",
}
# "ow" is OW by default ("snow", "grow"); these are AW.
_OW_AW = {"how", "now", "cow", "brow", "vow", "wow", "allow", "endow", "chow", "somehow"}
# "own" is AW n by default ("down", "town"); these are OW n.
_OWN_OW = {"own", "known", "flown", "grown", "shown", "blown", "thrown", "sown", "mown"}
_OO_UH = ("ook", "oot")  # "book", "foot" (but "boot", "root": accepted misses)
_DIGRAPHS: dict[str, str] = {
    "ai": "EY",
    "ay": "EY",
    "ei": "EY",
    "ee": "IY",
    "ea": "IY",
    "ie": "IY",
    "oa": "OW",
    "oe": "OW",
    "oo": "UW",
    "ou": "AW",
    "ow": "OW",
    "oi": "OY",
    "oy": "OY",
    "au": "AO",
    "aw": "AO",
    "ew": "UW",
    "ue": "UW",
    "ui": "UW",
    "eu": "UW",
    "ey": "IY",
    "uy": "AY",
    "eau": "OW",
    "ieu": "UW",
    "iew": "UW",
}
_SHORT = {"a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IH"}
_LONG = {"a": "EY", "e": "IY", "i": "AY", "o": "OW", "u": "UW", "y": "AY"}
# Single-syllable words in -y say "eye"; so do these longer ones ("re-ply", "good-bye").
_Y_LONG_TAILS = ("fly", "ply", "sky", "spy", "cry", "dry", "try", "why", "shy", "sly", "deny")
_Y_LONG = {"july", "rely", "awry", "nearby", "lullaby", "defy", "ally", "goodbye"}
_STRESSED_ER = {"prefer", "defer", "infer", "confer", "refer", "deter", "transfer"}
_FINAL_SYLLABLE = re.compile(r"(?P<v>[aeiouy]+w?)(?P<c>[^aeiouy]*)$")


def _coda(c: str) -> str:
    c = c.replace("ck", "k").replace("ph", "f").replace("tch", "ch").replace("dg", "j")
    c = re.sub(r"(.)\1", r"\1", c)
    c = re.sub(r"mb$", "m", c)
    c = re.sub(r"gh$", "f", c)
    c = re.sub(r"c$", "k", c).replace("x", "ks").replace("q", "k")
    return c.replace("z", "s")  # voicing rarely matters to a rhyme ("rise"/"skies")


def _stem_key(stem: str) -> str:
    # Unstressed endings (-ing, -er) rhyme on the syllable before them; a doubled
    # consonant there was only spelling ("run-ning").
    if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouy":
        stem = stem[:-1]
    return rhyme_key(stem)


def _base_rhyme_key(w: str) -> str:
    if w in _RHYME_EXCEPTIONS:
        return _RHYME_EXCEPTIONS[w]
    if w in _OW_AW:
        return "AW"
    if w in _OWN_OW:
        return "OWn"
    s = re.sub(r"^y", "j", w.replace("qu", "kw"))
    s = re.sub(r"(?<=[aeiou])y(?=[aeiou])", "j", s)
    s = re.sub(r"gu(?=[aeiy])", "g", s)  # "guide", "guy", "guess"
    syllables = count_syllables(w)
    for ending, key in (
        ("eigh", "EY"),
        ("eight", "EYt"),
        ("aight", "EYt"),
        ("ight", "AYt"),
        ("igh", "AY"),
        ("ought", "AOt"),
        ("aught", "AOt"),
        ("ough", "OW"),
        ("ign", "AYn"),
        ("own", "AWn"),
        ("ould", "UHd"),
        ("ind", "AYnd"),
        ("ild", "AYld"),
    ):
        if s.endswith(ending):
            return key
    for endings, vowel in (
        (("ition", "ision"), "IH"),
        (("ation",), "EY"),
        (("otion", "osion", "ocean"), "OW"),
        (("ution", "usion"), "UW"),
        (("etion",), "IY"),
    ):
        if s.endswith(endings):
            return vowel + "shn"
    if re.search(r"(?:ssion|tion|sion|cian)$", s):
        m = re.search(r"([aeiouy]+)[^aeiouy]*(?:ssion|tion|sion|cian)$", s)
        return _SHORT.get(m.group(1)[-1], "AH") + "shn" if m else "AHshn"
    if s.endswith("y") and not s.endswith(("ay", "ey", "oy", "uy")):
        if syllables == 1 or w in _Y_LONG or w.endswith(_Y_LONG_TAILS):
            return "AY"
        return "IY"  # "cit-y", "mem-o-ry": rhymes with "sea" in practice
    if re.search(r"[^aeiou]ye$", s) or (s.endswith("ie") and len(s) <= 4):
        return "AY"  # "bye", "die", "lie"
    if s.endswith("ey"):
        return "EY" if syllables == 1 else "IY"
    if s in ("me", "he", "she", "we", "be", "the", "ye", "thee"):
        return "IY"
    # Final syllable: a vowel group, its consonants, and maybe a silent e.
    magic = re.search(r"(?P<v>[aeiouy]+)(?P<c>[^aeiouyw]{1,2})e$", s)
    if magic and magic.group("c") not in ("dg", "ck", "ll", "ss", "tt", "ff", "nc", "rc", "rs"):
        v, c = magic.group("v"), magic.group("c")
        if c.startswith("r"):
            r_vowel = {"a": "EH", "e": "IH", "i": "AY", "o": "AO", "u": "UW", "y": "AY"}
            return r_vowel.get(v[-1], "ER") + "r" + _coda(c[1:])
        coda = {"c": "s", "g": "j", "th": "th"}.get(c, c)
        vowel = _LONG[v] if len(v) == 1 else _DIGRAPHS.get(v[-2:], _LONG.get(v[-1], "AH"))
        if len(v) == 1 and len(c) == 2 and c not in ("st", "th", "ng", "ch", "sh"):
            vowel = _SHORT[v]  # "dance", "sense": two consonants keep the vowel short
        return vowel + _coda(coda)
    m = _FINAL_SYLLABLE.search(s)
    if m is None:
        return ""
    v, c = m.group("v"), m.group("c")
    if c.startswith("r"):
        before = s[: m.start()]
        if v in ("a",) and before.endswith("w"):
            vowel = "AO"  # "war", "warm"
        elif v == "o" and before.endswith("w"):
            vowel = "ER"  # "word", "world"
        elif v in ("e", "i", "u", "y"):
            vowel = "ER"
        elif v in ("o", "oa", "oo", "ou", "ar"):
            vowel = "AO"
        elif v in ("ea", "ee", "ie"):
            vowel = "ER" if c[1:] in ("n", "th", "ch", "ly") else "IH"  # "earn" but "ear"
        elif v in ("ai", "ei", "ea"):
            vowel = "EH"
        else:
            vowel = "AA" if v == "a" else _DIGRAPHS.get(v[-2:], "ER")
        return vowel + "r" + _coda(c[1:])
    if len(v) == 1:
        if not c:
            vowel = {"a": "AH", "o": "OW", "u": "UW", "e": "IY"}.get(v, "")
            if v == "i":
                vowel = "AY" if syllables == 1 else "IY"
            return vowel or "IY"
        if v == "o" and c in ("ld", "lt", "st") and not s.endswith(("ost",)):
            return "OW" + _coda(c)
        if v == "o" and c.startswith("l"):
            return "OW" + _coda(c)  # "roll", "bolt"
        return _SHORT[v] + _coda(c)
    if s.endswith(_OO_UH):
        return "UH" + _coda(c)
    vowel = _DIGRAPHS.get(v[-3:]) or _DIGRAPHS.get(v[-2:]) or _SHORT.get(v[-1], "AH")
    return vowel + _coda(c)


def _rhyme_word(word: str) -> str:
    tokens = _WORD.findall(_ascii_lower(word))
    if not tokens:
        return ""
    last = tokens[-1].split("-")[-1]
    if last.isdigit():
        last = _number_words(int(last[-9:]))[-1]
    return re.sub(r"[^a-z]", "", last.replace("'s", "s"))


def rhyme_key(word: str) -> str:
    """What a word's ending sounds like, from spelling: "night" and "white" share "AYt".

    Empty for a token without letters. Heuristic: the last vowel sound and what follows
    it; unstressed -ing/-er/-ed/-s endings are keyed on the syllable before them.
    """
    w = _rhyme_word(word)
    if not w:
        return ""
    if w in _RHYME_EXCEPTIONS or w in _OW_AW or w in _OWN_OW:
        return _base_rhyme_key(w)
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is", "ous")):
        if w.endswith("ies") and len(w) > 4:
            return rhyme_key(w[:-3] + "y") + "s"
        if w.endswith(("ches", "shes", "xes", "sses", "zzes")):
            return rhyme_key(w[:-2]) + "es"
        stem = w[:-1]
        suffix = "es" if re.search(r"[^aeiou][cgsz]e$", stem) or stem.endswith("ce") else "s"
        return rhyme_key(stem) + suffix
    if len(w) > 3 and w.endswith("ed") and not w.endswith("eed"):
        stem = w[:-2]
        if stem.endswith("i"):
            return rhyme_key(w[:-1] if len(w) <= 5 else stem[:-1] + "y") + "d"
        if stem[-1] in "td":
            return _stem_key(stem) + "id"
        if re.fullmatch(r"[^aeiou]*[aeiou][^aeiouwxy]", stem):
            return rhyme_key(stem + "e") + "d"  # "hoped" like "hope"
        return _stem_key(stem) + "d"
    if len(w) > 4 and w.endswith("ing") and _has_vowel(w[:-3]):
        return _stem_key(w[:-3]) + "ing"
    if (
        len(w) >= 5
        and w.endswith("er")
        and w not in _STRESSED_ER
        and _has_vowel(w[:-2])
        and count_syllables(w) >= 2
    ):
        return _stem_key(w[:-2]) + "r"
    return _base_rhyme_key(w)


def rhymes(a: str, b: str) -> bool:
    """Whether two words (or the last words of two lines) rhyme by spelling heuristics.

    The same word counts as a rhyme: limericks repeat it and a ghazal is built on it.
    """
    wa, wb = _rhyme_word(a), _rhyme_word(b)
    if not wa or not wb:
        return False
    if wa == wb:
        return True
    key_a, key_b = rhyme_key(wa), rhyme_key(wb)
    return bool(key_a) and key_a == key_b


# --------------------------------------------------------------------------- forms


@dataclass(frozen=True, slots=True)
class FormSpec:
    """What a form asks of a poem; see the module docstring for the pass rules."""

    name: str
    min_lines: int
    max_lines: int
    line_multiple: int = 1
    # Exact per-line syllable targets, each allowed ±syllable_tolerance.
    syllables: tuple[int, ...] = ()
    syllable_tolerance: int = 1
    # A soft range for every line's syllables (meter is only scored, never required).
    syllable_range: tuple[int, int] | None = None
    # Rhyme schemes, one letter per line, "." for a free line; the best one is scored.
    schemes: tuple[str, ...] = ()
    # For stanzaic forms: the scheme of each stanza (ballad ".A.A").
    stanza_scheme: str = ""
    # Fraction of rhyme groups that must hold to pass.
    rhyme_threshold: float = 1.0
    radif: bool = False
    max_words_per_line: int = 25


FORM_SPECS: dict[str, FormSpec] = {
    "free verse": FormSpec("free verse", 3, 200),
    "haiku": FormSpec("haiku", 3, 3, syllables=(5, 7, 5)),
    "tanka": FormSpec("tanka", 5, 5, syllables=(5, 7, 5, 7, 7)),
    "limerick": FormSpec("limerick", 5, 5, syllable_range=(4, 12), schemes=("AABBA",)),
    "sonnet": FormSpec(
        "sonnet",
        14,
        14,
        syllable_range=(8, 13),
        # Shakespearean, Spenserian, Petrarchan (two common sestets).
        schemes=("ABABCDCDEFEFGG", "ABABBCBCCDCDEE", "ABBAABBACDECDE", "ABBAABBACDCDCD"),
        rhyme_threshold=5 / 7,
    ),
    "ballad": FormSpec(
        "ballad",
        8,
        48,
        line_multiple=4,
        syllable_range=(4, 12),
        stanza_scheme=".A.A",
        rhyme_threshold=0.75,
    ),
    "ghazal": FormSpec("ghazal", 6, 30, line_multiple=2, syllable_range=(4, 22), radif=True),
}


@dataclass(frozen=True, slots=True)
class FormReport:
    """How well a text fits a form: a graded score, a verdict, and why."""

    score: float
    passes: bool
    problems: tuple[str, ...] = field(default=())


def _poem_lines(text: str) -> list[str]:
    # Lines with no word at all (blank, "***", "—") are layout, not verse.
    return [line.strip() for line in text.splitlines() if _words(line)]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _closeness(actual: int, target: int) -> float:
    return max(0.0, 1.0 - 0.25 * abs(actual - target))


def _line_count_score(spec: FormSpec, n: int) -> tuple[float, bool, str | None]:
    allowed = [k for k in range(spec.min_lines, spec.max_lines + 1) if k % spec.line_multiple == 0]
    nearest = min(allowed, key=lambda k: abs(k - n))
    if n == nearest:
        return 1.0, True, None
    what = f"{spec.min_lines}" if spec.min_lines == spec.max_lines else f"{nearest}"
    if spec.line_multiple > 1 and n >= spec.min_lines:
        unit = "quatrains" if spec.line_multiple == 4 else "couplets"
        note = f"{n} lines do not divide into {unit}"
    elif spec.min_lines == spec.max_lines:
        note = f"{_plural(n, 'line')}; a {spec.name} has {what}"
    elif n < spec.min_lines:
        note = f"only {_plural(n, 'line')}; a {spec.name} wants at least {spec.min_lines}"
    else:
        note = f"{n} lines; a {spec.name} wants at most {spec.max_lines}"
    return max(0.0, 1.0 - abs(n - nearest) / nearest), False, note


def _rhyme_groups(scheme: str, offset: int = 0) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, letter in enumerate(scheme):
        if letter != ".":
            groups.setdefault(letter, []).append(offset + i)
    return list(groups.values())


def _group_result(ends: Sequence[str], group: Sequence[int]) -> tuple[float, bool]:
    """Fraction of a group's pairs that rhyme, and whether the group holds."""
    parent = list(range(len(group)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    pairs = hits = 0
    for i in range(len(group)):
        for j in range(i + 1, len(group)):
            pairs += 1
            a, b = group[i], group[j]
            if a < len(ends) and b < len(ends) and rhymes(ends[a], ends[b]):
                hits += 1
                parent[find(i)] = find(j)
    # A group of three or more holds when all but one of its lines rhyme together: a
    # small model's near miss, or the heuristic's, should not sink an otherwise sound poem.
    largest = max(Counter(find(i) for i in range(len(group))).values())
    held = largest >= len(group) - (1 if len(group) >= 3 else 0)
    return (hits / pairs if pairs else 1.0), held


def _scheme_result(ends: Sequence[str], spec: FormSpec, scheme: str) -> tuple[float, bool, int]:
    """Score, pass and the number of broken groups for one whole-poem scheme."""
    groups = _rhyme_groups(scheme)
    results = [_group_result(ends, g) for g in groups]
    held = sum(ok for _, ok in results)
    score = sum(s for s, _ in results) / len(results)
    passes = held / len(groups) >= spec.rhyme_threshold - 1e-9
    # The English sonnets end on a couplet that must rhyme; a limerick needs every group.
    if scheme.endswith("GG") or scheme.endswith("EE"):
        passes = passes and results[-1][1]
    return score, passes, len(groups) - held


def check(form: str, text: str) -> FormReport:
    """Score ``text`` against a form named as in ``bot.prompts.POEM_FORMS``.

    ValueError for an unknown form. The score weighs line count, syllables and rhyme
    per form; it is graded so that a near miss beats a wild one.
    """
    spec = FORM_SPECS.get(form)
    if spec is None:
        raise ValueError(f"unknown poem form {form!r}")
    lines = _poem_lines(text)
    if not lines:
        return FormReport(0.0, False, ("the poem is empty",))
    n = len(lines)
    problems: list[str] = []
    parts: list[tuple[float, float]] = []  # (weight, score)
    passes = True

    count_score, count_ok, note = _line_count_score(spec, n)
    passes &= count_ok
    if note:
        problems.append(note)
    counts = [line_syllables(line) for line in lines]
    words_per_line = [len(_words(line)) for line in lines]

    if spec.syllables:
        parts.append((0.25, count_score))
        scores = []
        for i, target in enumerate(spec.syllables):
            if i >= n:
                scores.append(0.0)
                continue
            scores.append(_closeness(counts[i], target))
            if abs(counts[i] - target) > spec.syllable_tolerance:
                passes = False
            if counts[i] != target:
                problems.append(
                    f"line {i + 1} has {_plural(counts[i], 'syllable')}, "
                    f"a {spec.name} wants {target}"
                )
        # Extra lines dilute the syllable score as well as the line-count score.
        parts.append((0.75, sum(scores) / max(n, len(spec.syllables))))
    elif spec.schemes or spec.stanza_scheme or spec.radif:
        parts.append((0.2, count_score))
        ends = [line.split()[-1] for line in lines]
        if spec.radif:
            rhyme_score, rhyme_ok = _radif(ends, problems)
        elif spec.stanza_scheme:
            rhyme_score, rhyme_ok = _stanzas(ends, spec, problems)
        else:
            best = max(
                (_scheme_result(ends, spec, s) for s in spec.schemes),
                key=lambda r: (r[1], r[0]),
            )
            rhyme_score, rhyme_ok = best[0], best[1]
            if not rhyme_ok:
                problems.append(_scheme_note(spec, ends, best[2]))
        passes &= rhyme_ok
        parts.append((0.65, rhyme_score))
    else:
        parts.append((0.5, count_score))

    if spec.syllable_range:
        lo, hi = spec.syllable_range
        in_range = sum(lo <= c <= hi for c in counts)
        parts.append((0.15, in_range / n))
        if in_range < n:
            problems.append(f"{n - in_range} of {_plural(n, 'line')} outside {lo}-{hi} syllables")

    # Every form: verse, not prose. Free verse is judged on this alone with its count.
    longest = max(words_per_line)
    mean_words = sum(words_per_line) / n
    prose_ok = longest <= spec.max_words_per_line and mean_words <= 14
    if not spec.syllables and not spec.schemes and not spec.stanza_scheme and not spec.radif:
        parts.append((0.5, min(1.0, 14 / max(mean_words, 1.0)) * (1.0 if prose_ok else 0.5)))
    if not prose_ok:
        passes = False
        problems.append(f"reads like prose: {longest} words in the longest line")

    total_weight = sum(w for w, _ in parts)
    score = sum(w * s for w, s in parts) / total_weight
    if not prose_ok:
        score *= 0.5
    score = min(1.0, max(0.0, score))
    return FormReport(round(score, 4), passes, tuple(problems))


def _scheme_note(spec: FormSpec, ends: Sequence[str], broken: int) -> str:
    if spec.name == "limerick" and len(ends) >= 4 and not rhymes(ends[2], ends[3]):
        return f'lines 3 and 4 do not rhyme ("{ends[2]}", "{ends[3]}")'
    if spec.name == "limerick":
        return "lines 1, 2 and 5 do not rhyme"
    return f"{broken} rhyme groups of the best-fitting {spec.name} scheme do not rhyme"


def _stanzas(ends: Sequence[str], spec: FormSpec, problems: list[str]) -> tuple[float, bool]:
    size = len(spec.stanza_scheme)
    stanzas = max(1, len(ends) // size)
    scores: list[float] = []
    held = 0
    for k in range(stanzas):
        groups = _rhyme_groups(spec.stanza_scheme, offset=k * size)
        results = [_group_result(ends, g) for g in groups]
        scores.append(sum(s for s, _ in results) / len(results))
        if all(ok for _, ok in results):
            held += 1
        else:
            problems.append(f"stanza {k + 1}: lines 2 and 4 do not rhyme")
    ok = held / stanzas >= spec.rhyme_threshold - 1e-9
    return sum(scores) / stanzas, ok


def _radif(ends: Sequence[str], problems: list[str]) -> tuple[float, bool]:
    couplet_ends = [_rhyme_word(ends[i]) for i in range(1, len(ends), 2)]
    if not couplet_ends:
        problems.append("no couplets")
        return 0.0, False
    radif, repeats = Counter(couplet_ends).most_common(1)[0]
    misses = len(couplet_ends) - repeats
    score = repeats / len(couplet_ends)
    # The opening couplet (matla) ends both lines on the radif: a bonus, not a rule.
    if _rhyme_word(ends[0]) == radif:
        score = min(1.0, score + 0.1)
    if repeats < 2:
        problems.append("no repeated final word (radif) closes the couplets")
        return score * 0.5, False
    if misses:
        problems.append(f'{misses} couplets do not end with the radif "{radif}"')
    allowed = 1 if len(couplet_ends) >= 4 else 0
    return score, misses <= allowed


def best_of(form: str, candidates: Sequence[str]) -> tuple[int, FormReport]:
    """The index and report of the candidate that fits ``form`` best; ties go earlier.

    With no candidates at all the index is -1 and the report says so.
    """
    if not candidates:
        return -1, FormReport(0.0, False, ("no candidates",))
    best_index, best_report = 0, check(form, candidates[0])
    for i, text in enumerate(candidates[1:], start=1):
        report = check(form, text)
        # A passing candidate beats a failing one whatever the scores say.
        if (report.passes, report.score) > (best_report.passes, best_report.score):
            best_index, best_report = i, report
    return best_index, best_report
