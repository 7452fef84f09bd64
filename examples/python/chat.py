#!/usr/bin/env python3
"""A tiny chat over p2pos, using p2pos_client (standard library only).

    python3 chat.py listen APPID            one JSON line per received message on stdout:
                                            {"from": PEER, "app": APPID, "data": TEXT}
    python3 chat.py send PEER APPID TEXT    exits 0 once the remote app acknowledged TEXT

The daemon is found through $P2POS_HOME (default ~/.p2pos). `listen` prints
{"ready": true, "session": ID, "app": APPID, "peerId": OURS} once it has registered, and acknowledges
each message only after its line has been written and flushed. Errors go to stderr as
"CODE: message", with exit status 1 (2 for bad usage).
"""
from __future__ import annotations

import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import p2pos_client as p2p  # noqa: E402

USAGE = "usage: chat.py listen APPID | chat.py send PEER APPID TEXT"

_out = threading.Lock()


def emit(obj: dict) -> None:
    """One JSON line on stdout, flushed, never interleaved with another thread's."""
    with _out:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def warn(text: str) -> None:
    with _out:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def serve(client: p2p.Client, channel_id: str) -> None:
    """Accepts one inbound channel and prints its messages until it ends."""
    try:
        with client.accept_channel(channel_id) as ch:
            for msg in ch:
                if msg.kind != p2p.KIND_MESSAGE:
                    # a byte stream (e.g. a file from `p2pos send-file`): not for a chat
                    ch.nack(msg, "E_APP_REJECTED", "this chat takes text messages only")
                    return
                emit({"from": ch.peer, "app": ch.app, "data": msg.data.decode("utf-8", "replace")})
                ch.ack(msg)  # after the line is out: the sender's ack means "printed"
    except p2p.P2posError as e:
        warn(f"{e.code}: channel {channel_id}: {e.message}")


def listen(app: str) -> int:
    client = p2p.Client.connect()
    with client.events() as session:
        client.register(session.id, app)
        emit({"ready": True, "session": session.id, "app": app, "peerId": client.peer_id})
        for event in session:
            if event.name == "channel.incoming" and event.data.get("app") == app:
                threading.Thread(target=serve, args=(client, str(event.data["channel"])), daemon=True).start()
            elif event.name == "session.closed":
                warn(f"{event.data.get('code', 'E_INTERNAL')}: the daemon closed the event session")
                return 1
    warn("E_DAEMON_NOT_RUNNING: the daemon ended the event session")
    return 1


def send(peer: str, app: str, text: str) -> int:
    client = p2p.Client.connect()
    with client.open_channel(peer, app) as ch:
        ch.send(text, timeout=60)
    return 0


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "listen":
            return listen(argv[1])
        if len(argv) == 4 and argv[0] == "send":
            return send(argv[1], argv[2], argv[3])
    except p2p.P2posError as e:
        warn(f"{e.code}: {e.message}")
        return 1
    except KeyboardInterrupt:
        return 130
    warn(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
