"""A tiny hand-written Kafka wire client, only for sending the broker what no
real client would send (garbage, lies, unsupported versions).

Nothing here is used to check normal behaviour: that is what the real clients
(kcat, confluent-kafka, kafka-python) are for.
"""

from __future__ import annotations

import socket
import struct
import time

# --------------------------------------------------------------------------- CRC32C


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --------------------------------------------------------------------------- encoding


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str) -> bytes:
    b = s.encode()
    return uvarint(len(b) + 1) + b


def request_header(api_key: int, api_version: int, correlation_id: int,
                   client_id: str = "e2e-raw", flexible: bool = False) -> bytes:
    """Request header v1 (or v2, with an empty tagged-field section, when flexible)."""
    h = i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)
    if flexible:
        h += uvarint(0)
    return h


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def record_batch(values: list[bytes], base_offset: int = 0,
                 records_count: int | None = None, corrupt_crc: bool = False,
                 producer_id: int = -1, producer_epoch: int = 0,
                 base_sequence: int = -1) -> bytes:
    """A magic-v2 RecordBatch of uncompressed records with null keys.

    records_count lets a test lie about how many records follow; producer_id /
    producer_epoch / base_sequence make it an idempotent producer's batch.
    """
    records = b""
    for delta, value in enumerate(values):
        body = (i8(0) + varint(0) + varint(delta) + varint(-1)
                + varint(len(value)) + value + varint(0))
        records += varint(len(body)) + body
    now = int(time.time() * 1000)
    count = len(values) if records_count is None else records_count
    after_crc = (i16(0) + i32(max(len(values) - 1, 0)) + i64(now) + i64(now)
                 + i64(producer_id) + i16(producer_epoch if producer_id >= 0 else -1)
                 + i32(base_sequence) + i32(count) + records)
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    after_length = i32(0) + i8(2) + struct.pack(">I", crc) + after_crc
    return i64(base_offset) + i32(len(after_length)) + after_length


def produce_request(correlation_id: int, version: int, topic: str, partition: int,
                    batch: bytes, acks: int = -1) -> bytes:
    """Produce v3..v8 (the non-flexible versions)."""
    assert 3 <= version <= 8, version
    body = (string(None) + i16(acks) + i32(10_000)
            + i32(1) + string(topic)
            + i32(1) + i32(partition) + i32(len(batch)) + batch)
    return frame(request_header(0, version, correlation_id) + body)


