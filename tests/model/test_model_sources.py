"""Any local folder or cached hub id loads the same way; nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings
from bot.generation.model_loader import LoadedModel, load_model

pytestmark = pytest.mark.model


def test_a_local_model_folder_loads_like_the_default(loaded: LoadedModel, tmp_path: Path) -> None:
    folder = Path(loaded.source)
    assert folder.is_dir()
    settings = Settings(data_dir=tmp_path, model=str(folder), dtype="float32", device="cpu")
    other = load_model(settings)
    assert other.source == str(folder)
    prompt = other.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert not any(tmp_path.iterdir())  # a ready folder is used in place, not converted


def test_an_unknown_hub_id_fails_clearly_without_downloading(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model="atelier-tests/no-such-model", device="cpu")
    with pytest.raises(RuntimeError, match="nothing is downloaded at run time"):
        load_model(settings)
