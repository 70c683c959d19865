"""A terminal channel: type slash commands, see what Discord would show.

    /poem theme: rain on a tin roof form: haiku
    click Favourite          (or: click 1)
    submit title: Rain       (answers a modal the bot opened)

Parsing and rendering are pure functions (``parse_command_line``, ``render_messages``)
so they are tested without a bot. ``run_repl`` glues them to the emulator.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.playground.emulator import DiscordEmulator
from bot.playground.records import (
    CallbackType,
    EmulatorError,
    InteractionKind,
    InteractionRecord,
    Message,
)

ATTACHMENT_TYPE = 11
TYPE_HINTS = {
    3: "text",
    4: "integer",
    5: "true|false",
    6: "@member",
    7: "#channel",
    8: "@role",
    9: "@member|@role",
    10: "number",
    11: "path/to/file",
}
QUIT_WORDS = {"quit", "exit", "/quit", "/exit"}


class TextInput(Protocol):
    def readline(self) -> str: ...


class TextOutput(Protocol):
    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


class ParseError(ValueError):
    """What the person typed cannot be understood; the message says how to fix it."""


# ------------------------------------------------------------------ command specs


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: int
    required: bool = False
    choices: tuple[str, ...] = ()

    def usage(self) -> str:
        hint = "|".join(self.choices) if self.choices else f"<{TYPE_HINTS.get(self.type, 'value')}>"
        text = f"{self.name}: {hint}"
        return text if self.required else f"[{text}]"


@dataclass(frozen=True)
class CommandSpec:
    """One invocable command path (``poem`` or ``style add``) and its options."""

    path: str
    description: str
    options: tuple[OptionSpec, ...] = field(default=())

    def usage(self) -> str:
        return " ".join([f"/{self.path}", *(o.usage() for o in self.options)])


def command_specs(registered: Sequence[dict[str, Any]]) -> list[CommandSpec]:
    """Flatten the bot's registered slash commands (and subcommands) into specs."""
    specs: list[CommandSpec] = []

    def visit(node: dict[str, Any], path: str) -> None:
        options = node.get("options") or []
        nested = [o for o in options if o.get("type") in (1, 2)]
        if nested:
            for child in nested:
                visit(child, f"{path} {child['name']}")
            return
        specs.append(
            CommandSpec(
                path=path,
                description=str(node.get("description", "")),
                options=tuple(
                    OptionSpec(
                        o["name"],
                        int(o["type"]),
                        bool(o.get("required")),
                        tuple(str(c["name"]) for c in o.get("choices") or []),
                    )
                    for o in options
                ),
            )
        )

    for command in registered:
        if command.get("type", 1) == 1:
            visit(command, str(command["name"]))
    return sorted(specs, key=lambda s: s.path)


# ------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Invocation:
    command: str  # full path, e.g. "style add"
    options: dict[str, str]


_OPTION_HEAD = re.compile(r"([\w-]+):[ \t]*")
_OPTION_AHEAD = re.compile(r"(?<=\s)([\w-]+):")


def parse_command_line(line: str, commands: Sequence[CommandSpec]) -> Invocation:
    """``/poem theme: rain on a tin roof form: haiku`` → Invocation("poem", {...})."""
    text = line.strip()
    if not text.startswith("/"):
        raise ParseError("Slash commands start with '/'. Type /help to see them.")
    words = text[1:].split()
    if not words:
        raise ParseError("Type a command name after '/'. Type /help to see them.")
    spec = None
    for size in range(len(words), 0, -1):  # the longest path wins: "/style add" over "/style"
        wanted = " ".join(words[:size]).lower()
        spec = next((c for c in commands if c.path == wanted), None)
        if spec is not None:
            break
    if spec is None:
        return _unknown_command(words, commands)
    rest = re.sub(
        r"^/?\s*" + r"\s+".join(map(re.escape, spec.path.split())),
        "",
        text[1:],
        count=1,
        flags=re.IGNORECASE,
    )
    options = parse_options(rest, [o.name for o in spec.options], command=spec.path)
    missing = [o.name for o in spec.options if o.required and o.name not in options]
    if missing:
        raise ParseError(f"/{spec.path} needs {', '.join(missing)}. Usage: {spec.usage()}")
    return Invocation(spec.path, options)


