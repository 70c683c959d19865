"""Reading a member's attached file as text, with a clear answer when it cannot be read.

/critique accepts ``.txt`` and ``.md`` files. Text editors save those as UTF-8 (with
or without a byte-order mark) or, on Windows, UTF-16 with a BOM; anything else is
refused with what to do, never guessed at: a wrong guess would critique mojibake.
"""

from __future__ import annotations

import codecs
from pathlib import PurePath

from bot.errors import InvalidInput
from bot.text import normalize

__all__ = ["IMAGE_EXTENSIONS", "TEXT_EXTENSIONS", "is_image", "read_text_attachment", "too_big"]

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".heic", ".avif"})

# Share of control characters (other than tab/newline/CR/form feed) above which a
# decoded "text" is really a binary file that happened to decode.
_MAX_CONTROL_SHARE = 0.01


def _extension(filename: str) -> str:
    return PurePath(filename).suffix.lower()


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_image(filename: str, content_type: str | None) -> bool:
    """Whether an attachment is a picture (by its type, else by its name)."""
    kind = _base_type(content_type)
    if kind:
        return kind.startswith("image/")
    return _extension(filename) in IMAGE_EXTENSIONS


def _limit_words(size: int) -> str:
    return f"{size // 1024} KB" if size >= 1024 else f"{size} bytes"


def _decode(data: bytes, filename: str) -> str:
    if data.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8", data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, body = "utf-16", data  # the utf-16 codec reads and drops the BOM
    else:
        if b"\x00" in data:
            raise _binary(filename)
        encoding, body = "utf-8", data
    try:
        return body.decode(encoding, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"I could not read the encoding of {filename}. Save it as UTF-8 "
            "(in most editors: Save As, then Encoding: UTF-8) and attach it again."
        ) from None


def _binary(filename: str) -> InvalidInput:
    return InvalidInput(
        f"{filename} does not look like a text file. Attach a .txt or .md file, "
        "or paste the writing into the form instead."
    )


def read_text_attachment(
    filename: str, content_type: str | None, data: bytes, max_chars: int
) -> str:
    """The text of a ``.txt``/``.md`` attachment, normalised, at most ``max_chars`` long.

    Raises ``InvalidInput`` saying what to do for another kind of file, a binary file,
    an encoding other than UTF-8/UTF-16, empty text, or text over ``max_chars``.
    Callers check the byte size (``settings.attachment_max_bytes``) before downloading.
    """
    extension = _extension(filename)
    kind = _base_type(content_type)
    if extension not in TEXT_EXTENSIONS:
        if is_image(filename, content_type):
            raise InvalidInput(
                "That is a picture; I can only read writing. Attach a .txt or .md file, "
                "or paste the text into the form."
            )
        raise InvalidInput(
            f"I can read .txt and .md files; {filename} is not one. "
            "Save the writing as plain text, or paste it into the form."
        )
    if kind and not kind.startswith("text/") and kind != "application/octet-stream":
        raise _binary(filename)
    # No encoding we read takes more than 4 bytes a character: refuse before decoding.
    if len(data) > 4 * max_chars + 4:
        raise _too_long(filename, max_chars)
    text = _decode(data, filename)
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    if text and controls / len(text) > _MAX_CONTROL_SHARE:
        raise _binary(filename)
    text = normalize(text).strip()
    if not text:
        raise InvalidInput(f"{filename} is empty. Attach a file with some writing in it.")
    if len(text) > max_chars:
        raise _too_long(filename, max_chars, len(text))
    return text


def _too_long(filename: str, max_chars: int, chars: int | None = None) -> InvalidInput:
    size = f"holds {chars:,} characters" if chars is not None else "is too long"
    return InvalidInput(
        f"{filename} {size}; I read at most {max_chars:,} characters at a time. "
        "Attach a shorter part of it."
    )


def too_big(filename: str, size: int, max_bytes: int) -> InvalidInput | None:
    """The refusal for an attachment over ``max_bytes``, or None when it fits."""
    if size <= max_bytes:
        return None
    return InvalidInput(
        f"{filename} is {_limit_words(size)}; the limit is {_limit_words(max_bytes)}. "
        "Attach a shorter part of it."
    )
