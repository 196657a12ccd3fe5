"""A loopback TCP proxy in front of the broker that can drop connections mid-flight.

It reads Kafka frames in both directions. When told to, it swallows the response to a
Produce request (the broker has written the batch, the client never hears so) and closes
both sockets, so the client reconnects and retries the same batch: what an idempotent
producer sees when a network path dies.
"""

from __future__ import annotations

import socket
import struct
import threading

PRODUCE = 0


def _read_frame(sock: socket.socket) -> bytes | None:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">i", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(min(1 << 16, n - len(body)))
        if not chunk:
            return None
        body += chunk
    return head + body


class ChaosProxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.drops_left = 0          # produce responses still to swallow
        self.drop_every = 1          # swallow every Nth produce response while drops_left > 0
        self.produce_responses = 0
        self.dropped = 0
        self.dropped_event = threading.Event()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_produce_responses(self, count: int, every: int = 1) -> None:
        with self.lock:
            self.drops_left = count
            self.drop_every = every
            self.dropped_event.clear()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        produce_ids: set[int] = set()
        ids_lock = threading.Lock()

        def close_both():
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

        def requests():
            try:
                while True:
                    frame = _read_frame(client)
                    if frame is None:
                        break
                    api, _, corr = struct.unpack(">hhi", frame[4:12])
                    if api == PRODUCE:
                        with ids_lock:
                            produce_ids.add(corr)
                    upstream.sendall(frame)
            except OSError:
                pass
            close_both()

        threading.Thread(target=requests, daemon=True).start()
        try:
            while True:
                frame = _read_frame(upstream)
                if frame is None:
                    break
                (corr,) = struct.unpack(">i", frame[4:8])
                with ids_lock:
                    is_produce = corr in produce_ids
                    produce_ids.discard(corr)
                if is_produce:
                    with self.lock:
                        self.produce_responses += 1
                        drop = self.drops_left > 0 and self.produce_responses % self.drop_every == 0
                        if drop:
                            self.drops_left -= 1
                            self.dropped += 1
                    if drop:
                        self.dropped_event.set()
                        break  # swallow the response and cut the connection
                client.sendall(frame)
        except OSError:
            pass
        close_both()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


class RpcBlackhole:
    """A TCP proxy in front of one broker's RPC listener that can silently drop traffic.

    `drop_all` swallows every byte in both directions (the broker is cut off from everyone);
    `drop_from` swallows what connections from the given source IPs send and what is sent back
    to them (brokers make their RPC connections from their listener's IP, so a proxy can tell
    who calls). Connections stay open: a dropped link looks like a dead network, not a refusal.
    """

    def __init__(self, listen_ip: str, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((listen_ip, 0))
        self.listener.listen(64)
        self.addr = f"{listen_ip}:{self.listener.getsockname()[1]}"
        self.drop_all = False
        self.drop_from: set[str] = set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _dropped(self, source: str) -> bool:
        return self.drop_all or source in self.drop_from

    def _accept(self):
        while not self.closed:
            try:
                client, (source, _) = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                client.close()
                continue
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b, source), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, source: str):
        try:
            while True:
                chunk = src.recv(1 << 16)
                if not chunk:
                    break
                if not self._dropped(source):
                    dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.listener.close()
