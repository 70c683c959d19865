"""An in-process loopback Discord for the playground and end-to-end tests.

``DiscordEmulator`` serves Discord's real gateway and REST protocol on 127.0.0.1, so an
unmodified discord.py client connects to it once pointed there (``use_emulator``). Tests
and the REPL build a small world (guilds, channels, members), drive it like members do
(``invoke``, ``click``, ``submit_modal``) and read back what the bot did: every message,
edit and interaction callback is recorded with monotonic timestamps.

    async with DiscordEmulator() as emulator:
        guild = emulator.add_guild("Poets")
        channel = emulator.add_channel(guild, "general")
        member = emulator.add_member(guild, "ada")
        async with run_client(bot, emulator):
            await bot.tree.sync()
            record = await emulator.invoke("poem", {"theme": "rain"}, guild_id=guild,
                                           channel_id=channel, user_id=member)
            message = await record.wait_for_original(lambda m: "rain" in m.content)
"""

# Waiting helpers take a `timeout` argument on purpose: tests read better with it.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import discord
import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.playground.gateway import Gateway
from bot.playground.records import (
    ApiError,
    Attachment,
    CallbackType,
    ChannelRecord,
    CommandUnavailable,
    ComponentRef,
    EmulatorError,
    GuildRecord,
    InteractionKind,
    InteractionRecord,
    MemberRecord,
    Message,
    Notifier,
    RequestRecord,
    RoleRecord,
    Snowflakes,
    UserRecord,
)
from bot.playground.rest import API_PREFIX, MAX_UPLOAD, FormErrors, RestApi
from bot.playground.schema import (
    ATTACHMENT,
    BOOLEAN,
    CHANNEL,
    INTEGER,
    MENTIONABLE,
    NUMBER,
    OPTION_GROUP,
    OPTION_SUBCOMMAND,
    ROLE,
    STRING,
    TYPE_NAMES,
    USER,
    check_bounds,
    describe_options,
    snowflake_from,
    to_bool,
    validate_command,
)

__all__ = [
    "ApiError",
    "Attachment",
    "CallbackType",
    "CommandUnavailable",
    "ComponentRef",
    "DiscordEmulator",
    "EmulatorError",
    "InteractionKind",
    "InteractionRecord",
    "Message",
    "quiet_period",
    "run_client",
    "use_emulator",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

ALL_PERMISSIONS = discord.Permissions.all().value
ADMINISTRATOR = discord.Permissions(administrator=True).value
MANAGE_GUILD = discord.Permissions(manage_guild=True).value
# What @everyone may do in a fresh server, and what an invited bot is typically granted.
EVERYONE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    read_message_history=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_application_commands=True,
    use_external_emojis=True,
    send_messages_in_threads=True,
).value
BOT_PERMISSIONS = EVERYONE_PERMISSIONS
SEND_NEEDS = discord.Permissions(view_channel=True, send_messages=True).value


def _iso(ts: float | None = None) -> str:
    moment = datetime.datetime.fromtimestamp(ts or time.time(), tz=datetime.UTC)
    return moment.isoformat()


