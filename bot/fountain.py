"""Screenplay text in Fountain (https://fountain.io), from whatever the model wrote.

A small model writes scenes in many shapes: "JOHN: Hi.", "**John:** Hi.", a cue on its
own line, "Scene 1: a kitchen at night", markdown bold, bracketed stage directions.
``to_fountain`` turns all of them into plain Fountain: a scene heading (INT./EXT.),
action paragraphs, CHARACTER cues in capitals, parentheticals, dialogue and
transitions, with the blank lines a Fountain reader needs to tell them apart. Pure
text functions, no Discord.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["excerpt", "title_page", "to_fountain"]

_HEADING = re.compile(r"^(?:\.(?=[A-Za-z])|(?:int\.?/ext|ext\.?/int|i/e|int|ext|est)[.\s])", re.I)
# "Scene 2: the beach at dawn", "Setting - a kitchen", "[Location: the roof]".
_HEADING_LIKE = re.compile(
    r"^(?:scene(?:\s+\d+)?|setting|location|place)\s*[:\-–—]\s*(?P<place>.+)$", re.I
)
_SCENE_NUMBER = re.compile(r"^scene\s+\d+\.?$", re.I)
_TRANSITION = re.compile(
    r"^(?:(?:fade|cut|dissolve|smash cut|match cut|wipe|jump cut)(?: in| out| to)?(?: black)?"
    r"[:.]?|[A-Z][A-Z ]*TO:|the end\.?|fade out\.?)$",
    re.I,
)
_EXTENSION = re.compile(r"^(?:v\.?\s?o\.?|o\.?\s?s\.?|o\.?\s?c\.?|cont'?d|continuing)$", re.I)
# "Name (aside): words" or "NAME: words"; the name is one to four capitalised words.
_SPOKEN = re.compile(
    r"^(?P<name>[A-Z][\w'’.\-]*(?:\s+[A-Z0-9][\w'’.\-]*){0,3})\s*"
    r"(?:\((?P<paren>[^()]{1,40})\))?\s*:\s*(?P<words>.*)$"
)
# 'Mara, "I love the cat."': a name, a comma, then only a quoted line.
_SAID = re.compile(
    r"^(?P<name>[A-Z][\w'’.\-]*(?:\s+[A-Z][\w'’.\-]*){0,2})\s*,\s*(?P<paren>)"
    r"(?P<words>[\"“][^\"“”]+[\"”])$"
)
_CUE = re.compile(r"^(?P<name>[A-Z0-9][A-Z0-9'’.\- ]*?)\s*(?P<ext>\([^()]{1,20}\))?$")
_NOT_NAMES = frozenset(
    {
        *("scene", "setting", "location", "place", "note", "notes", "title", "premise"),
        *("characters", "character", "genre", "time", "act", "int", "ext", "fade"),
        *("transition", "action", "dialogue", "summary", "logline", "the end"),
    }
)
_OUTDOORS = re.compile(
    r"\b(street|road|park|forest|woods?|beach|shore|field|garden|yard|sea|ocean|river|"
    r"lake|mountain|hill|desert|city|town|village|square|bridge|rooftop|roof|outside|"
    r"outdoors|sky|space|alley|harbou?r|dock|pier|campsite|meadow|farm|jungle|island)\b",
    re.I,
)
_TIME = re.compile(
    r"(?:[,\-–—]\s*|\s+(?:at|in the|by|during the|during)\s+|\s+)?"
    r"\b(?P<time>night|day|morning|evening|afternoon|dawn|dusk|sunset|sunrise|midnight|"
    r"noon|later|continuous|daytime|nighttime)\b\.?\s*$",
    re.I,
)
_MARKDOWN = re.compile(r"\*\*|__|^#+\s*|^\s*[-*•]\s+(?=[A-Z])|^>\s*")
_BRACKETED = re.compile(r"^[\[(](?P<inner>[^\[\]()]+)[\])]\.?$")
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.I)

DEFAULT_PLACE = "SOMEWHERE"


@dataclass(slots=True)
class _Element:
    kind: str  # heading, action, cue, paren, dialogue, transition
    text: str


def _place_heading(place: str) -> str:
    """'a kitchen at night' -> 'INT. KITCHEN - NIGHT'; outdoor words make it EXT."""
    place = " ".join(place.strip(" .:;,-–—").split())
    if _HEADING.match(place + " "):
        return _tidy_heading(place)
    time = "DAY"
    match = _TIME.search(place)
    if match and match.start() > 0:
        time = match.group("time").upper()
        place = place[: match.start()].strip(" ,.-–—")
    place = _ARTICLE.sub("", place) or DEFAULT_PLACE
    prefix = "EXT." if _OUTDOORS.search(place) else "INT."
    return f"{prefix} {place.upper()[:60].rstrip()} - {time}"


def _tidy_heading(line: str) -> str:
    line = line.lstrip(".").strip()
    line = re.sub(
        r"^(int\.?/ext|ext\.?/int|i/e|int|ext|est)\.?\s*", _heading_prefix, line, flags=re.I
    )
    return " ".join(line.upper().split())


# A heading the model ran on into the scene: "INT. KITCHEN - NIGHT - She looks up."
_HEADING_RUN_ON = re.compile(
    r"^(?P<heading>.{4,60}?\b(?:night|day|morning|evening|afternoon|dawn|dusk|sunset|"
    r"sunrise|midnight|noon|later|continuous))\b[\s.\-–—:,]+(?P<rest>\S.*)$",
    re.I,
)


def _split_heading(line: str) -> tuple[str, str]:
    """A heading line, and any scene text the model wrote on the same line."""
    match = _HEADING_RUN_ON.match(line)
    if match and (len(line) > 60 or '"' in line or len(match.group("rest").split()) > 3):
        return match.group("heading"), match.group("rest").strip()
    return line, ""


def _heading_prefix(match: re.Match[str]) -> str:
    word = match.group(1).upper().replace("./", "/")
    return {"INT/EXT": "INT./EXT. ", "EXT/INT": "EXT./INT. ", "I/E": "I/E. "}.get(word, word + ". ")


def _cue_name(name: str) -> str | None:
    """The upper-cased cue for a speaker name, or None if it is not a name."""
    name = " ".join(name.strip(" .").split())
    if not name or not re.search(r"[A-Za-z]", name) or name.casefold() in _NOT_NAMES:
        return None
    if name.split()[0].casefold() in _NOT_NAMES or len(name) > 30:
        return None
    return name.upper()


def _split_paren(words: str) -> tuple[str | None, str]:
    """'(quietly) Hello.' -> ('(quietly)', 'Hello.')."""
    match = re.match(r"^\((?P<p>[^()]{1,60})\)\s*(?P<rest>.*)$", words)
    if match:
        return f"({match.group('p').strip()})", match.group("rest").strip()
    return None, words


def _unquote(words: str) -> str:
    """'"Hello."' -> 'Hello.': dialogue in a screenplay is not in quotation marks."""
    if len(words) > 1 and words[0] in '"“' and words[-1] in '"”' and words.count('"') <= 2:
        return words[1:-1].strip()
    return words


def _speaker(line: str) -> list[_Element] | None:
    match = _SPOKEN.match(line) or _SAID.match(line)
    if not match:
        return None
    cue = _cue_name(match.group("name"))
    if cue is None:
        return None
    elements = []
    paren = match.group("paren")
    if paren and _EXTENSION.match(paren.strip()):
        cue = f"{cue} ({paren.strip().upper()})"
        paren = None
    elements.append(_Element("cue", cue))
    if paren:
        elements.append(_Element("paren", f"({paren.strip()})"))
    lead, words = _split_paren(match.group("words").strip())
    if lead:
        elements.append(_Element("paren", lead))
    if words:
        elements.append(_Element("dialogue", _unquote(words)))
    return elements


def _lone_cue(line: str) -> str | None:
    """A line that is only a speaker's name in capitals ('MARA', 'DR. WEST (V.O.)')."""
    match = _CUE.match(line)
    if not match or not line.isupper() or len(match.group("name").split()) > 4:
        return None
    last = match.group("name").split()[-1]
    if last.endswith(("!", "?")) or (last.endswith(".") and len(last) > 4):
        return None  # "THE DOOR SLAMS." is a sentence, not a name ("DR." is)
    name = _cue_name(match.group("name"))
    if name is None:
        return None
    ext = match.group("ext")
    return f"{name} {ext.upper()}" if ext else name


