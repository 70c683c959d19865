"""Reading text attachments: encodings, binaries, sizes, images; every refusal says what to do."""

from __future__ import annotations

import codecs

import pytest

from bot.documents import is_image, read_text_attachment, too_big
from bot.errors import InvalidInput

POEM = "Café au lait —\nle soleil sur la table.\n"


@pytest.mark.parametrize(
    "data",
    [
        POEM.encode("utf-8"),
        codecs.BOM_UTF8 + POEM.encode("utf-8"),
        POEM.encode("utf-16"),  # Python writes the BOM of the machine's byte order
        codecs.BOM_UTF16_LE + POEM.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + POEM.encode("utf-16-be"),
    ],
)
def test_utf8_and_utf16_with_bom_are_read(data: bytes) -> None:
    text = read_text_attachment("poem.txt", "text/plain; charset=utf-8", data, 4000)
    assert text == POEM.strip()


def test_markdown_and_missing_content_type_are_accepted() -> None:
    assert read_text_attachment("draft.MD", None, b"# Title\r\nbody", 100) == "# Title\nbody"
    assert read_text_attachment("a.md", "application/octet-stream", b"hi", 100) == "hi"


def test_unknown_encoding_asks_for_utf8() -> None:
    with pytest.raises(InvalidInput) as refusal:
        read_text_attachment("poem.txt", "text/plain", "Café crème, été.".encode("latin-1"), 4000)
    assert "could not read the encoding" in refusal.value.message
    assert "UTF-8" in refusal.value.message


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"PK\x03\x04" + bytes(range(1, 32)) * 3,  # control characters, no NUL
    ],
)
def test_binary_content_is_refused_kindly(data: bytes) -> None:
    with pytest.raises(InvalidInput) as refusal:
        read_text_attachment("poem.txt", "text/plain", data, 4000)
    assert "does not look like a text file" in refusal.value.message


def test_a_binary_content_type_is_refused() -> None:
    with pytest.raises(InvalidInput, match="does not look like a text file"):
        read_text_attachment("poem.txt", "application/pdf", b"%PDF-1.7", 4000)


def test_other_file_kinds_say_what_is_accepted() -> None:
    with pytest.raises(InvalidInput) as refusal:
        read_text_attachment("novel.docx", None, b"PK..", 4000)
    assert ".txt and .md" in refusal.value.message
    with pytest.raises(InvalidInput) as picture:
        read_text_attachment("photo.png", "image/png", b"\x89PNG", 4000)
    assert "picture" in picture.value.message


def test_too_long_text_names_the_limit() -> None:
    with pytest.raises(InvalidInput) as refusal:
        read_text_attachment("long.txt", "text/plain", b"a" * 4001, 4000)
    assert "4,001 characters" in refusal.value.message and "4,000" in refusal.value.message
    with pytest.raises(InvalidInput, match="at most 4,000"):
        read_text_attachment("huge.txt", "text/plain", b"a" * 1_000_000, 4000)


def test_empty_text_is_refused() -> None:
    with pytest.raises(InvalidInput, match="is empty"):
        read_text_attachment("blank.txt", "text/plain", codecs.BOM_UTF8 + b" \n\t\n", 4000)


def test_byte_size_check_names_the_limit() -> None:
    assert too_big("a.txt", 1000, 65536) is None
    refusal = too_big("a.txt", 200_000, 65536)
    assert refusal is not None and "195 KB" in refusal.message and "64 KB" in refusal.message


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("cat.png", "image/png", True),
        ("cat.JPG", None, True),
        ("scan.webp", "", True),
        ("cat.png", "text/plain", False),
        ("notes.txt", "text/plain", False),
        ("noext", None, False),
    ],
)
def test_is_image(filename: str, content_type: str | None, expected: bool) -> None:
    assert is_image(filename, content_type) is expected
