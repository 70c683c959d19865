"""The emulator's REST API (``/api/v10``): the routes discord.py uses for a slash-command
bot, with Discord's status codes, JSON error bodies and message limits.

Every response is ``Content-Type: application/json`` exactly: discord.py compares the
header verbatim and treats anything else (even ``; charset=utf-8``) as plain text.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from bot.playground.records import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    ApiError,
    Attachment,
    CallbackType,
    InteractionKind,
    InteractionRecord,
    Message,
    RequestRecord,
    unknown_channel,
    unknown_message,
    walk_components,
)

if TYPE_CHECKING:
    from bot.playground.emulator import DiscordEmulator

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
MAX_UPLOAD = 10 * 1024 * 1024  # what the emulator reports as attachment_size_limit
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
SEND_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
EDIT_FLAGS = SUPPRESS_EMBEDS | IS_COMPONENTS_V2

# Which callback types Discord accepts for each interaction kind.
ALLOWED_CALLBACKS = {
    InteractionKind.APPLICATION_COMMAND: {4, 5, 9},
    InteractionKind.AUTOCOMPLETE: {8},
    InteractionKind.COMPONENT: {4, 5, 6, 7, 9},
    InteractionKind.MODAL_SUBMIT: {4, 5, 6, 7},
}


def json_response(status: int, data: Any) -> web.Response:
    # Built from bytes with an explicit header so aiohttp appends no charset.
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )


@dataclass
class Upload:
    index: int
    filename: str
    data: bytes
    content_type: str | None


@dataclass
class Call:
    """One parsed REST request."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any = None
    uploads: list[Upload] = field(default_factory=list)


@dataclass(frozen=True)
class Reply:
    """A handler result with a status other than 200."""

    status: int
    body: Any = None


Handler = Callable[[Call], Awaitable[Any]]
NO_CONTENT = Reply(204)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")


# ------------------------------------------------------------------- message limits