def parse_produce_error(resp: bytes) -> int:
    """Error code of the single partition in a v3..v8 Produce response body."""
    pos = 0
    (n_topics,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    assert n_topics == 1, n_topics
    (name_len,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + name_len
    (n_parts,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    assert n_parts == 1, n_parts
    _index, error_code = struct.unpack_from(">ih", resp, pos)
    return error_code


def parse_api_versions_v0(body: bytes) -> tuple[int, dict[int, tuple[int, int]]]:
    """ApiVersions response v0 body: error_code, [api_key, min, max]."""
    error_code, n = struct.unpack_from(">hi", body, 0)
    apis = {}
    pos = 6
    for _ in range(max(n, 0)):
        key, lo, hi = struct.unpack_from(">hhh", body, pos)
        pos += 6
        apis[key] = (lo, hi)
    return error_code, apis


# --------------------------------------------------------------------------- connection


class Conn:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)

    @classmethod
    def to(cls, bootstrap: str, timeout: float = 10.0) -> "Conn":
        host, port = bootstrap.rsplit(":", 1)
        return cls(host, int(port), timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_response(self) -> tuple[int, bytes]:
        """One response frame: (correlation_id, rest of the frame after it).

        Assumes response header v0 (no tagged fields), which is what every
        non-flexible response and every ApiVersions response uses.
        """
        (size,) = struct.unpack(">i", self._recv_exact(4))
        assert 4 <= size < 64 << 20, f"response frame size {size}"
        payload = self._recv_exact(size)
        (corr,) = struct.unpack_from(">i", payload, 0)
        return corr, payload[4:]

    def closed_by_peer(self, within: float) -> bool:
        """True when the broker closes (or resets) the connection within `within`
        seconds, reading and discarding anything it sends before that."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def api_versions(conn: Conn, correlation_id: int = 1) -> dict[int, tuple[int, int]]:
    """Sends ApiVersions v0 and returns {api_key: (min, max)}."""
    conn.send(frame(request_header(18, 0, correlation_id)))
    corr, body = conn.recv_response()
    assert corr == correlation_id
    error_code, apis = parse_api_versions_v0(body)
    assert error_code == 0, error_code
    return apis


def produce_raw(conn: Conn, topic: str, partition: int, batch: bytes,
                correlation_id: int = 7, acks: int = -1) -> int:
    """One Produce (highest non-flexible version the broker takes) of `batch`;
    returns the partition's error code."""
    apis = api_versions(conn)
    lo, hi = apis[0]
    version = min(hi, 8)
    assert version >= max(lo, 3), f"broker serves Produce v{lo}-v{hi}"
    conn.send(produce_request(correlation_id, version, topic, partition, batch, acks=acks))
    corr, body = conn.recv_response()
    assert corr == correlation_id
    return parse_produce_error(body)


def outcome(conn: Conn, within: float = 10.0) -> tuple[str, bytes | None]:
    """What the broker did with what was just sent: ("closed", None),
    ("response", frame payload) or ("nothing", None) when it neither answered
    nor closed within `within` seconds."""
    conn.sock.settimeout(within)
    try:
        (size,) = struct.unpack(">i", conn._recv_exact(4))
        if not 4 <= size < 64 << 20:
            return ("bad-frame", None)
        return ("response", conn._recv_exact(size))
    except socket.timeout:
        return ("nothing", None)
    except OSError:  # ConnectionError: closed or reset
        return ("closed", None)


def init_producer_id(conn: Conn, correlation_id: int = 3) -> int:
    """InitProducerId v0 without a transactional id; returns the producer id (epoch 0)."""
    body = string(None) + i32(60_000)
    conn.send(frame(request_header(22, 0, correlation_id) + body))
    corr, resp = conn.recv_response()
    assert corr == correlation_id
    _throttle, error_code, producer_id, epoch = struct.unpack_from(">ihqh", resp, 0)
    assert error_code == 0, error_code
    assert epoch == 0
    return producer_id


def _read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def describe_cluster_controller(conn: Conn, correlation_id: int = 5) -> int:
    """DescribeCluster v0's controller_id: the controller leader the broker knows, -1 if none."""
    body = i8(0) + uvarint(0)  # include_cluster_authorized_operations=false, no tagged fields
    conn.send(frame(request_header(60, 0, correlation_id, flexible=True) + body))
    corr, resp = conn.recv_response()
    assert corr == correlation_id
    _, pos = _read_uvarint(resp, 0)  # response header v1: its tagged fields (none)
    _throttle, error_code = struct.unpack_from(">ih", resp, pos)
    assert error_code == 0, error_code
    pos += 6
    for _ in range(2):  # error_message (nullable), cluster_id
        n, pos = _read_uvarint(resp, pos)
        pos += max(n - 1, 0)
    (controller,) = struct.unpack_from(">i", resp, pos)
    return controller


def metadata_broker_ids(conn: Conn, correlation_id: int = 7) -> list[int]:
    """Metadata v0 for every topic: the node ids of the brokers the answer lists."""
    conn.send(frame(request_header(3, 0, correlation_id) + i32(0)))
    corr, resp = conn.recv_response()
    assert corr == correlation_id
    (n,), pos, ids = struct.unpack_from(">i", resp, 0), 4, []
    for _ in range(n):
        (node, host_len) = struct.unpack_from(">ih", resp, pos)
        ids.append(node)
        pos += 4 + 2 + host_len + 4  # node_id, host, port
    return sorted(ids)