class DiscordEmulator:
    """A loopback Discord: gateway at ``gateway_url``, REST at ``api_base``."""

    def __init__(
        self,
        *,
        token: str = "emulator-bot-token",
        bot_name: str = "Atelier",
        shard_count: int = 1,
        heartbeat_interval_ms: int = 41_250,
        callback_deadline: float | None = 3.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.shard_count = shard_count
        # Discord forgets interactions not acknowledged within 3 s; None disables that.
        self.callback_deadline = callback_deadline
        self._host, self._port = host, port
        self.snowflakes = Snowflakes()
        self.bot_user = UserRecord(self.snowflakes.next(), bot_name, bot=True)
        self.application_id = self.bot_user.id  # modern apps share the bot user's id
        self.owner_user = UserRecord(self.snowflakes.next(), "owner")
        self.users: dict[int, UserRecord] = {u.id: u for u in (self.bot_user, self.owner_user)}
        self.guilds: dict[int, GuildRecord] = {}
        self.messages: dict[int, Message] = {}
        self.interactions: list[InteractionRecord] = []
        self.requests: list[RequestRecord] = []
        self.unhandled: list[str] = []  # "METHOD /path" the emulator has no route for
        self.typing: list[tuple[float, int]] = []  # (when, channel_id)
        self.files: dict[int, Attachment] = {}  # served at /attachments/{id}/{filename}
        self.last_activity = time.monotonic()
        self._commands: dict[int | None, dict[int, dict[str, Any]]] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._by_id: dict[int, InteractionRecord] = {}
        self._notifier = Notifier()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.gateway = Gateway(
            self, heartbeat_interval_ms=heartbeat_interval_ms, on_activity=self.touch
        )
        self.rest = RestApi(self)

    # ============================================================ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * MAX_UPLOAD)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self.rest.handle)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._serve_file)
        app.router.add_get("/", self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Bind the socket ourselves so the OS-chosen port is known without private APIs.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        log.info("Discord emulator listening on %s", self.base_url)

    async def stop(self) -> None:
        await self.gateway.close_all()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` should be."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` should be."""
        return f"ws://{self._host}:{self._port}/"

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        attachment = self.files.get(int(request.match_info["attachment_id"]))
        if attachment is None:
            return web.Response(status=404)
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )

    # ============================================================ the world

    def add_guild(self, name: str) -> int:
        """A server with @everyone, the bot (with a managed role) and the app owner."""
        guild_id = self.snowflakes.next()
        guild = GuildRecord(guild_id, name, owner_id=self.owner_user.id)
        # The @everyone role shares the guild's id, as on Discord.
        guild.roles[guild_id] = RoleRecord(guild_id, guild_id, "@everyone", EVERYONE_PERMISSIONS)
        bot_role = RoleRecord(
            self.snowflakes.next(),
            guild_id,
            self.bot_user.username,
            BOT_PERMISSIONS,
            position=1,
            managed=True,
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = MemberRecord(self.bot_user, guild_id, (bot_role.id,))
        guild.members[self.owner_user.id] = MemberRecord(self.owner_user, guild_id)
        self.guilds[guild_id] = guild
        self._announce("GUILD_CREATE", lambda: self.guild_create_payload(guild_id), guild_id)
        return guild_id

    def add_channel(self, guild_id: int, name: str, *, nsfw: bool = False) -> int:
        guild = self._guild(guild_id)
        channel = ChannelRecord(
            self.snowflakes.next(), guild_id, name, nsfw=nsfw, position=len(guild.channels)
        )
        guild.channels[channel.id] = channel
        self._announce("CHANNEL_CREATE", channel.payload, guild_id)
        return channel.id

    def add_role(self, guild_id: int, name: str, *, permissions: int = 0) -> int:
        guild = self._guild(guild_id)
        role = RoleRecord(
            self.snowflakes.next(), guild_id, name, permissions, position=len(guild.roles)
        )
        guild.roles[role.id] = role
        self._announce(
            "GUILD_ROLE_CREATE",
            lambda: {"guild_id": str(guild_id), "role": role.payload()},
            guild_id,
        )
        return role.id

    def add_member(
        self,
        guild_id: int,
        username: str,
        *,
        permissions: int | discord.Permissions = 0,
        manage_guild: bool = False,
        administrator: bool = False,
        roles: tuple[int | str, ...] | list[int | str] = (),
        user_id: int | None = None,
    ) -> int:
        """Add a member; ``user_id`` reuses an existing user (same person, other server).

        ``roles`` takes role ids or names (a missing name creates a role without
        permissions); ``permissions``/``manage_guild``/``administrator`` grant extra
        permissions through a role of the member's own. Returns the user id.
        """
        guild = self._guild(guild_id)
        if user_id is not None:
            user = self.users[user_id]
        else:
            user = UserRecord(self.snowflakes.next(), username)
            self.users[user.id] = user
        role_ids = [self._role_id(guild, r) for r in roles]
        extra = permissions.value if isinstance(permissions, discord.Permissions) else permissions
        extra |= (MANAGE_GUILD if manage_guild else 0) | (ADMINISTRATOR if administrator else 0)
        if extra:
            role_ids.append(self.add_role(guild_id, f"{username} permissions", permissions=extra))
        member = MemberRecord(user, guild_id, tuple(role_ids))
        guild.members[user.id] = member
        self._announce(
            "GUILD_MEMBER_ADD", lambda: {**member.payload(), "guild_id": str(guild_id)}, guild_id
        )
        return user.id

    def _role_id(self, guild: GuildRecord, role: int | str) -> int:
        if isinstance(role, int):
            if role not in guild.roles:
                raise EmulatorError(f"no role {role} in {guild.name!r}")
            return role
        found = next((r.id for r in guild.roles.values() if r.name == role), None)
        return found if found is not None else self.add_role(guild.id, role)

    def delete_channel(self, channel_id: int, *, announce: bool = True) -> None:
        """Delete a channel: REST calls touching it get 404 Unknown Channel (10003)."""
        channel = self._channel(channel_id)
        channel.deleted = True
        if announce:
            self._announce("CHANNEL_DELETE", channel.payload, channel.guild_id)
        self.notify()

    def delete_message(self, message_id: int) -> None:
        """A moderator deletes a message: later fetches/edits get 404 Unknown Message."""
        message = self.messages.get(message_id)
        if message is None:
            raise EmulatorError(f"no message {message_id}")
        self._spawn(self.remove_message(message))

    def expire_interaction(self, record: InteractionRecord | str) -> None:
        """Age an interaction past Discord's 15 minutes: its webhook now answers 401."""
        target = record if isinstance(record, InteractionRecord) else self._by_token[record]
        target.expired = True
        self.notify()

    def permissions_for(self, guild_id: int, user_id: int) -> int:
        guild = self._guild(guild_id)
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        if member is None:
            raise EmulatorError(f"user {user_id} is not a member of {guild.name!r}")
        value = guild.roles[guild_id].permissions
        for role_id in member.roles:
            value |= guild.roles[role_id].permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def bot_can_send(self, channel_id: int) -> bool:
        channel = self._channel(channel_id)
        perms = self.permissions_for(channel.guild_id, self.bot_user.id)
        return perms & SEND_NEEDS == SEND_NEEDS

    # ------------------------------------------------------------ lookups

    def _guild(self, guild_id: int) -> GuildRecord:
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise EmulatorError(f"no guild {guild_id}") from None

    def channel(self, channel_id: int) -> ChannelRecord | None:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        return None

    def _channel(self, channel_id: int) -> ChannelRecord:
        channel = self.channel(channel_id)
        if channel is None:
            raise EmulatorError(f"no channel {channel_id}")
        return channel

    def channel_messages(
        self, channel_id: int, *, include_deleted: bool = False, visible_to: int | None = None
    ) -> list[Message]:
        """Messages in a channel, oldest first."""
        found = [
            m
            for m in self.messages.values()
            if m.channel_id == channel_id
            and (include_deleted or not m.deleted)
            and (visible_to is None or m.visible_to(visible_to))
        ]
        return sorted(found, key=lambda m: m.id)

    def last_bot_message(self, channel_id: int, *, visible_to: int | None = None) -> Message | None:
        mine = [
            m
            for m in self.channel_messages(channel_id, visible_to=visible_to)
            if m.author_id == self.bot_user.id
        ]
        return mine[-1] if mine else None

    def interaction_by_id(self, interaction_id: int) -> InteractionRecord | None:
        return self._by_id.get(interaction_id)

    def interaction_by_token(self, token: str) -> InteractionRecord | None:
        return self._by_token.get(token)

    # ------------------------------------------------------------ payloads

    def guild_create_payload(self, guild_id: int) -> dict[str, Any]:
        guild = self._guild(guild_id)
        members = list(guild.members.values())
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(guild.owner_id),
            "unavailable": False,
            "large": False,
            # member_count == len(members) marks the guild as chunked, so discord.py
            # never needs to ask for members even with the members intent.
            "member_count": len(members),
            "members": [m.payload() for m in members],
            "roles": [r.payload() for r in guild.roles.values()],
            "channels": [c.payload() for c in guild.channels.values() if not c.deleted],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "joined_at": _iso(),
            "preferred_locale": "en-US",
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "system_channel_flags": 0,
        }

    def attachment_payload(self, attachment: Attachment) -> dict[str, Any]:
        url = f"{self.base_url}/attachments/{attachment.id}/{quote(attachment.filename)}"
        data: dict[str, Any] = {
            "id": str(attachment.id),
            "filename": attachment.filename,
            "size": attachment.size,
            "url": url,
            "proxy_url": url,
        }
        if attachment.content_type:
            data["content_type"] = attachment.content_type
        if attachment.description:
            data["description"] = attachment.description
        return data

    def message_payload(self, message: Message) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "guild_id": str(message.guild_id),
            "author": self.users[message.author_id].payload(),
            "content": message.content,
            "timestamp": message.timestamp,
            "edited_timestamp": message.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [self.attachment_payload(a) for a in message.attachments],
            "embeds": message.embeds,
            "pinned": False,
            "type": 0,
            "flags": message.flags,
            "components": message.components,
        }
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(self.application_id)
        record = self._by_id.get(message.interaction_id or 0)
        if record is not None:
            if record.kind is InteractionKind.APPLICATION_COMMAND:
                data["type"] = 20  # CHAT_INPUT_COMMAND
            data["interaction_metadata"] = {
                "id": str(record.id),
                "type": int(record.kind),
                "user": self.users[record.user_id].payload(),
                "authorizing_integration_owners": {"0": str(record.guild_id)},
            }
        return data

    # ---------------------------------------------------- messages (for rest)

    def new_message(
        self, channel_id: int, *, author_id: int, interaction: InteractionRecord | None = None
    ) -> Message:
        channel = self._channel(channel_id)
        return Message(
            id=self.snowflakes.next(),
            channel_id=channel_id,
            guild_id=channel.guild_id,
            author_id=author_id,
            interaction_id=None if interaction is None else interaction.id,
            interaction_user_id=None if interaction is None else interaction.user_id,
            webhook_id=None if interaction is None else self.application_id,
            timestamp=_iso(),
        )

    def store_message(self, message: Message, body: dict[str, Any]) -> None:
        self.messages[message.id] = message
        message.raw_payloads.append(body)
        message.snapshot(message.created_at)
        self.files.update((a.id, a) for a in message.attachments)
        self.notify()

    def record_edit(self, message: Message, body: dict[str, Any]) -> None:
        message.edited_timestamp = _iso()
        message.raw_payloads.append(body)
        message.snapshot(time.monotonic())
        self.files.update((a.id, a) for a in message.attachments)
        self.notify()

    async def announce_created(self, message: Message) -> None:
        if not message.ephemeral:
            await self.gateway.dispatch(
                "MESSAGE_CREATE", self.message_payload(message), guild_id=message.guild_id
            )

    async def announce_edited(self, message: Message) -> None:
        if not message.ephemeral:
            await self.gateway.dispatch(
                "MESSAGE_UPDATE", self.message_payload(message), guild_id=message.guild_id
            )

    async def remove_message(self, message: Message) -> None:
        message.deleted_at = time.monotonic()
        self.notify()
        if not message.ephemeral:
            data = {
                "id": str(message.id),
                "channel_id": str(message.channel_id),
                "guild_id": str(message.guild_id),
            }
            await self.gateway.dispatch("MESSAGE_DELETE", data, guild_id=message.guild_id)

    # ------------------------------------------------------------ commands

    def commands_in(self, scope: int | None) -> dict[int, dict[str, Any]]:
        """Registered commands by id: global when ``scope`` is None, else that guild's."""
        return self._commands.setdefault(scope, {})

    def registered_commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Commands a member sees in ``guild_id``: the guild's own, then global ones."""
        seen: dict[tuple[str, int], dict[str, Any]] = {}
        scopes = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self.commands_in(scope).values():
                seen.setdefault((command["name"], command.get("type", 1)), command)
        return list(seen.values())

    def find_command(self, name: str, guild_id: int | None = None) -> dict[str, Any] | None:
        return next(
            (
                c
                for c in self.registered_commands(guild_id)
                if c["name"] == name and c.get("type", 1) == 1
            ),
            None,
        )

    def replace_commands(self, scope: int | None, payloads: list[dict[str, Any]]) -> list[Any]:
        errors = FormErrors()
        for i, payload in enumerate(payloads):
            validate_command(payload, errors, (i,))
        errors.raise_if_any()
        old = {(c["name"], c.get("type", 1)): c for c in self.commands_in(scope).values()}
        fresh: dict[int, dict[str, Any]] = {}
        for payload in payloads:
            previous = old.get((payload["name"], payload.get("type", 1)))
            command = self._stored_command(scope, payload, previous)
            fresh[int(command["id"])] = command
        self._commands[scope] = fresh
        self.notify()
        return list(fresh.values())

    def upsert_command(self, scope: int | None, payload: dict[str, Any]) -> tuple[Any, bool]:
        errors = FormErrors()
        validate_command(payload, errors, ())
        errors.raise_if_any()
        commands = self.commands_in(scope)
        previous = next(
            (
                c
                for c in commands.values()
                if (c["name"], c.get("type", 1)) == (payload["name"], payload.get("type", 1))
            ),
            None,
        )
        command = self._stored_command(scope, payload, previous)
        commands[int(command["id"])] = command
        self.notify()
        return command, previous is None

    def _stored_command(
        self, scope: int | None, payload: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        command = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **payload,
            "id": previous["id"] if previous else str(self.snowflakes.next()),
            "application_id": str(self.application_id),
            "version": str(self.snowflakes.next()),
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    # ============================================================ driving

    async def invoke(
        self,
        command_name: str,
        options: Mapping[str, Any] | None = None,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        subcommand: str | None = None,
    ) -> InteractionRecord:
        """A member runs a slash command (``"group sub"`` paths work in either argument).

        Options are checked and converted against the schema the bot registered, as
        Discord's client would: unknown or missing options, values outside choices or
        bounds raise EmulatorError; a command the member may not see raises
        CommandUnavailable. Returns at once; wait on the record for the bot's reply.
        """
        command, path = self._resolve_command(command_name, subcommand, guild_id)
        channel = self._live_channel(channel_id)
        self._check_available(command, guild_id, channel, user_id)
        resolved: dict[str, dict[str, Any]] = {}
        opts = self._options_payload(
            command, path, dict(options or {}), guild_id, user_id, resolved, focused=None
        )
        return await self._dispatch_interaction(
            InteractionKind.APPLICATION_COMMAND,
            " ".join([command["name"], *path]),
            self._command_data(command, opts, resolved),
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
        )

    async def autocomplete(
        self,
        command_name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        guild_id: int,
        channel_id: int,
        user_id: int,
        subcommand: str | None = None,
    ) -> InteractionRecord:
        """A member is typing ``focused``; the bot's choices land in ``record.choices``."""
        command, path = self._resolve_command(command_name, subcommand, guild_id)
        self._live_channel(channel_id)
        resolved: dict[str, dict[str, Any]] = {}
        opts = self._options_payload(
            command, path, dict(options), guild_id, user_id, resolved, focused=focused
        )
        return await self._dispatch_interaction(
            InteractionKind.AUTOCOMPLETE,
            " ".join([command["name"], *path]),
            self._command_data(command, opts, resolved),
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
        )

    async def click(
        self,
        message_id: int,
        custom_id: str,
        *,
        user_id: int,
        values: list[str] | None = None,
    ) -> InteractionRecord:
        """A member presses a button (or picks ``values`` in a select) on a message."""
        message = self.messages.get(message_id)
        if message is None or message.deleted:
            raise EmulatorError(f"no message {message_id} to click on")
        if not message.visible_to(user_id):
            raise EmulatorError("that ephemeral message is not visible to this member")
        component = next((c for c in message.interactive if c.custom_id == custom_id), None)
        if component is None:
            raise EmulatorError(
                f"message {message_id} has no component {custom_id!r}; it has {message.custom_ids}"
            )
        if component.disabled:
            raise EmulatorError(f"{component.display!r} is disabled; Discord would not send it")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component.type}
        if component.type != 2:
            data["values"] = list(values or [])
        elif values:
            raise EmulatorError("buttons take no values")
        self._live_channel(message.channel_id)
        return await self._dispatch_interaction(
            InteractionKind.COMPONENT,
            custom_id,
            data,
            guild_id=message.guild_id,
            channel_id=message.channel_id,
            user_id=user_id,
            source=message,
        )

    async def submit_modal(
        self,
        source: InteractionRecord | str,
        fields: Mapping[str, str],
        *,
        user_id: int | None = None,
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot showed (by record, or by modal custom_id).

        ``fields`` are keyed by text-input custom_id or by label (case-insensitive).
        """
        record = self._modal_source(source)
        modal = record.modal
        assert modal is not None
        given = {k.lower(): v for k, v in fields.items()}
        used: set[str] = set()
        components = []
        for top in modal.get("components", []):
            if top.get("type") == 1:
                row = [
                    self._modal_value(c, c.get("label"), given, used)
                    for c in top.get("components", [])
                ]
                components.append({"type": 1, "components": row})
            elif top.get("type") == 18:  # Label wrapping one input
                inner = self._modal_value(top["component"], top.get("label"), given, used)
                components.append({"type": 18, "component": inner})
        unknown = set(given) - used
        if unknown:
            raise EmulatorError(f"modal {modal.get('title')!r} has no field(s) {sorted(unknown)}")
        return await self._dispatch_interaction(
            InteractionKind.MODAL_SUBMIT,
            modal["custom_id"],
            {"custom_id": modal["custom_id"], "components": components},
            guild_id=record.guild_id,
            channel_id=record.channel_id,
            user_id=record.user_id if user_id is None else user_id,
            source=record.source_message,
        )

    def _modal_source(self, source: InteractionRecord | str) -> InteractionRecord:
        if isinstance(source, InteractionRecord):
            if source.modal is None:
                raise EmulatorError(f"the bot answered {source.name!r} without a modal")
            return source
        for record in reversed(self.interactions):
            if record.modal is not None and record.modal.get("custom_id") == source:
                return record
        raise EmulatorError(f"no modal with custom_id {source!r} has been shown")

    @staticmethod
    def _modal_value(
        component: dict[str, Any], label: str | None, given: dict[str, str], used: set[str]
    ) -> dict[str, Any]:
        custom_id = str(component.get("custom_id"))
        label_key = (label or "").lower()
        candidates = (custom_id.lower(), label_key, label_key.replace(" ", "_"))
        key = next((k for k in candidates if k and k in given), None)
        out: dict[str, Any] = {"type": component.get("type"), "custom_id": custom_id}
        if key is not None:
            used.add(key)
        if component.get("type") == 4:  # text input
            value = given[key] if key is not None else str(component.get("value") or "")
            if component.get("required", True) and not value:
                raise EmulatorError(f"modal field {label or custom_id!r} is required")
            limit = component.get("max_length")
            if limit is not None and len(value) > limit:
                raise EmulatorError(f"modal field {label or custom_id!r} allows {limit} chars")
            out["value"] = value
        else:
            raw = given[key] if key is not None else []
            out["values"] = [raw] if isinstance(raw, str) else list(raw)
        return out

    # -------------------------------------------------- interaction plumbing

    def _resolve_command(
        self, command_name: str, subcommand: str | None, guild_id: int
    ) -> tuple[dict[str, Any], list[str]]:
        parts = command_name.lstrip("/").split() + (subcommand.split() if subcommand else [])
        if not parts:
            raise EmulatorError("no command name given")
        command = self.find_command(parts[0], guild_id)
        if command is None:
            names = sorted(c["name"] for c in self.registered_commands(guild_id))
            raise EmulatorError(
                f"/{parts[0]} is not registered (registered: {names or 'none'}); "
                "has the bot synced its commands to the emulator?"
            )
        return command, parts[1:]

    def _live_channel(self, channel_id: int) -> ChannelRecord:
        channel = self._channel(channel_id)
        if channel.deleted:
            raise EmulatorError(f"channel {channel.name!r} has been deleted")
        return channel

    def _check_available(
        self, command: dict[str, Any], guild_id: int, channel: ChannelRecord, user_id: int
    ) -> None:
        perms = self.permissions_for(guild_id, user_id)
        required = command.get("default_member_permissions")
        if required is not None and int(required) & ~perms:
            raise CommandUnavailable(
                f"/{command['name']} needs permissions {int(required)}; Discord hides it from "
                "this member"
            )
        if command.get("nsfw") and not channel.nsfw:
            raise CommandUnavailable(f"/{command['name']} is age-restricted; not offered here")
        contexts = command.get("contexts")
        if contexts is not None and 0 not in contexts:
            raise CommandUnavailable(f"/{command['name']} is not available in servers")

    @staticmethod
    def _command_data(
        command: dict[str, Any], options: list[dict[str, Any]], resolved: dict[str, Any]
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": command["id"],
            "name": command["name"],
            "type": 1,
            "options": options,
        }
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return data

    def _options_payload(
        self,
        schema: dict[str, Any],
        path: list[str],
        given: dict[str, Any],
        guild_id: int,
        user_id: int,
        resolved: dict[str, dict[str, Any]],
        *,
        focused: str | None,
    ) -> list[dict[str, Any]]:
        options = schema.get("options") or []
        nested = [o for o in options if o["type"] in (OPTION_SUBCOMMAND, OPTION_GROUP)]
        if path:
            sub = next((o for o in nested if o["name"] == path[0]), None)
            if sub is None:
                raise EmulatorError(
                    f"{schema['name']!r} has no subcommand {path[0]!r}; it has "
                    f"{[o['name'] for o in nested]}"
                )
            inner = self._options_payload(
                sub, path[1:], given, guild_id, user_id, resolved, focused=focused
            )
            return [{"type": sub["type"], "name": sub["name"], "options": inner}]
        if nested:
            raise EmulatorError(
                f"{schema['name']!r} needs a subcommand: {[o['name'] for o in nested]}"
            )
        known = {o["name"]: o for o in options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise EmulatorError(
                f"{schema['name']!r} has no option(s) {unknown}; "
                f"options: {describe_options(options)}"
            )
        missing = [
            o["name"]
            for o in options
            if o.get("required") and o["name"] not in given and focused is None
        ]
        if missing:
            raise EmulatorError(f"{schema['name']!r} requires {missing}")
        if focused is not None and focused not in known:
            raise EmulatorError(f"cannot focus unknown option {focused!r}")
        out = []
        for option in options:
            name = option["name"]
            if name == focused:
                # While typing, Discord sends the raw partial text, whatever the type.
                out.append(
                    {
                        "type": option["type"],
                        "name": name,
                        "value": str(given.get(name, "")),
                        "focused": True,
                    }
                )
            elif name in given:
                value = self._convert(option, given[name], guild_id, user_id, resolved)
                out.append({"type": option["type"], "name": name, "value": value})
        return out

    def _convert(
        self,
        option: dict[str, Any],
        value: Any,
        guild_id: int,
        user_id: int,
        resolved: dict[str, dict[str, Any]],
    ) -> Any:
        kind, name = option["type"], option["name"]
        try:
            if kind == STRING:
                converted: Any = str(value)
            elif kind == INTEGER:
                converted = int(value)
            elif kind == NUMBER:
                converted = float(value)
            elif kind == BOOLEAN:
                converted = to_bool(value)
            elif kind == USER:
                return str(self._resolve_user(guild_id, user_id, value, resolved))
            elif kind == CHANNEL:
                return str(self._resolve_channel(guild_id, user_id, value, option, resolved))
            elif kind == ROLE:
                return str(self._resolve_role(guild_id, value, resolved))
            elif kind == MENTIONABLE:
                try:
                    return str(self._resolve_user(guild_id, user_id, value, resolved))
                except EmulatorError:
                    return str(self._resolve_role(guild_id, value, resolved))
            elif kind == ATTACHMENT:
                return str(self._resolve_attachment(value, resolved))
            else:
                raise EmulatorError(f"option type {kind} is not supported")
        except (TypeError, ValueError) as exc:
            raise EmulatorError(
                f"option {name!r}: {value!r} is not a valid {TYPE_NAMES[kind]}"
            ) from exc
        return check_bounds(option, converted)

    def _resolve_user(
        self, guild_id: int, user_id: int, value: Any, resolved: dict[str, dict[str, Any]]
    ) -> int:
        guild = self._guild(guild_id)
        target = snowflake_from(value, r"<@!?(\d+)>")
        if target is None:
            wanted = str(value).lstrip("@").lower()
            target = next(
                (m.user.id for m in guild.members.values() if m.user.username.lower() == wanted),
                None,
            )
        if target is None or target not in self.users:
            raise EmulatorError(f"no user {value!r}")
        resolved.setdefault("users", {})[str(target)] = self.users[target].payload()
        member = guild.members.get(target)
        if member is not None:
            data = member.payload(self.permissions_for(guild_id, target))
            data.pop("user")
            resolved.setdefault("members", {})[str(target)] = data
        return target

    def _resolve_channel(
        self,
        guild_id: int,
        user_id: int,
        value: Any,
        option: dict[str, Any],
        resolved: dict[str, dict[str, Any]],
    ) -> int:
        guild = self._guild(guild_id)
        target = snowflake_from(value, r"<#(\d+)>")
        if target is None:
            wanted = str(value).lstrip("#").lower()
            target = next(
                (
                    c.id
                    for c in guild.channels.values()
                    if c.name.lower() == wanted and not c.deleted
                ),
                None,
            )
        channel = guild.channels.get(target or 0)
        if channel is None or channel.deleted:
            raise EmulatorError(f"no channel {value!r} in {guild.name!r}")
        allowed = option.get("channel_types")
        if allowed and channel.type not in allowed:
            raise EmulatorError(f"channel {channel.name!r} is not one of types {allowed}")
        perms = self.permissions_for(guild_id, user_id)
        resolved.setdefault("channels", {})[str(channel.id)] = {
            **channel.payload(),
            "permissions": str(perms),
        }
        return channel.id

    def _resolve_role(self, guild_id: int, value: Any, resolved: dict[str, dict[str, Any]]) -> int:
        guild = self._guild(guild_id)
        target = snowflake_from(value, r"<@&(\d+)>")
        if target is None:
            wanted = str(value).lstrip("@").lower()
            target = next((r.id for r in guild.roles.values() if r.name.lower() == wanted), None)
        role = guild.roles.get(target or 0)
        if role is None:
            raise EmulatorError(f"no role {value!r} in {guild.name!r}")
        resolved.setdefault("roles", {})[str(role.id)] = role.payload()
        return role.id

    def _resolve_attachment(self, value: Any, resolved: dict[str, dict[str, Any]]) -> int:
        if isinstance(value, Attachment):
            attachment = value
        elif isinstance(value, Path):
            attachment = Attachment(self.snowflakes.next(), value.name, value.read_bytes())
        elif isinstance(value, tuple) and len(value) == 2:
            attachment = Attachment(self.snowflakes.next(), str(value[0]), bytes(value[1]))
        else:
            raise TypeError("attachments are Attachment, Path or (filename, bytes)")
        if attachment.size > MAX_UPLOAD:
            raise EmulatorError(f"{attachment.filename} is over the {MAX_UPLOAD} byte limit")
        self.files[attachment.id] = attachment
        resolved.setdefault("attachments", {})[str(attachment.id)] = self.attachment_payload(
            attachment
        )
        return attachment.id

    async def _dispatch_interaction(
        self,
        kind: InteractionKind,
        name: str,
        data: dict[str, Any],
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        source: Message | None = None,
    ) -> InteractionRecord:
        guild = self._guild(guild_id)
        channel = self._channel(channel_id)
        member = guild.members.get(user_id)
        if member is None:
            raise EmulatorError(f"user {user_id} is not a member of {guild.name!r}")
        perms = self.permissions_for(guild_id, user_id)
        interaction_id = self.snowflakes.next()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(32)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": int(kind),
            "token": token,
            "version": 1,
            "data": data,
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": {**channel.payload(), "permissions": str(perms)},
            "member": member.payload(perms),
            "app_permissions": str(self.permissions_for(guild_id, self.bot_user.id)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": MAX_UPLOAD,
        }
        if source is not None:
            payload["message"] = self.message_payload(source)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            kind=kind,
            name=name,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            payload=payload,
            notifier=self._notifier,
            source_message=source,
        )
        self.interactions.append(record)
        self._by_id[record.id] = record
        self._by_token[token] = record
        delivered = await self.gateway.dispatch("INTERACTION_CREATE", payload, guild_id=guild_id)
        if not delivered:
            raise EmulatorError("no bot is connected to the emulator's gateway for this guild")
        self.notify()
        return record

    # ============================================================ waiting

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def notify(self) -> None:
        self.touch()
        self._notifier.notify()

    def record_request(self, record: RequestRecord) -> None:
        self.requests.append(record)
        self.notify()

    async def wait_for(
        self, predicate: Callable[[DiscordEmulator], T | None], timeout: float = 10.0
    ) -> T:
        """Wait until ``predicate(emulator)`` is truthy and return its value."""
        return await self._notifier.wait_until(
            lambda: predicate(self),
            timeout,
            lambda: f"{len(self.messages)} messages, {len(self.interactions)} interactions",
        )

    async def wait_until_connected(self, timeout: float = 15.0) -> None:
        """Until every shard has IDENTIFYed (or RESUMEd) and got its guilds."""
        await self.wait_for(lambda e: len(e.gateway.connected_sessions) >= e.shard_count, timeout)

    async def idle_for(self, seconds: float, *, timeout: float = 60.0) -> None:
        """Return once nothing has happened (REST, gateway) for ``seconds``."""
        deadline = time.monotonic() + timeout
        while True:
            quiet_until = self.last_activity + seconds
            now = time.monotonic()
            if now >= quiet_until:
                return
            if now >= deadline:
                raise TimeoutError(f"emulator still busy after {timeout:.1f}s")
            await asyncio.sleep(min(quiet_until, deadline) - now)

    async def settle_announcements(self) -> None:
        """Wait for gateway events that world changes (add_channel, …) scheduled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------ internals

    def _announce(self, event: str, build: Callable[[], dict[str, Any]], guild_id: int) -> None:
        # World setup is synchronous; a connected bot hears about changes just after.
        if self.gateway.connected_sessions:
            self._spawn(self.gateway.dispatch(event, build(), guild_id=guild_id))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# -------------------------------------------------------- pointing discord.py


@contextmanager
def use_emulator(api_base: str, gateway_url: str) -> Iterator[None]:
    """Point every discord.py client in this process at another Discord, then restore.

    discord.py reads ``Route.BASE`` whenever it builds a route and falls back to
    ``DiscordWebSocket.DEFAULT_GATEWAY`` (a ``yarl.URL``, not a str) on fresh connects.
    A sharded bot takes the gateway URL from ``GET /gateway/bot`` instead, which the
    emulator answers with its own address.
    """
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@asynccontextmanager
async def run_client(
    client: discord.Client, emulator: DiscordEmulator, *, timeout: float = 30.0
) -> AsyncIterator[discord.Client]:
    """Log ``client`` in to the emulator, wait for READY, and close it afterwards.

    READY arrives ``guild_ready_timeout`` (discord.py default 2 s) after the last
    GUILD_CREATE; pass a small ``guild_ready_timeout`` to test clients to save time.
    """
    with use_emulator(emulator.api_base, emulator.gateway_url):
        await client.login(emulator.token)
        runner = asyncio.create_task(client.connect(reconnect=True))
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {runner, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if runner in done:
                runner.result()  # re-raise why it stopped
                raise EmulatorError("the client stopped before it was ready")
            if ready not in done:
                raise TimeoutError(f"client not ready within {timeout:.0f}s")
            yield client
        finally:
            ready.cancel()
            await client.close()
            try:
                await asyncio.wait_for(runner, 10)
            except Exception:  # closing; whatever connect() raised is no longer news
                log.debug("client connect() ended with an error during close", exc_info=True)


def quiet_period(
    emulator: DiscordEmulator,
    seconds: float = 0.5,
    *,
    timeout: float = 120.0,
    also: Callable[[], Awaitable[None]] | None = None,
) -> Callable[[], Awaitable[None]]:
    """A ``settled`` callback for the REPL: ``also()`` (e.g. engine idle), then quiet."""

    async def settled() -> None:
        if also is not None:
            await also()
        await emulator.idle_for(seconds, timeout=timeout)

    return settled
