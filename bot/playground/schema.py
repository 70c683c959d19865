"""Application-command schemas: Discord's registration rules and option value checks.

Pure functions over the JSON the bot registers, shared by the emulator's REST side
(validating a sync) and its driving side (building an interaction from options).
"""

from __future__ import annotations

import re
from typing import Any

from bot.playground.records import EmulatorError
from bot.playground.rest import FormErrors

OPTION_SUBCOMMAND, OPTION_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = (
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
)
NAME_RE = re.compile(r"^[-_\w]{1,32}$")
TYPE_NAMES = {
    STRING: "string",
    INTEGER: "integer",
    NUMBER: "number",
    BOOLEAN: "boolean",
    USER: "user",
    CHANNEL: "channel",
    ROLE: "role",
    MENTIONABLE: "mentionable",
    ATTACHMENT: "attachment",
}


def snowflake_from(value: Any, mention: str) -> int | None:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if m := re.fullmatch(mention, text):
        return int(m.group(1))
    return int(text) if text.isdigit() and len(text) >= 15 else None


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "y", "1", "on"):
        return True
    if text in ("false", "no", "n", "0", "off"):
        return False
    raise ValueError(value)


def check_bounds(option: dict[str, Any], value: Any) -> Any:
    name = option["name"]
    choices = option.get("choices")
    if choices:
        for choice in choices:
            if choice["value"] == value or str(choice["name"]).lower() == str(value).lower():
                return choice["value"]
        raise EmulatorError(
            f"option {name!r} must be one of {[c['name'] for c in choices]}, not {value!r}"
        )
    if isinstance(value, str):
        if len(value) < option.get("min_length", 0):
            raise EmulatorError(f"option {name!r} needs at least {option['min_length']} chars")
        if len(value) > option.get("max_length", 6000):
            raise EmulatorError(f"option {name!r} allows at most {option['max_length']} chars")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "min_value" in option and value < option["min_value"]:
            raise EmulatorError(f"option {name!r} must be ≥ {option['min_value']}")
        if "max_value" in option and value > option["max_value"]:
            raise EmulatorError(f"option {name!r} must be ≤ {option['max_value']}")
    return value


def describe_options(options: list[dict[str, Any]]) -> str:
    parts = []
    for o in options:
        label = o["name"] + ("" if o.get("required") else "?")
        if o.get("choices"):
            label += "=" + "|".join(str(c["name"]) for c in o["choices"])
        parts.append(label)
    return ", ".join(parts) or "(none)"


def validate_command(
    payload: dict[str, Any], errors: FormErrors, path: tuple[str | int, ...]
) -> None:
    """The registration rules that trip bots most often."""
    name = str(payload.get("name", ""))
    chat_input = payload.get("type", 1) == 1
    if chat_input and (not NAME_RE.match(name) or name != name.lower()):
        errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", f"Invalid name {name!r}")
    description = str(payload.get("description", ""))
    if chat_input and not 1 <= len(description) <= 100:
        errors.add(
            (*path, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    options = payload.get("options") or []
    if len(options) > 25:
        errors.add((*path, "options"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    for i, option in enumerate(options):
        validate_command({**option, "type": 1}, errors, (*path, "options", i))
        if option.get("type") in (OPTION_SUBCOMMAND, OPTION_GROUP):
            continue
        if option.get("required"):
            if seen_optional:
                errors.add(
                    (*path, "options", i, "required"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        if len(option.get("choices") or []) > 25:
            errors.add(
                (*path, "options", i, "choices"),
                "BASE_TYPE_MAX_LENGTH",
                "Must be 25 or fewer in length.",
            )
