"""`atelier play` scripted through stdin: the real CLI, bot, emulator and model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.config import Settings
from bot.generation.model_loader import LoadedModel


@pytest.mark.model
def test_scripted_playground_prints_each_reply_and_exits(
    model_settings: Settings, loaded: LoadedModel
) -> None:
    # `loaded` guarantees the converted weights are cached in model_settings.data_dir.
    env = {
        **os.environ,
        "ATELIER_DATA_DIR": str(model_settings.data_dir),
        "ATELIER_DTYPE": model_settings.dtype,
    }
    env.pop("DISCORD_TOKEN", None)
    script = (
        "/poem theme: rain on a tin roof form: haiku\n"
        "/poem theme: <@123456789012345678>\n"
        "/poem theme: the sea: at night length: short\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        input=script,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "No DISCORD_TOKEN set: opening the offline playground." in done.stderr
    haiku = out.index("**Haiku** · *rain on a tin roof*")
    refusal = out.index("The theme is only mentions.")
    sea = out.rindex("**Free verse** · *the sea: at night*")
    assert haiku < refusal < sea  # replies in order, each after its command
    assert "(only you can see this)" in out[refusal:sea]
    # The last reply is the finished poem, not a progress state.
    last = out[sea:]
    assert "Waiting in line" not in last and "Writing…" not in last
    assert len(last.split("\n", 1)[1].split()) >= 5
    assert "<|im_" not in out
