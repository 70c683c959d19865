"""Placeholder while the critique cog is being written (replaced in this session)."""

from __future__ import annotations

from typing import Any


async def setup(bot: Any) -> None:
    return None
