"""Text hygiene for everything that crosses between members, the model and Discord.

Pure functions, no Discord imports: cleaning what members type, defusing what the
model writes, and splitting long text under Discord's limits without breaking a
word, a stanza or a code block.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from bot.errors import InvalidInput

MESSAGE_LIMIT = 2000
"""Discord's limit on a message's content, in characters."""

_MENTION = re.compile(r"<@[!&]?(\d{15,21})>|<#(\d{15,21})>|@(everyone|here)\b")
_ZERO_WIDTH = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FENCE = re.compile(r"^\s*```(\S*)")


def normalize(text: str) -> str:
    """NFC-normalize and drop zero-width, bidi-override and control characters."""
    text = unicodedata.normalize("NFC", text)
    text = _ZERO_WIDTH.sub("", text)
    return _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def replace_mentions(text: str, names: Mapping[int, str] | None = None) -> str:
    """Turn mention markup into plain words so it can neither ping nor confuse the model."""
    names = names or {}

    def plain(match: re.Match[str]) -> str:
        user_or_role, channel, mass = match.groups()
        if mass:
            return mass
        if channel:
            return "a channel"
        return names.get(int(user_or_role), "someone")

    return _MENTION.sub(plain, text)


def clean_member_text(
    text: str | None,
    *,
    field: str,
    max_chars: int,
    names: Mapping[int, str] | None = None,
) -> str:
    """Validate a short text a member typed (a theme, a premise) for use in a prompt.

    Raises ``InvalidInput`` with a message that says what to change.
    """
    raw = normalize(text or "").strip()
    if not raw:
        raise InvalidInput(f"The {field} is empty. Give me a few words to work with.")
    if len(raw) > max_chars:
        raise InvalidInput(
            f"The {field} is {len(raw)} characters long; the limit is {max_chars}. "
            "Try a shorter one."
        )
    if not _MENTION.sub("", raw).strip(" ,.;:!?-"):
        raise InvalidInput(
            f"The {field} is only mentions. Describe a subject in words "
            "(for example: rain on a tin roof)."
        )
    cleaned = " ".join(replace_mentions(raw, names).split())
    return cleaned


def defuse_mentions(text: str) -> str:
    """Make @everyone/@here and mention markup inert even where they are displayed.

    AllowedMentions.none() already stops pings; this also stops them *looking*
    like pings when quoted or copied elsewhere.
    """
    text = re.sub(r"@(everyone|here)\b", "@\u200b\\1", text)
    return re.sub(r"<(@[!&]?|#)(\d+)>", "<\\1\u200b\\2>", text)


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters.

    Prefers stanza (blank line) boundaries, then line boundaries, then spaces; never
    splits a word unless a single word is longer than a whole message. A chunk that
    ends inside a ``` code block closes it and the next chunk reopens it.
    """
    if limit < 20:
        raise ValueError("limit too small to split sensibly")
    text = text.strip("\n")
    chunks: list[str] = []
    open_fence: str | None = None  # the fence line (with language) we are inside of
    while text:
        prefix = f"{open_fence}\n" if open_fence else ""
        # Leave room for the reopened fence and a closing fence.
        budget = limit - len(prefix) - len("\n```")
        if len(text) <= budget:
            chunk = text
            text = ""
        else:
            cut = _best_cut(text, budget)
            chunk, text = text[:cut].rstrip(), text[cut:].lstrip("\n")
            if not text.strip():
                text = ""
        body = prefix + chunk
        open_fence = _fence_state(body, None)
        if open_fence and text:
            body += "\n```"
        chunks.append(body)
    return chunks


def _best_cut(text: str, budget: int) -> int:
    window = text[: budget + 1]
    for separator in ("\n\n", "\n", " "):
        cut = window.rfind(separator)
        if cut > budget // 4:
            return cut + (len(separator) if separator == " " else 0)
    return budget  # one enormous word: nothing better than a hard cut


def _fence_state(chunk: str, state: str | None) -> str | None:
    """Return the opening fence line still open at the end of ``chunk``, if any."""
    for line in chunk.split("\n"):
        match = _FENCE.match(line)
        if match:
            state = None if state else f"```{match.group(1)}"
    return state