class FormErrors:
    """Collects Discord's nested ``errors`` object for a 50035 Invalid Form Body."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def raise_if_any(self) -> None:
        if self.tree:
            raise ApiError(400, 50035, "Invalid Form Body", self.tree)


def _too_long(errors: FormErrors, path: tuple[str | int, ...], value: Any, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def validate_message_body(body: dict[str, Any]) -> None:
    """Discord's documented limits for content, embeds and components."""
    errors = FormErrors()
    _too_long(errors, ("content",), body.get("content"), 2000)
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        errors.add(("embeds",), "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        path: tuple[str | int, ...] = ("embeds", i)
        _too_long(errors, (*path, "title"), embed.get("title"), 256)
        _too_long(errors, (*path, "description"), embed.get("description"), 4096)
        _too_long(errors, (*path, "footer", "text"), (embed.get("footer") or {}).get("text"), 2048)
        _too_long(errors, (*path, "author", "name"), (embed.get("author") or {}).get("name"), 256)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.add((*path, "fields"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                if not str(f.get(key) or "").strip():
                    errors.add(
                        (*path, "fields", j, key), "BASE_TYPE_REQUIRED", "This field is required"
                    )
                _too_long(errors, (*path, "fields", j, key), f.get(key), limit)
        total += sum(
            len(str(x or ""))
            for x in (
                embed.get("title"),
                embed.get("description"),
                (embed.get("footer") or {}).get("text"),
                (embed.get("author") or {}).get("name"),
                *(str(f.get("name", "")) + str(f.get("value", "")) for f in fields),
            )
        )
    if total > 6000:
        errors.add(
            ("embeds",), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )
    _validate_components(errors, body)
    errors.raise_if_any()


def _validate_components(errors: FormErrors, body: dict[str, Any]) -> None:
    components = body.get("components") or []
    v2 = bool((body.get("flags") or 0) & IS_COMPONENTS_V2)
    if v2:
        if body.get("content") or body.get("embeds"):
            errors.add(
                ("content",),
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used with components v2",
            )
        if sum(1 for _ in walk_components(components)) > 40:
            errors.add(("components",), "BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer in length.")
    else:
        if len(components) > 5:
            errors.add(("components",), "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for i, row in enumerate(components):
            if row.get("type") != 1:
                errors.add(
                    ("components", i),
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "Top-level components must be action rows without components v2",
                )
            elif len(row.get("components") or []) > 5:
                errors.add(
                    ("components", i, "components"),
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 5 or fewer in length.",
                )
    seen: set[str] = set()
    for c in walk_components(components):
        custom_id = c.get("custom_id")
        if c.get("type") == 2:
            _too_long(errors, ("components", "label"), c.get("label"), 80)
            link = c.get("style") in (5, 6)
            if link and custom_id:
                errors.add(
                    ("components", "custom_id"),
                    "COMPONENT_CUSTOM_ID_NOT_ALLOWED",
                    "Link buttons cannot have a custom_id",
                )
            if not link and not custom_id:
                errors.add(
                    ("components", "custom_id"), "BASE_TYPE_REQUIRED", "This field is required"
                )
        if custom_id is not None:
            _too_long(errors, ("components", "custom_id"), custom_id, 100)
            if custom_id in seen:
                errors.add(
                    ("components", "custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)


# ------------------------------------------------------------------------ the API


class RestApi:
    def __init__(self, emulator: DiscordEmulator) -> None:
        self.e = emulator
        self.routes: list[Route] = []
        add = self._add
        add("GET", "/gateway", self.get_gateway, auth=False)
        add("GET", "/gateway/bot", self.get_gateway_bot)
        add("GET", "/users/@me", self.get_me)
        add("GET", "/users/{user_id}", self.get_user)
        add("GET", "/oauth2/applications/@me", self.get_application)
        add("GET", "/applications/@me", self.get_application)
        for prefix in ("/applications/{app_id}", "/applications/{app_id}/guilds/{guild_id}"):
            add("GET", prefix + "/commands", self.list_commands)
            add("PUT", prefix + "/commands", self.overwrite_commands)
            add("POST", prefix + "/commands", self.upsert_command)
            add("GET", prefix + "/commands/{command_id}", self.get_command)
            add("PATCH", prefix + "/commands/{command_id}", self.edit_command)
            add("DELETE", prefix + "/commands/{command_id}", self.delete_command)
        add("GET", "/guilds/{guild_id}", self.get_guild)
        add("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        add("GET", "/guilds/{guild_id}/roles", self.get_guild_roles)
        add("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)
        add("GET", "/channels/{channel_id}", self.get_channel)
        add("POST", "/channels/{channel_id}/typing", self.typing)
        add("GET", "/channels/{channel_id}/messages", self.list_messages)
        add("POST", "/channels/{channel_id}/messages", self.create_message)
        add("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        add("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message)
        add("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message)
        reaction = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
        add("PUT", reaction, self.add_reaction)
        add("DELETE", reaction, self.remove_reaction)
        # Interaction callbacks and webhooks authenticate by token in the URL, not header.
        add("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, auth=False)
        add("POST", "/webhooks/{app_id}/{token}", self.execute_webhook, auth=False)
        hook_message = "/webhooks/{app_id}/{token}/messages/{message_id}"
        add("GET", hook_message, self.get_webhook_message, auth=False)
        add("PATCH", hook_message, self.edit_webhook_message, auth=False)
        add("DELETE", hook_message, self.delete_webhook_message, auth=False)

    def _add(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        self.routes.append(Route(method, _compile(template), handler, auth))

    # ------------------------------------------------------------- plumbing

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :] or "/"
        call = Call(request.method, path, {}, dict(request.query))
        try:
            route = self._match(call)
            if route.auth and request.headers.get("Authorization") != f"Bot {self.e.token}":
                raise ApiError(401, 0, "401: Unauthorized")
            await self._read_body(request, call)
            result = await route.handler(call)
            if not isinstance(result, Reply):
                result = Reply(200, result)
            response = (
                web.Response(status=204)
                if result.status == 204
                else json_response(result.status, result.body)
            )
        except ApiError as exc:
            response = json_response(exc.status, exc.body())
        self.e.record_request(
            RequestRecord(time.monotonic(), call.method, call.path, response.status, call.body)
        )
        return response

    def _match(self, call: Call) -> Route:
        path_matched = False
        for route in self.routes:
            m = route.pattern.match(call.path)
            if m is None:
                continue
            path_matched = True
            if route.method == call.method:
                call.params = m.groupdict()
                return route
        if path_matched:
            raise ApiError(405, 0, "405: Method Not Allowed")
        self.e.unhandled.append(f"{call.method} {call.path}")
        log.warning("emulator has no route for %s %s", call.method, call.path)
        raise ApiError(404, 0, "404: Not Found")

    async def _read_body(self, request: web.Request, call: Call) -> None:
        if not request.can_read_body:
            return
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                name = part.name or ""
                if name == "payload_json":
                    call.body = json.loads(await part.text())
                elif m := re.fullmatch(r"files\[(\d+)\]", name):
                    data = await part.read()
                    if len(data) > MAX_UPLOAD:
                        raise ApiError(413, 40005, "Request entity too large")
                    call.uploads.append(
                        Upload(
                            int(m.group(1)),
                            part.filename or f"file{m.group(1)}",
                            bytes(data),
                            part.headers.get("Content-Type"),
                        )
                    )
        else:
            raw = await request.read()
            if raw:
                try:
                    call.body = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(400, 50109, "The request body contains invalid JSON.") from exc

    def _int(self, call: Call, name: str) -> int:
        try:
            return int(call.params[name])
        except ValueError as exc:
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                {
                    name: {
                        "_errors": [
                            {"code": "NUMBER_TYPE_COERCE", "message": "Value is not snowflake."}
                        ]
                    }
                },
            ) from exc

    # --------------------------------------------------------- bot + gateway

    async def get_gateway(self, call: Call) -> Any:
        return {"url": self.e.gateway_url}

    async def get_gateway_bot(self, call: Call) -> Any:
        return {
            "url": self.e.gateway_url,
            "shards": self.e.shard_count,
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000,
                "reset_after": 0,
                "max_concurrency": 1,
            },
        }

    async def get_me(self, call: Call) -> Any:
        return {**self.e.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0}

    async def get_user(self, call: Call) -> Any:
        user = self.e.users.get(self._int(call, "user_id"))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return user.payload()

    async def get_application(self, call: Call) -> Any:
        owner = self.e.owner_user
        return {
            "id": str(self.e.application_id),
            "name": self.e.bot_user.username,
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": owner.payload(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 0,
            "bot": self.e.bot_user.payload(),
            "summary": "",
            "interactions_endpoint_url": None,
        }

    # ------------------------------------------------------ application commands

    def _command_scope(self, call: Call) -> int | None:
        if self._int(call, "app_id") != self.e.application_id:
            raise ApiError(
                403, 20012, "You are not authorized to perform this action on this application"
            )
        if "guild_id" in call.params:
            guild_id = self._int(call, "guild_id")
            if guild_id not in self.e.guilds:
                raise ApiError(404, 10004, "Unknown Guild")
            return guild_id
        return None

    async def list_commands(self, call: Call) -> Any:
        return list(self.e.commands_in(self._command_scope(call)).values())

    async def overwrite_commands(self, call: Call) -> Any:
        scope = self._command_scope(call)
        if not isinstance(call.body, list):
            raise ApiError(400, 50035, "Invalid Form Body")
        return self.e.replace_commands(scope, call.body)

    async def upsert_command(self, call: Call) -> Any:
        scope = self._command_scope(call)
        payload, created = self.e.upsert_command(scope, dict(call.body or {}))
        return Reply(201 if created else 200, payload)

    def _find_command(self, call: Call) -> tuple[int | None, dict[str, Any]]:
        scope = self._command_scope(call)
        command = self.e.commands_in(scope).get(self._int(call, "command_id"))
        if command is None:
            raise ApiError(404, 10063, "Unknown application command")
        return scope, command

    async def get_command(self, call: Call) -> Any:
        return self._find_command(call)[1]

    async def edit_command(self, call: Call) -> Any:
        scope, command = self._find_command(call)
        return self.e.upsert_command(scope, {**command, **(call.body or {})})[0]

    async def delete_command(self, call: Call) -> Any:
        scope, command = self._find_command(call)
        self.e.commands_in(scope).pop(int(command["id"]), None)
        self.e.notify()
        return NO_CONTENT

    # ------------------------------------------------------------ guilds

    def _guild(self, call: Call) -> Any:
        guild = self.e.guilds.get(self._int(call, "guild_id"))
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    async def get_guild(self, call: Call) -> Any:
        payload = self.e.guild_create_payload(self._guild(call).id)
        for key in ("channels", "members", "threads", "presences", "voice_states"):
            payload.pop(key, None)
        return payload

    async def get_guild_channels(self, call: Call) -> Any:
        guild = self._guild(call)
        return [c.payload() for c in guild.channels.values() if not c.deleted]

    async def get_guild_roles(self, call: Call) -> Any:
        return [r.payload() for r in self._guild(call).roles.values()]

    async def get_member(self, call: Call) -> Any:
        member = self._guild(call).members.get(self._int(call, "user_id"))
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return member.payload()

    # ---------------------------------------------------------- channels

    def _channel(self, call: Call) -> Any:
        channel = self.e.channel(self._int(call, "channel_id"))
        if channel is None or channel.deleted:
            raise unknown_channel()
        return channel

    def _channel_message(self, call: Call) -> Message:
        channel = self._channel(call)
        message = self.e.messages.get(self._int(call, "message_id"))
        # Ephemeral messages exist only for their interaction's webhook, not the channel API.
        if (
            message is None
            or message.deleted
            or message.channel_id != channel.id
            or (message.ephemeral)
        ):
            raise unknown_message()
        return message

    async def get_channel(self, call: Call) -> Any:
        return self._channel(call).payload()

    async def typing(self, call: Call) -> Any:
        self.e.typing.append((time.monotonic(), self._channel(call).id))
        return NO_CONTENT

    async def list_messages(self, call: Call) -> Any:
        channel = self._channel(call)
        limit = min(int(call.query.get("limit", 50)), 100)
        before = int(call.query.get("before", 1 << 63))
        after = int(call.query.get("after", 0))
        found = [
            m
            for m in self.e.channel_messages(channel.id)
            if not m.ephemeral and after < m.id < before
        ]
        found.sort(key=lambda m: m.id, reverse=True)  # newest first, as Discord returns them
        return [self.e.message_payload(m) for m in found[:limit]]

    async def create_message(self, call: Call) -> Any:
        channel = self._channel(call)
        if not self.e.bot_can_send(channel.id):
            raise ApiError(403, 50013, "Missing Permissions")
        message = self._new_message(
            channel.id, self._message_body(call), call.uploads, flags_mask=SEND_FLAGS
        )
        await self.e.announce_created(message)
        return self.e.message_payload(message)

    async def get_message(self, call: Call) -> Any:
        return self.e.message_payload(self._channel_message(call))

    async def edit_message(self, call: Call) -> Any:
        message = self._channel_message(call)
        if message.author_id != self.e.bot_user.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._edit(message, self._message_body(call), call.uploads)
        await self.e.announce_edited(message)
        return self.e.message_payload(message)

    async def delete_message(self, call: Call) -> Any:
        await self.e.remove_message(self._channel_message(call))
        return NO_CONTENT

    async def add_reaction(self, call: Call) -> Any:
        message = self._channel_message(call)
        message.reactions.append(call.params["emoji"])
        self.e.notify()
        return NO_CONTENT

    async def remove_reaction(self, call: Call) -> Any:
        message = self._channel_message(call)
        if call.params["emoji"] in message.reactions:
            message.reactions.remove(call.params["emoji"])
        self.e.notify()
        return NO_CONTENT

    # ------------------------------------------------------- message bodies

    @staticmethod
    def _message_body(call: Call) -> dict[str, Any]:
        return call.body if isinstance(call.body, dict) else {}

    def _new_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        uploads: list[Upload],
        *,
        flags_mask: int,
        interaction: InteractionRecord | None = None,
    ) -> Message:
        message = self.e.new_message(
            channel_id, author_id=self.e.bot_user.id, interaction=interaction
        )
        message.flags = int(body.get("flags") or 0) & flags_mask
        self._fill(message, body, uploads)
        self.e.store_message(message, body)
        return message

    def _edit(self, message: Message, body: dict[str, Any], uploads: list[Upload]) -> None:
        self._fill(message, body, uploads)
        if body.get("flags") is not None:
            message.flags = (message.flags & ~EDIT_FLAGS) | (int(body["flags"]) & EDIT_FLAGS)
        message.flags &= ~LOADING  # the first edit fills a deferred "thinking" message
        self.e.record_edit(message, body)

    def _fill(self, message: Message, body: dict[str, Any], uploads: list[Upload]) -> None:
        """Validate, then apply the body; on any error the message is left as it was."""
        validate_message_body(body)
        content = str(body["content"] or "") if "content" in body else message.content
        if "embeds" in body:
            embeds = list(body["embeds"] or [])
        elif "embed" in body:  # legacy single-embed field
            embeds = [body["embed"]] if body["embed"] else []
        else:
            embeds = message.embeds
        components = list(body["components"] or []) if "components" in body else message.components
        attachments = self._attachments(message.attachments, body, uploads)
        if not (content.strip() or embeds or components or attachments):
            raise ApiError(400, 50006, "Cannot send an empty message")
        message.content, message.embeds = content, embeds
        message.components, message.attachments = components, attachments
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]

    def _attachments(
        self, current: list[Attachment], body: dict[str, Any], uploads: list[Upload]
    ) -> list[Attachment]:
        kept = list(current)
        described: dict[int, str | None] = {}
        if body.get("attachments") is not None:
            # The list names what stays: existing attachment ids, or indexes of new files.
            existing = {a.id: a for a in current}
            kept = []
            for item in body["attachments"]:
                item_id = int(item["id"])
                if item_id in existing:
                    kept.append(existing[item_id])
                else:
                    described[item_id] = item.get("description")
        for upload in sorted(uploads, key=lambda u: u.index):
            kept.append(
                Attachment(
                    self.e.snowflakes.next(),
                    upload.filename,
                    upload.data,
                    upload.content_type,
                    described.get(upload.index),
                )
            )
        return kept

    # -------------------------------------------------------- interactions

    async def callback(self, call: Call) -> Any:
        record = self.e.interaction_by_id(self._int(call, "interaction_id"))
        if record is None or record.token != call.params["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if record.responded:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        deadline = self.e.callback_deadline
        if deadline is not None and time.monotonic() - record.created_at > deadline:
            # Discord forgets an interaction nobody acknowledged within 3 seconds.
            raise ApiError(404, 10062, "Unknown interaction")
        body = call.body if isinstance(call.body, dict) else {}
        try:
            kind = CallbackType(int(body.get("type", 0)))
        except ValueError as exc:
            raise ApiError(400, 50035, "Invalid Form Body") from exc
        source = record.source_message
        if kind not in ALLOWED_CALLBACKS[record.kind] or (
            kind in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE)
            and source is None
        ):
            raise ApiError(400, 40043, f"Interaction callback type {int(kind)} is not valid here")
        data = dict(body.get("data") or {})
        if kind is CallbackType.MODAL and not (
            data.get("custom_id") and data.get("title") and data.get("components")
        ):
            raise ApiError(400, 50035, "Invalid Form Body")
        if kind is CallbackType.AUTOCOMPLETE_RESULT and len(data.get("choices") or []) > 25:
            raise ApiError(400, 50035, "Invalid Form Body")

        channel = self.e.channel(record.channel_id)
        if kind in (CallbackType.CHANNEL_MESSAGE, CallbackType.DEFERRED_CHANNEL_MESSAGE) and (
            channel is None or channel.deleted
        ):
            raise unknown_channel()

        message: Message | None = None
        if kind is CallbackType.CHANNEL_MESSAGE:
            message = self._new_message(
                record.channel_id,
                data,
                call.uploads,
                flags_mask=SEND_FLAGS | EPHEMERAL,
                interaction=record,
            )
        elif kind is CallbackType.DEFERRED_CHANNEL_MESSAGE:
            message = self.e.new_message(
                record.channel_id, author_id=self.e.bot_user.id, interaction=record
            )
            message.flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            self.e.store_message(message, data)
        elif kind is CallbackType.UPDATE_MESSAGE:
            assert source is not None
            self._edit(source, data, call.uploads)
            message = source
        elif kind is CallbackType.DEFERRED_UPDATE_MESSAGE:
            message = source

        record.callback_type = kind
        record.callback_at = time.monotonic()
        record.callback_data = data
        if message is not None:
            record.original = message
        self.e.notify()
        if kind in (CallbackType.CHANNEL_MESSAGE, CallbackType.DEFERRED_CHANNEL_MESSAGE):
            assert message is not None
            await self.e.announce_created(message)
        elif kind is CallbackType.UPDATE_MESSAGE:
            assert message is not None
            await self.e.announce_edited(message)

        if call.query.get("with_response") not in ("1", "true", "True"):
            return NO_CONTENT
        response: dict[str, Any] = {
            "interaction": {"id": str(record.id), "type": int(record.kind)},
        }
        if message is not None and kind is not CallbackType.DEFERRED_UPDATE_MESSAGE:
            response["interaction"].update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
        if message is not None and kind in (
            CallbackType.CHANNEL_MESSAGE,
            CallbackType.UPDATE_MESSAGE,
        ):
            response["resource"] = {"type": int(kind), "message": self.e.message_payload(message)}
        return response

    def _webhook_interaction(self, call: Call) -> InteractionRecord:
        record = self.e.interaction_by_token(call.params["token"])
        if record is None or self._int(call, "app_id") != self.e.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        if not record.token_valid:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if not record.responded:
            # The webhook only exists once the interaction has been acknowledged.
            raise ApiError(404, 10015, "Unknown Webhook")
        return record

    def _webhook_message(self, call: Call) -> tuple[InteractionRecord, Message]:
        record = self._webhook_interaction(call)
        message_id = call.params["message_id"]
        if message_id == "@original":
            message = record.original
        else:
            wanted = self._int(call, "message_id")
            message = next(
                (
                    m
                    for m in [record.original, *record.followups]
                    if m is not None and m.id == wanted
                ),
                None,
            )
        channel = self.e.channel(record.channel_id)
        if channel is None or channel.deleted:
            raise unknown_channel()
        if message is None or message.deleted:
            raise unknown_message()
        return record, message

    async def execute_webhook(self, call: Call) -> Any:
        record = self._webhook_interaction(call)
        channel = self.e.channel(record.channel_id)
        if channel is None or channel.deleted:
            raise unknown_channel()
        original = record.original
        if (
            original is not None
            and original.loading
            and record.callback_type is CallbackType.DEFERRED_CHANNEL_MESSAGE
        ):
            # Discord's quirk: after a deferral, the first followup *fills in* the
            # "thinking" message, inheriting its (non-)ephemerality.
            self._edit(original, self._message_body(call), call.uploads)
            message = original
            await self.e.announce_edited(message)
        else:
            message = self._new_message(
                record.channel_id,
                self._message_body(call),
                call.uploads,
                flags_mask=SEND_FLAGS | EPHEMERAL,
                interaction=record,
            )
            await self.e.announce_created(message)
        record.followups.append(message)
        self.e.notify()
        if call.query.get("wait") in ("1", "true", "True"):
            return self.e.message_payload(message)
        return NO_CONTENT

    async def get_webhook_message(self, call: Call) -> Any:
        return self.e.message_payload(self._webhook_message(call)[1])

    async def edit_webhook_message(self, call: Call) -> Any:
        _, message = self._webhook_message(call)
        self._edit(message, self._message_body(call), call.uploads)
        await self.e.announce_edited(message)
        return self.e.message_payload(message)

    async def delete_webhook_message(self, call: Call) -> Any:
        _, message = self._webhook_message(call)
        await self.e.remove_message(message)
        return NO_CONTENT
