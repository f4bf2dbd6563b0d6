"""Clients that talk to the live services the way a browser does: HTTP with the session cookie and CSRF
token, and a websocket carrying the same cookie and an allowed Origin."""

from __future__ import annotations

import json
import time
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect


class Api:
    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()
        self.csrf = self.http.get(base_url + "/api/csrf", timeout=10).json()["csrf_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"X-CSRFToken": self.csrf, "Referer": self.base + "/", **kwargs.pop("headers", {})}
        return self.http.request(method, self.base + path, headers=headers, timeout=60, **kwargs)

    def conversation(self, collection: str) -> dict[str, Any]:
        response = self.request("POST", "/api/conversations", json={"collection": collection})
        assert response.status_code == 201, response.text
        return response.json()

    def socket(self, ws_base: str, path: str) -> Socket:
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)
        # as a browser: it keeps reading whatever arrives (no receive-queue limit, so the server's keepalive
        # pings are answered even while a test has not read its answers yet) and sends no pings of its own
        conn = connect(
            ws_base + path,
            additional_headers={"Cookie": cookie},
            origin=self.base,
            open_timeout=10,
            max_queue=None,
            ping_interval=None,
        )
        return Socket(conn.__enter__())  # closed by Socket.close


class Socket:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    def send(self, message: dict[str, Any] | str) -> None:
        self.conn.send(message if isinstance(message, str) else json.dumps(message))

    def receive(self, timeout: float = 30) -> dict[str, Any]:
        return json.loads(self.conn.recv(timeout=timeout))

    def until(self, kind: str, turn: int | None = None, timeout: float = 60) -> dict[str, Any]:
        """The next frame of type `kind` (for `turn`); a turn.failed for that turn raises instead."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.receive(max(0.1, deadline - time.monotonic()))
            failed = frame["type"] == "turn.failed" and kind != "turn.failed"
            if failed and turn is not None and frame.get("turn") == turn:
                raise AssertionError(f"turn {turn} failed: {frame}")
            if frame["type"] == kind and (turn is None or frame.get("turn") == turn):
                return frame

    def turn(
        self,
        text: str,
        reference: dict[str, int] | None,
        parent: int | None = None,
        k: int = 24,
        mode: str = "combiner",
        **extra: Any,
    ) -> tuple[int, dict[str, Any]]:
        """Send a turn and wait for its results: (turn id, the turn.results frame)."""
        self.send(
            {
                "type": "turn.create",
                "client_id": f"c{time.monotonic_ns()}",
                "text": text,
                "reference": reference,
                "parent": parent,
                "mode": mode,
                "k": k,
                **extra,
            }
        )
        accepted = self.until("turn.accepted")
        return accepted["turn"], self.until("turn.results", accepted["turn"])

    def close(self) -> None:
        self.conn.close()