def _not_speech(line: str) -> bool:
    return bool(_HEADING.match(line) or _HEADING_LIKE.match(line) or _TRANSITION.match(line))


def _parse(text: str) -> list[_Element]:
    elements: list[_Element] = []
    lines = [_MARKDOWN.sub("", line).strip() for line in text.replace("\r", "").split("\n")]
    speaking = False  # inside a cue's dialogue block
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line or line.startswith("```"):
            speaking = False
            continue
        bracketed = _BRACKETED.match(line)
        if bracketed and _HEADING_LIKE.match(bracketed.group("inner").strip()):
            line = bracketed.group("inner").strip()
        elif bracketed and (line.startswith("[") or not speaking):
            # "[She leaves.]" is always a stage direction; "(quietly)" is one only
            # outside a speech, inside it is a parenthetical.
            elements.append(_Element("action", bracketed.group("inner").strip()))
            speaking = False
            continue
        if _SCENE_NUMBER.match(line):
            continue
        if _HEADING.match(line):
            heading, rest = _split_heading(line)
            elements.append(_Element("heading", _tidy_heading(heading)))
            if rest:
                elements.append(_Element("action", rest))
            speaking = False
            continue
        like = _HEADING_LIKE.match(line)
        if like:
            elements.append(_Element("heading", _place_heading(like.group("place"))))
            speaking = False
            continue
        if _TRANSITION.match(line):
            elements.append(_Element("transition", line.upper().rstrip()))
            speaking = False
            continue
        spoken = _speaker(line)
        if spoken:
            elements.extend(spoken)
            speaking = True
            continue
        cue = _lone_cue(line)
        if cue and i < len(lines):
            # "MARA" then her words, sometimes after a blank line the model put there.
            nxt = i if lines[i] else i + 1
            following = lines[nxt] if nxt < len(lines) else ""
            if following and not _lone_cue(following) and not _not_speech(following):
                elements.append(_Element("cue", cue))
                i = nxt
                speaking = True
                continue
        if speaking:
            paren, words = _split_paren(line)
            if paren:
                elements.append(_Element("paren", paren))
            if words:
                elements.append(_Element("dialogue", words))
            continue
        elements.append(_Element("action", line))
    return elements


