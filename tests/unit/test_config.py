"""Settings: file defaults, environment overrides, clear errors, secrets kept secret."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from bot.__main__ import RedactSecrets, main
from bot.config import Settings, load_settings
from bot.errors import ConfigError


def test_defaults_come_from_the_toml_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    settings = load_settings()
    assert settings.model == "smollm2"
    assert settings.discord_api_base == "https://discord.com/api/v10"
    assert settings.discord_token is None


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ATELIER_DISCORD_API_BASE", "http://127.0.0.1:9999/api/v10/")
    monkeypatch.setenv("ATELIER_DISCORD_GATEWAY_URL", "ws://127.0.0.1:9999/")
    monkeypatch.setenv("ATELIER_QUEUE_LIMIT", "7")
    settings = load_settings()
    assert settings.data_dir == tmp_path
    assert settings.database_path == tmp_path / "atelier.sqlite3"
    assert settings.discord_api_base == "http://127.0.0.1:9999/api/v10"
    assert settings.discord_gateway_url == "ws://127.0.0.1:9999/"
    assert settings.queue_limit == 7


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    (tmp_path / ".env").write_text("DISCORD_TOKEN=from-dotenv\nATELIER_THEME_MAX_CHARS=99\n")
    settings = load_settings()
    assert settings.discord_token is not None
    assert settings.discord_token.get_secret_value() == "from-dotenv"
    assert settings.theme_max_chars == 99


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("ATELIER_QUEUE_LIMIT", "lots", "ATELIER_QUEUE_LIMIT"),
        ("ATELIER_DTYPE", "int3", "ATELIER_DTYPE"),
        ("ATELIER_DISCORD_API_BASE", "discord.com", "ATELIER_DISCORD_API_BASE"),
        ("ATELIER_MAX_BATCH_SIZE", "0", "ATELIER_MAX_BATCH_SIZE"),
    ],
)
def test_a_bad_value_stops_start_up_with_one_line_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: str,
    value: str,
    named: str,
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert named in str(error.value)
    assert main(["play"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


def test_the_token_never_appears_in_reprs_or_logs() -> None:
    settings = Settings(DISCORD_TOKEN="super.secret.token")  # type: ignore[call-arg]
    assert "super.secret.token" not in repr(settings)
    assert "super.secret.token" not in str(settings.model_dump())

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets(["super.secret.token"]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("headers: %s", {"Authorization": "Bot super.secret.token"})
    finally:
        logger.removeHandler(handler)
    assert "super.secret.token" not in stream.getvalue()
    assert "[redacted]" in stream.getvalue()
