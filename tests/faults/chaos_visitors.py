"""Visitors for the chaos test (tests/faults/test_chaos.py): each a conversation of a few turns at a person's
pace, over a socket it opens again whenever it drops, catching up as the chat page does. On a new socket it
reads the conversation over HTTP (the socket only sends what ends after it connected); a turn it sent whose
frame died with the server (no `turn.accepted`, and no turn with its `client_id` in the record) or that was
refused with a sentence is sent again, once the record says it was never taken; a turn with no answer for 6 s
is looked up over HTTP. Everything a person would have seen is kept: error frames, close codes, when each
turn's outcome arrived and by which path."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from websockets.exceptions import ConnectionClosed, WebSocketException

from tests.integration.clients import Api, Socket

ENDED = ("done", "failed")


@dataclass
class Ask:
    """One turn as its visitor lived it."""

    client_id: str
    sent: float = 0.0
    turn: int | None = None
    outcome: str | None = None  # "results" or "failed"
    via: str = ""  # "socket", or "http" (the page's catch-up)
    at: float | None = None
    sends: int = 0  # turn.create frames sent for it (more than one: the server never took the earlier)


@dataclass
class Visitor:
    number: int
    base_url: str
    ws_url: str
    slug: str
    images: list[int]
    asks: list[Ask] = field(default_factory=list)
    seen: list[tuple[float, str]] = field(default_factory=list)  # (when, what the person saw)
    connects: list[float] = field(default_factory=list)  # when each socket opened
    duplicated: int = 0  # an outcome a second time on one socket
    api: Api | None = None
    conversation: dict[str, Any] = field(default_factory=dict)
    ws: Socket | None = None
    on_socket: Counter[tuple[int, int]] = field(default_factory=Counter)

    def run(self, turns: int, pace: tuple[float, float], give_up: float, stop: threading.Event) -> None:
        pauses = random.Random(self.number)
        time.sleep(pauses.uniform(0, pace[1]))  # people arrive spread out
        while self.api is None and not stop.is_set():
            try:
                self.api = Api(self.base_url)
                self.conversation = self.api.conversation(self.slug)
            except (requests.RequestException, AssertionError, ValueError) as exc:
                self.api = None
                self.saw(f"could not start: {type(exc).__name__}")
                time.sleep(1)
        for i in range(turns):
            if stop.is_set():
                return
            if i:
                self.idle(pauses.uniform(*pace))
            self.ask(Ask(f"v{self.number}-{i}"), give_up)
        if self.ws is not None:
            self.ws.close()

    def saw(self, what: str) -> None:
        self.seen.append((time.monotonic(), what))

    def frame(self, ask: Ask) -> dict[str, Any]:
        image = self.images[(self.number * 7919 + len(self.asks) * 31) % len(self.images)]
        text = f"make the circle red, visitor {self.number} turn {ask.client_id}"
        return {"type": "turn.create", "client_id": ask.client_id, "text": text, "reference": {"image": image}}

    def ask(self, ask: Ask, give_up: float) -> None:
        self.asks.append(ask)
        ask.sent = time.monotonic()
        must_send, verify, looked = True, False, time.monotonic()
        while ask.outcome is None and time.monotonic() - ask.sent < give_up:
            if self.ws is None:
                if not self.connect():
                    time.sleep(0.5)
                    continue
                verify = True  # what ended while the socket was away is only in the record
            if verify:
                unknown = self.catch_up(ask)
                if unknown is None:  # the record cannot be read yet: ask again in a moment
                    time.sleep(1.0)
                    continue
                must_send, verify, looked = unknown and must_send, False, time.monotonic()
                continue
            assert self.ws is not None
            if must_send and ask.turn is None:
                try:
                    self.ws.send(self.frame(ask))
                    ask.sends += 1
                    must_send = False
                except ConnectionClosed:
                    self.dropped(None)
                    must_send = True
                    continue
            try:
                got = self.ws.receive(1.0)
            except TimeoutError:
                if time.monotonic() - looked > 6:  # the page's look at a stalled turn (never a resend)
                    self.catch_up(ask)
                    looked = time.monotonic()
                continue
            except ConnectionClosed as exc:
                self.dropped(exc)
                must_send = ask.turn is None  # sent again once the record says it was never taken
                continue
            if got.get("type") == "error" and got.get("client_id") == ask.client_id:
                self.saw(f"error {got.get('code')}: {got.get('error')}")
                time.sleep(1.0)
                must_send, verify = True, True
            else:
                self.take(got, ask)

    def idle(self, seconds: float) -> None:
        """A person reading the results: the page keeps reading its socket meanwhile (so a close is seen when
        it happens, and a duplicate outcome is counted) and reconnects at once when it drops."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self.ws is None:
                if not self.connect():
                    time.sleep(min(0.5, left))
                continue
            try:
                self.take(self.ws.receive(min(1.0, left)), None)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                self.dropped(exc)

    def connect(self) -> bool:
        assert self.api is not None
        try:
            self.ws = self.api.socket(self.ws_url, self.conversation["ws"])
        except (OSError, WebSocketException, TimeoutError) as exc:  # refused, or the server died mid-handshake
            self.saw(f"could not connect: {type(exc).__name__}")
            return False
        self.on_socket = Counter()
        self.connects.append(time.monotonic())
        return True

    def dropped(self, exc: ConnectionClosed | None) -> None:
        code = exc.rcvd.code if exc is not None and exc.rcvd is not None else 1006
        self.saw(f"socket closed {code}")
        if self.ws is not None:
            with contextlib.suppress(Exception):  # already gone
                self.ws.close()
        self.ws = None

    def take(self, got: dict[str, Any], ask: Ask | None) -> None:
        kind = got.get("type")
        if ask is None:  # between turns: only duplicates and errors to count
            ask = Ask("")
        if kind == "turn.accepted" and got.get("client_id") == ask.client_id:
            ask.turn = int(got["turn"])
        elif kind in ("turn.results", "turn.failed"):
            key = (int(got["turn"]), int(got.get("offset", -1)) if kind == "turn.results" else -1)
            self.on_socket[key] += 1
            if self.on_socket[key] > 1:
                self.duplicated += 1
            if got["turn"] == ask.turn and ask.outcome is None and key[1] in (0, -1):
                ask.outcome, ask.via, ask.at = ("results" if key[1] == 0 else "failed"), "socket", time.monotonic()
                if kind == "turn.failed":
                    self.saw(f"turn.failed {got.get('code')}: {got.get('error')}")
        elif kind == "error":
            self.saw(f"error {got.get('code')}: {got.get('error')}")

    def catch_up(self, ask: Ask) -> bool | None:
        """Read the conversation over HTTP, as the page does after a reconnect or a stalled turn: adopt the turn
        with this ask's client_id, take its outcome if it ended. True when the server has no record of it (the
        frame should be sent again), None when the record cannot be read."""
        assert self.api is not None
        try:
            answer = self.api.request("GET", f"/api/conversations/{self.conversation['id']}")
        except requests.RequestException as exc:
            self.saw(f"HTTP failed: {type(exc).__name__}")
            return None
        if answer.status_code != 200:
            self.saw(f"HTTP {answer.status_code}")
            return None
        mine = [t for t in answer.json()["turns"] if t["client_id"] == ask.client_id]
        if not mine:
            return ask.turn is None
        ask.turn = mine[0]["id"]
        if mine[0]["status"] in ENDED and ask.outcome is None:
            ask.outcome = "results" if mine[0]["status"] == "done" else "failed"
            ask.via, ask.at = "http", time.monotonic()
        return False


def pending_at(visitors: list[Visitor], start: float, end: float) -> list[Ask]:
    """The turns waiting on the server at some moment of [start, end]: sent before `end`, not answered by `start`."""
    return [a for v in visitors for a in v.asks if a.sent <= end and (a.at is None or a.at >= start)]


def seen_between(visitors: list[Visitor], start: float, end: float) -> Counter[str]:
    """What people saw in [start, end], by kind (an error's code, a close code), counted."""
    kinds: Counter[str] = Counter()
    for v in visitors:
        for at, what in v.seen:
            if start <= at <= end:
                kinds[what.split(":")[0]] += 1
    return kinds