def _render(elements: list[_Element]) -> str:
    blocks: list[list[str]] = []
    previous = ""
    for element in elements:
        kind, text = element.kind, element.text
        if kind in ("paren", "dialogue") and previous in ("cue", "paren", "dialogue"):
            blocks[-1].append(text)
        elif kind == "action" and previous == "action":
            blocks[-1].append(_safe_action(text))
        elif kind == "transition":
            # Fountain reads an upper-case line ending in "TO:" as a transition; any
            # other (FADE OUT.) must be forced with ">".
            blocks.append([text if text.endswith("TO:") else f"> {text}"])
        elif kind == "action":
            blocks.append([_safe_action(text)])
        elif kind in ("paren", "dialogue"):
            # Dialogue with no speaker: keep the words as action.
            blocks.append([_safe_action(text)])
            kind = "action"
        else:
            blocks.append([text])
        previous = kind
    return "\n\n".join("\n".join(block) for block in blocks)


def _safe_action(text: str) -> str:
    # An all-capitals action line would read as a character cue, and a leading
    # "INT " or ">" as a heading or transition: "!" forces action.
    if text.isupper() or _HEADING.match(text) or text.startswith((">", "@", "~", "=", "#")):
        return "!" + text
    return text


def to_fountain(text: str, *, setting: str | None = None) -> str:
    """Model output as a Fountain scene that opens with an INT./EXT. heading: when the
    model did not start with one, it comes from ``setting`` (else a generic one)."""
    elements = _parse(text)
    at = 0
    while at < len(elements) and elements[at].kind == "transition":
        at += 1  # FADE IN: may come before the first heading
    if at == len(elements) or elements[at].kind != "heading":
        elements.insert(at, _Element("heading", _place_heading(setting or DEFAULT_PLACE)))
    return _render(elements).strip()


def excerpt(text: str, limit: int) -> str:
    """The start of ``text`` in at most ``limit`` characters, cut after a whole
    paragraph (a cue stays with its dialogue); inside one huge paragraph, after a
    whole line, else a whole word."""
    if limit < 1:
        raise ValueError("limit must be positive")
    text = text.strip()
    if len(text) <= limit:
        return text
    kept = ""
    for paragraph in re.split(r"\n\s*\n", text):
        candidate = f"{kept}\n\n{paragraph}" if kept else paragraph
        if len(candidate) > limit:
            break
        kept = candidate
    if kept:
        return kept
    head = text[:limit]
    for separator in ("\n", " "):
        cut = head.rfind(separator)
        if cut > 0:
            return head[:cut].rstrip()
    return head


def title_page(title: str, author: str) -> str:
    """A Fountain title page to put before a scene (ends with the blank line)."""

    def one_line(value: str) -> str:
        return " ".join(value.split()) or "Untitled"

    return f"Title: {one_line(title)}\nCredit: Written by\nAuthor: {one_line(author)}\n\n"
