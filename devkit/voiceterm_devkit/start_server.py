"""A small `startBotAndConnect` endpoint for tests: POST /start returns a WebSocket URL and a fresh token.

It answers the way pipecat's development runner and Pipecat Cloud do: ``{"wsUrl", "token", "sessionId"}``
plus an extra key, issuing each token from a `TokenStore` (single use; a `FaultProxy` in front of the bot
checks them). It can demand ``Authorization: Bearer <key>`` (HTTP 401 otherwise), and, like the runner
started with ``-t <transport>`` (pipecat/runner/run.py, ``/start``), refuse a body asking for another
transport with HTTP 400 ``{"detail": "Transport 'x' is not allowed. ..."}``. It records every call.
HTTP/1.1 is parsed by h11 (the library httpx's own client side uses); runs on trio.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from voiceterm_devkit.netfaults import TokenStore


@dataclass
class StartCall:
    """One request the endpoint received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class StartEndpointServer:
    """POST /start → 200 ``{"wsUrl": ws_url, "token": <new>, "sessionId": <uuid>, "extra": ...}``.

    `ws_url` is what clients should connect to (the gate in front of the bot). `api_key`, when set, must
    come as a Bearer token. `fail_next` makes the next calls answer that many HTTP 503s first.
    `issue_tokens=False` answers ``"token": null``; `url_key` picks ``wsUrl`` or ``ws_url``. `transport`, when
    set, is the only transport the body may ask for (the runner's default when it asks for none is
    "webrtc"). `ws_url` may be an http(s) URL, as the seed example of pipecat-client-web passes.
    """

    ws_url: str
    tokens: TokenStore = field(default_factory=TokenStore)
    api_key: str | None = None
    url_key: str = "wsUrl"
    issue_tokens: bool = True
    fail_next: int = 0
    transport: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    calls: list[StartCall] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/start"

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            with trio.move_on_after(10):
                while True:
                    request, body = await self._read_request(conn, stream)
                    if request is None:
                        return
                    status, payload = self._respond(request, body)
                    data = json.dumps(payload).encode()
                    headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
                    await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
                    await stream.send_all(conn.send(h11.Data(data=data)))
                    await stream.send_all(conn.send(h11.EndOfMessage()))
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    @staticmethod
    async def _read_request(conn: h11.Connection, stream: trio.SocketStream):
        request = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    def _respond(self, request: h11.Request, raw_body: bytes) -> tuple[int, Any]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        method = request.method.decode()
        path = request.target.decode("latin-1")
        status, payload = self._decide(method, path, headers, body)
        self.calls.append(StartCall(method, path, headers, body, status))
        return status, payload

    def _decide(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        if method != "POST" or path.split("?", maxsplit=1)[0] != "/start":
            return 404, {"detail": "not found"}
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"detail": "missing or wrong API key"}
        transport = body.get("transport") if isinstance(body, dict) else None
        if transport is None:
            transport = self.transport or "webrtc"
        if self.transport is not None and transport != self.transport:
            return 400, {
                "detail": f"Transport '{transport}' is not allowed. Server is configured for "
                f"'{self.transport}' only (-t {self.transport})."
            }
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, {"detail": "try again"}
        token = self.tokens.issue() if self.issue_tokens else None
        return 200, {
            self.url_key: self.ws_url,
            "token": token,
            "sessionId": str(uuid.uuid4()),
            "fileUploadUrl": "/files",  # an extra key clients must tolerate
        }