def _unknown_command(words: list[str], commands: Sequence[CommandSpec]) -> Invocation:
    head = words[0].lower()
    family = [c for c in commands if c.path.split()[0] == head]
    if family:
        subs = ", ".join(c.path.split(" ", 1)[1] for c in family)
        raise ParseError(f"/{head} needs a subcommand: {subs}.")
    known = ", ".join(f"/{c.path}" for c in commands) or "none yet (has the bot synced?)"
    raise ParseError(f"Unknown command /{head}. Commands: {known}. Type /help for details.")


def parse_options(text: str, names: Collection[str], *, command: str = "") -> dict[str, str]:
    """Split ``name: value`` pairs; a value runs until the next *known* option name.

    So values may hold spaces and colons ("time: 3:00 am") as long as the word before
    the colon is not an option name; quote a value ("…") to include anything at all.
    """
    known = {n.lower() for n in names}
    listing = ", ".join(sorted(known)) or "(none)"
    where = f"/{command} " if command else ""
    result: dict[str, str] = {}
    text = text.strip()
    pos = 0
    while pos < len(text):
        head = _OPTION_HEAD.match(text, pos)
        if head is None:
            raise ParseError(
                f"Expected 'option: value' at {text[pos:]!r}. {where}options: {listing}"
            )
        name = head.group(1).lower()
        if name not in known:
            raise ParseError(f"Unknown option '{name}'. {where}options: {listing}")
        if name in result:
            raise ParseError(f"Option '{name}' is given twice.")
        pos = head.end()
        if pos < len(text) and text[pos] in "\"'":
            close = text.find(text[pos], pos + 1)
            if close < 0:
                raise ParseError(f"Unclosed quote in the value of '{name}'.")
            value = text[pos + 1 : close]
            pos = close + 1
            if pos < len(text) and not text[pos].isspace():
                raise ParseError(f"Put a space after the quoted value of '{name}'.")
        else:
            end = len(text)
            for ahead in _OPTION_AHEAD.finditer(text, pos):
                if ahead.group(1).lower() in known:
                    end = ahead.start()
                    break
            value = text[pos:end].strip()
            pos = end
            if not value:
                raise ParseError(f"Option '{name}' has no value.")
        result[name] = value
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return result


