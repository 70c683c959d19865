"""One ``Settings`` object for the whole bot.

Precedence, highest first: environment variables ``ATELIER_*`` (and
``DISCORD_TOKEN``), a git-ignored ``.env`` file, then ``config/default.toml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "config" / "default.toml"
ENV_PREFIX = "ATELIER_"


def _config_file() -> Path:
    return Path(os.environ.get("ATELIER_CONFIG_FILE", DEFAULT_CONFIG_FILE))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # The bot token is a secret: SecretStr keeps it out of reprs and logs.
    discord_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_TOKEN")

    data_dir: Path = Path("data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    backend: Literal["local", "openai"] = "local"
    model: str = "smollm2"
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_batch_size: int = Field(default=32, ge=1, le=256)

    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = "smollm2"
    openai_api_key: SecretStr | None = None
    openai_timeout_s: float = Field(default=60.0, gt=0)
    openai_max_retries: int = Field(default=3, ge=0)
    openai_concurrency: int = Field(default=8, ge=1)

    queue_limit: int = Field(default=256, ge=1)
    guild_queue_limit: int = Field(default=32, ge=1)
    member_inflight_limit: int = Field(default=2, ge=1)
    job_timeout_s: float = Field(default=180.0, gt=0)
    progress_interval_s: float = Field(default=1.0, ge=0.2)

    theme_max_chars: int = Field(default=200, ge=1, le=1000)
    poem_max_new_tokens: int = Field(default=160, ge=16, le=1024)
    poem_candidates: int = Field(default=4, ge=1, le=16)
    script_max_new_tokens: int = Field(default=400, ge=32, le=2048)
    critique_max_new_tokens: int = Field(default=320, ge=32, le=2048)
    critique_max_chars: int = Field(default=4000, ge=100, le=4000)
    attachment_max_bytes: int = Field(default=64 * 1024, ge=1024, le=8 * 1024 * 1024)
    taste_max_chars: int = Field(default=1200, ge=0, le=8000)
    purge_after_days: int = Field(default=30, ge=0, le=3650)

    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    shard_count: int = Field(default=1, ge=0)

    @field_validator("discord_api_base", "discord_gateway_url", "openai_base_url")
    @classmethod
    def _looks_like_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must start with http://, https://, ws:// or wss://")
        return value.rstrip("/") if value.startswith("http") else value

    @field_validator("discord_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, dotenv_settings, toml)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "atelier.sqlite3"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation error into one line naming the key."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        key = "DISCORD_TOKEN" if field == "discord_token" else ENV_PREFIX + field.upper()
        shown = first.get("input")
        raise ConfigError(
            f"invalid setting {field} ({key}={shown!r} in the environment, .env or "
            f"{_config_file().name}): {first['msg']}"
        ) from None
