"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import Settings
from bot.generation.model_loader import LoadedModel, load_model


@pytest.fixture(scope="session")
def model_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the real default model, converted from GGUF once per test session.

    Conversion takes ~15 s, so the data dir is shared by the whole session (or across
    sessions when ``ATELIER_MODEL_TEST_DATA`` names a folder). float32: bfloat16 results
    depend slightly on the batch shape, and some tests compare token for token.
    """
    shared = os.environ.get("ATELIER_MODEL_TEST_DATA")
    data_dir = Path(shared) if shared else tmp_path_factory.mktemp("atelier-data")
    return Settings(data_dir=data_dir, model="smollm2", dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def loaded(model_settings: Settings) -> LoadedModel:
    """The real default model, loaded once for every test that needs it."""
    return load_model(model_settings)