def help_text(commands: Sequence[CommandSpec]) -> str:
    lines = ["Commands:"]
    for spec in commands:
        lines.append(f"  {spec.usage()}")
        if spec.description:
            lines.append(f"      {spec.description}")
    if not commands:
        lines.append("  (none registered yet: the bot has not synced its commands)")
    lines += [
        "Also:",
        "  click <label or number>    press a button on the latest bot message with buttons",
        "  submit <field>: <value>    fill in the form the bot opened",
        "  quit                       leave (so does end of input)",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- rendering


def render_message(
    message: Message,
    *,
    bot_name: str,
    author_name: str | None = None,
    names: Mapping[int, str] | None = None,
) -> str:
    """One message as the channel shows it, in plain text (``names`` resolve <@id>)."""
    name = author_name or bot_name
    if message.deleted:
        return f"{name}: (message deleted)"
    if message.loading:
        text = f"{name} is thinking…"
        return text + ("\n  (only you can see this)" if message.ephemeral else "")
    lines: list[str] = []
    body = message.content.strip() or "\n".join(message.text_displays)
    if names:
        body = re.sub(r"<@!?(\d+)>", lambda m: "@" + names.get(int(m.group(1)), m.group(1)), body)
    if body:
        first, *more = body.splitlines()
        lines.append(f"{name}: {first}")
        lines.extend(f"  {line}" for line in more)
    else:
        lines.append(f"{name}:")
    for embed in message.embeds:
        lines.extend(f"  │ {line}" for line in render_embed(embed))
    for attachment in message.attachments:
        lines.append(f"  📎 {attachment.filename} ({attachment.size} bytes)")
    buttons = message.buttons
    if buttons:
        lines.append(
            "  " + " ".join(f"[{b.display}{' (disabled)' if b.disabled else ''}]" for b in buttons)
        )
    for select in (c for c in message.interactive if c.type != 2):
        lines.append(f"  [▾ {select.label or select.custom_id}]")
    if message.ephemeral:
        lines.append("  (only you can see this)")
    return "\n".join(lines)


def render_embed(embed: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if name := (embed.get("author") or {}).get("name"):
        lines.append(str(name))
    if title := embed.get("title"):
        lines.append(f"**{title}**")
    if description := embed.get("description"):
        lines.extend(str(description).splitlines())
    for f in embed.get("fields") or []:
        lines.append(f"{f.get('name')}: {f.get('value')}")
    if footer := (embed.get("footer") or {}).get("text"):
        lines.append(f"— {footer}")
    return lines or ["(empty embed)"]


def render_modal(modal: dict[str, Any]) -> str:
    fields = []
    for top in modal.get("components") or []:
        if top.get("type") == 18:
            fields.append((top.get("label"), top.get("component") or {}))
        for child in top.get("components") or []:
            fields.append((child.get("label"), child))
    lines = [f"📝 {modal.get('title', 'Form')}"]
    for label, component in fields:
        required = "" if component.get("required", True) else " (optional)"
        lines.append(f"  {label or component.get('custom_id')}{required}")
    lines.append("  Answer with: submit <field>: <value> …")
    return "\n".join(lines)


def render_messages(
    messages: Sequence[Message], *, bot_name: str, names: Mapping[int, str] | None = None
) -> str:
    names = names or {}
    return "\n".join(
        render_message(m, bot_name=bot_name, author_name=names.get(m.author_id), names=names)
        for m in messages
    )


def changed_since(messages: Sequence[Message], since: float, viewer_id: int) -> list[Message]:
    """Messages created, edited or deleted after ``since`` that ``viewer_id`` can see."""
    return [m for m in messages if m.last_change >= since and m.visible_to(viewer_id)]


# ---------------------------------------------------------------------- the loop


def find_button(message: Message | None, choice: str) -> str:
    """``click 2`` or ``click favourite`` → that button's custom_id."""
    buttons = [] if message is None else [b for b in message.buttons if b.custom_id]
    if not buttons:
        raise ParseError("There is no bot message with buttons to click.")
    wanted = choice.strip().strip("[]").lower()
    if wanted.isdigit() and 1 <= int(wanted) <= len(buttons):
        return str(buttons[int(wanted) - 1].custom_id)
    exact = [b for b in buttons if wanted in (b.display.lower(), (b.label or "").lower())]
    partial = [b for b in buttons if wanted and wanted in b.display.lower()]
    for found in (exact, partial):
        if len(found) == 1:
            return str(found[0].custom_id)
    labels = " ".join(f"[{b.display}]" for b in buttons)
    raise ParseError(f"No single button matches {choice!r}. Buttons: {labels}")


async def run_repl(
    emulator: DiscordEmulator,
    *,
    guild_id: int,
    channel_id: int,
    user_id: int,
    input_stream: TextInput,
    output_stream: TextOutput,
    settled: Callable[[], Awaitable[None]],
) -> None:
    """Read commands until ``quit`` or end of input, printing the channel after each."""
    interactive = bool(getattr(input_stream, "isatty", lambda: False)())

    def say(text: str) -> None:
        if text:
            output_stream.write(text + "\n")
            output_stream.flush()

    if interactive:
        channel = emulator.channel(channel_id)
        where = f"#{channel.name}" if channel else "a channel"
        say(
            f"Atelier playground: you are in {where} of a pretend Discord server.\n"
            "Type /help for commands, quit to leave."
        )
    modal_source: InteractionRecord | None = None
    while True:
        if interactive:
            output_stream.write("> ")
            output_stream.flush()
        # A thread keeps the event loop (bot, engine, emulator) running while we wait.
        line = await asyncio.to_thread(input_stream.readline)
        if not line:
            break
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() in QUIT_WORDS:
            break
        started = time.monotonic()
        try:
            record = await _act(emulator, line, guild_id, channel_id, user_id, modal_source)
        except (ParseError, EmulatorError) as exc:
            say(str(exc))
            continue
        if record is None:  # /help and the like print their own answer
            say(help_text(command_specs(emulator.registered_commands(guild_id))))
            continue
        await settled()
        say(_report(emulator, record, channel_id, user_id, started))
        if record.modal is not None:
            modal_source = record


async def _act(
    emulator: DiscordEmulator,
    line: str,
    guild_id: int,
    channel_id: int,
    user_id: int,
    modal_source: InteractionRecord | None,
) -> InteractionRecord | None:
    word, _, rest = line.partition(" ")
    word = word.lower()
    if word in ("/help", "help"):
        return None
    if word == "click":
        mine = [
            m
            for m in emulator.channel_messages(channel_id, visible_to=user_id)
            if m.author_id == emulator.bot_user.id and m.buttons
        ]
        message = mine[-1] if mine else None
        custom_id = find_button(message, rest)
        assert message is not None
        return await emulator.click(message.id, custom_id, user_id=user_id)
    if word == "submit":
        if modal_source is None or modal_source.modal is None:
            raise ParseError("No form is open. 'submit' answers a form the bot showed.")
        names = _modal_field_names(modal_source.modal)
        fields = parse_options(rest, names)
        return await emulator.submit_modal(modal_source, fields, user_id=user_id)
    if not line.startswith("/"):
        raise ParseError("Type a slash command such as /help, or 'click <button>', or 'quit'.")
    specs = command_specs(emulator.registered_commands(guild_id))
    invocation = parse_command_line(line, specs)
    spec = next(s for s in specs if s.path == invocation.command)
    options: dict[str, Any] = dict(invocation.options)
    for option in spec.options:
        if option.type == ATTACHMENT_TYPE and option.name in options:
            options[option.name] = await asyncio.to_thread(
                _read_upload, options[option.name], option.name
            )
    return await emulator.invoke(
        invocation.command, options, guild_id=guild_id, channel_id=channel_id, user_id=user_id
    )


def _read_upload(where: str, option: str) -> tuple[str, bytes]:
    path = Path(where).expanduser()
    if not path.is_file():
        raise ParseError(f"No file at {path} for '{option}'.")
    return path.name, path.read_bytes()


def _modal_field_names(modal: dict[str, Any]) -> list[str]:
    names = []
    for top in modal.get("components") or []:
        children = (
            [top.get("component") or {}] if top.get("type") == 18 else (top.get("components") or [])
        )
        for child in children:
            names.append(str(child.get("custom_id")))
            label = top.get("label") if top.get("type") == 18 else child.get("label")
            if label:
                names.append(str(label).lower().replace(" ", "_"))
    return names


def _report(
    emulator: DiscordEmulator,
    record: InteractionRecord,
    channel_id: int,
    user_id: int,
    started: float,
) -> str:
    messages = changed_since(
        emulator.channel_messages(channel_id, include_deleted=True), started, user_id
    )
    names = {uid: u.username for uid, u in emulator.users.items()}
    parts = []
    if messages:
        parts.append(render_messages(messages, bot_name=emulator.bot_user.username, names=names))
    if record.modal is not None:
        parts.append(render_modal(record.modal))
    if not record.responded and record.kind is not InteractionKind.AUTOCOMPLETE:
        # What Discord's client shows when a bot never acknowledges an interaction.
        parts.append("⚠ The application did not respond.")
    elif not parts and record.callback_type is CallbackType.DEFERRED_UPDATE_MESSAGE:
        parts.append("(the bot acknowledged silently)")
    return "\n".join(parts)
