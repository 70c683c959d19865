"""The emulator's gateway: one aiohttp websocket endpoint speaking Discord's gateway v10.

It does what an unmodified discord.py client needs: HELLO, heartbeats, IDENTIFY → READY
and one GUILD_CREATE per guild, RESUME with replay, member chunk requests, and the
``zlib-stream`` transport compression discord.py asks for by default.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from bot.playground.emulator import DiscordEmulator

log = logging.getLogger(__name__)

# Opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

# Close codes discord.py treats as fatal: it stops instead of reconnecting.
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_INVALID_SHARD = 4010

# Which intent each event needs; events not listed are always sent.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
EVENT_INTENTS = {
    "GUILD_CREATE": INTENT_GUILDS,
    "GUILD_DELETE": INTENT_GUILDS,
    "CHANNEL_CREATE": INTENT_GUILDS,
    "CHANNEL_UPDATE": INTENT_GUILDS,
    "CHANNEL_DELETE": INTENT_GUILDS,
    "GUILD_MEMBER_ADD": INTENT_GUILD_MEMBERS,
    "MESSAGE_CREATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_UPDATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_DELETE": INTENT_GUILD_MESSAGES,
}
REPLAY_LIMIT = 1000


@dataclass
class GatewaySession:
    """A logical session: it outlives one websocket so a RESUME can replay what was missed."""

    id: str
    shard_id: int
    shard_count: int
    intents: int
    seq: int = 0
    sent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REPLAY_LIMIT))
    connection: Connection | None = None

    def owns_guild(self, guild_id: int) -> bool:
        # Discord's sharding formula.
        return (guild_id >> 22) % self.shard_count == self.shard_id

    def wants(self, event: str) -> bool:
        needed = EVENT_INTENTS.get(event)
        return needed is None or bool(self.intents & needed)


class Connection:
    """One websocket; serialises sends because a zlib stream must stay in order."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self._zlib = zlib.compressobj() if compress else None
        self._lock = asyncio.Lock()

    @property
    def compressed(self) -> bool:
        return self._zlib is not None

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                return
            if self._zlib is None:
                await self.ws.send_str(text)
            else:
                # discord.py buffers until a Z_SYNC_FLUSH suffix, then inflates the stream.
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)


class Gateway:
    def __init__(
        self,
        emulator: DiscordEmulator,
        *,
        heartbeat_interval_ms: int,
        on_activity: Callable[[], None],
    ) -> None:
        self._emulator = emulator
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._on_activity = on_activity
        self.sessions: dict[str, GatewaySession] = {}
        self.identify_payloads: list[dict[str, Any]] = []
        self._connections: set[web.WebSocketResponse] = set()

    # ---------------------------------------------------------------- public

    @property
    def connected_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.connection is not None]

    async def dispatch(self, event: str, data: dict[str, Any], *, guild_id: int | None) -> int:
        """Send an event to every session that should see it; returns how many got it."""
        delivered = 0
        for session in list(self.sessions.values()):
            if guild_id is not None and not session.owns_guild(guild_id):
                continue
            if not session.wants(event):
                continue
            await self._send_dispatch(session, event, data)
            delivered += 1 if session.connection is not None else 0
        return delivered

    async def request_reconnect(self) -> None:
        """Ask every client to reconnect and RESUME (op 7), as Discord does during deploys."""
        for session in self.connected_sessions:
            assert session.connection is not None
            await session.connection.send({"op": RECONNECT, "d": None})

    async def close_all(self) -> None:
        for ws in list(self._connections):
            await ws.close(code=1001)

    # --------------------------------------------------------------- handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        # discord.py asks for compress=zlib-stream (zstd-stream when `zstandard` is
        # installed); zstd is answered with plain text frames, which it also accepts.
        conn = Connection(ws, compress=request.query.get("compress") == "zlib-stream")
        self._connections.add(ws)
        session: GatewaySession | None = None
        try:
            await conn.send(
                {
                    "op": HELLO,
                    "d": {"heartbeat_interval": self._heartbeat_interval_ms},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                op = payload.get("op")
                if op == HEARTBEAT:
                    await conn.send({"op": HEARTBEAT_ACK, "d": None})
                    continue
                self._on_activity()
                if op == IDENTIFY:
                    session = await self._identify(conn, payload.get("d") or {})
                elif op == RESUME:
                    session = await self._resume(conn, payload.get("d") or {})
                elif op == REQUEST_MEMBERS:
                    await self._request_members(conn, payload.get("d") or {})
                elif op in (PRESENCE, VOICE_STATE):
                    pass  # accepted and ignored, as far as the emulator is concerned
                else:
                    log.debug("emulator gateway ignoring op %s", op)
        finally:
            self._connections.discard(ws)
            if session is not None and session.connection is conn:
                session.connection = None
        return ws

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> GatewaySession | None:
        self.identify_payloads.append(data)
        if data.get("token") != self._emulator.token:
            await conn.ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return None
        shard_id, shard_count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < shard_count:
            await conn.ws.close(code=CLOSE_INVALID_SHARD, message=b"Invalid shard.")
            return None
        session = GatewaySession(
            id=secrets.token_hex(16),
            shard_id=shard_id,
            shard_count=shard_count,
            intents=int(data.get("intents", 0)),
            connection=conn,
        )
        self.sessions[session.id] = session
        guilds = [g for g in self._emulator.guilds.values() if session.owns_guild(g.id)]
        ready = {
            "v": 10,
            "user": {
                **self._emulator.bot_user.payload(),
                "verified": True,
                "mfa_enabled": False,
                "flags": 0,
            },
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self._emulator.gateway_url,
            "shard": [shard_id, shard_count],
            "application": {"id": str(self._emulator.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
        }
        await self._send_dispatch(session, "READY", ready)
        for guild in guilds:
            # GUILD_CREATE always goes out after READY, whatever the intents.
            await self._send_dispatch(
                session, "GUILD_CREATE", self._emulator.guild_create_payload(guild.id)
            )
        self._emulator.notify()
        return session

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self._emulator.token:
            # d=false: the session cannot be resumed, the client must IDENTIFY afresh.
            await conn.send({"op": INVALID_SESSION, "d": False})
            return None
        session.connection = conn
        last_seen = int(data.get("seq") or 0)
        for payload in list(session.sent):
            if payload["s"] > last_seen:
                await conn.send(payload)
        await self._send_dispatch(session, "RESUMED", {})
        self._emulator.notify()
        return session

    async def _request_members(self, conn: Connection, data: dict[str, Any]) -> None:
        guild = self._emulator.guilds.get(int(data.get("guild_id", 0)))
        members = [] if guild is None else list(guild.members.values())
        if user_ids := data.get("user_ids"):
            wanted = {int(u) for u in ([user_ids] if isinstance(user_ids, str | int) else user_ids)}
            members = [m for m in members if m.user.id in wanted]
        elif query := data.get("query"):
            members = [m for m in members if m.user.username.lower().startswith(query.lower())]
        if limit := data.get("limit"):
            members = members[:limit]
        chunk = {
            "guild_id": str(data.get("guild_id")),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        await conn.send({"op": DISPATCH, "t": "GUILD_MEMBERS_CHUNK", "s": None, "d": chunk})

    async def _send_dispatch(
        self, session: GatewaySession, event: str, data: dict[str, Any]
    ) -> None:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.sent.append(payload)
        self._on_activity()
        if session.connection is not None:
            await session.connection.send(payload)
