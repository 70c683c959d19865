"""A loopback OpenAI-compatible chat-completions server for remote-worker tests.

It streams the way vLLM and llama.cpp do: a role chunk, one content chunk per "token",
a finish chunk, then ``data: [DONE]``. Like ``FakeStepBackend`` it writes the words of
the last message, one per token (``"a b c"`` → ``"a "``, ``"b "``, ``"c"``), ending with
``stop``, or ``length`` at ``max_tokens``.

Tests queue ``Fault``s for the next requests (an error status with ``Retry-After``, a
connection dropped after n chunks), slow it down, and read what it recorded: every
request body and header, how many streams ran at once, and who hung up early.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Fault:
    status: int | None = None  # answer this status instead of streaming
    retry_after: str | None = None
    drop_after: int | None = None  # close the connection after this many content chunks


@dataclass(frozen=True)
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic()

    @property
    def content(self) -> str:
        return str(self.body["messages"][-1]["content"])


@dataclass
class FakeOpenAIServer:
    api_key: str | None = None  # when set, other bearers get 401
    chunk_delay_s: float = 0.0  # before each content chunk
    first_chunk_delay_s: float = 0.0  # after the headers, before the role chunk
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    completed: int = 0
    disconnects: int = 0  # clients that hung up mid-stream
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        # handler_cancellation: a client hanging up cancels the handler at once, as
        # vLLM aborts generation on disconnect.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(body, dict(request.headers), time.monotonic()))
        bearer = request.headers.get("Authorization")
        if self.api_key is not None and bearer != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided")
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return _error(fault.status, "scripted failure", headers)

        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await self._stream(request, body, fault)
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            self.disconnected.set()
            raise
        finally:
            self.active -= 1

    async def _stream(
        self, request: web.Request, body: dict[str, Any], fault: Fault | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = str(body["messages"][-1]["content"]).split()
        tokens = [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]
        max_tokens = int(body.get("max_tokens") or len(tokens))
        await asyncio.sleep(self.first_chunk_delay_s)

        async def send(delta: dict[str, str], finish: str | None = None) -> None:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        for i, token in enumerate(tokens[:max_tokens]):
            if fault is not None and fault.drop_after == i:
                assert request.transport is not None
                request.transport.close()  # mid-stream, no terminating chunk
                return response
            await asyncio.sleep(self.chunk_delay_s)
            await send({"content": token})
        await send({}, "length" if len(tokens) > max_tokens else "stop")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.completed += 1
        return response


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "fake", "code": status}},
        status=status,
        headers=headers,
    )
