"""The connector's output as the benchmark reads it, and the user_events keys that a saved output
and the emulator's ground truth hold (to compare what a sync delivered with what the emulator
serves)."""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import urllib.request
from array import array
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

RECORD_LINE = b'{"type":"RECORD"'
STATE_LINE = b'{"type":"STATE"'
TRACE_LINE = b'{"type":"TRACE"'
READ_BLOCK = 1 << 20


class OutputTally:
    """What the benchmark needs of a connector's stdout, read a block at a time.

    This process shares the 2 cores with the connector and the emulator, so it does next to
    nothing per record: it counts record lines with bytes.count over whole blocks (a message is one
    line, so a record starts right after a newline), keeps the first and last record line for their
    emitted_at, and decodes only STATE lines (one per stream every 200 profiles), keeping the last
    of each stream and counting their messages and bytes. `output_file`, if given, receives the
    whole output.
    """

    def __init__(self, output_file: Optional[Path] = None):
        self.records = 0
        self.first_record: Optional[bytes] = None
        self.last_record: Optional[bytes] = None
        self.last_states: dict[str, dict] = {}
        # Per stream: STATE messages, the bytes of all their lines and of the last one, each line
        # as the connector wrote it to stdout without its newline (what the platform receives).
        self.state_messages: dict[str, int] = {}
        self.state_line_bytes: dict[str, int] = {}
        self.last_state_line_bytes: dict[str, int] = {}
        self.errors: list[str] = []  # the messages of TRACE errors, to say why a read failed
        self._sink = open(output_file, "wb") if output_file else None
        self._carry = b""

    def feed(self, block: bytes) -> None:
        """Takes the next block of output; a line cut at the block's end waits for the rest."""
        text = self._carry + block
        end = text.rfind(b"\n") + 1
        self._carry = text[end:]
        if end:
            self._complete_lines(text[:end])

    def close(self) -> None:
        if self._carry:
            self._complete_lines(self._carry + b"\n")
            self._carry = b""
        if self._sink:
            self._sink.close()

    def state_bytes(self, stream: str) -> int:
        """The size of a stream's last stream_state, as compact JSON; 0 if it sent none."""
        state = self.last_states.get(stream)
        return len(json.dumps(state["stream"]["stream_state"], separators=(",", ":"))) if state else 0

    def _complete_lines(self, lines: bytes) -> None:
        if self._sink:
            self._sink.write(lines)
        # Every message starts a line: look for the marker after a newline (and at the very start).
        framed = b"\n" + lines
        count = framed.count(b"\n" + RECORD_LINE)
        if count:
            self.records += count
            if self.first_record is None:
                self.first_record = _line_at(framed, framed.find(b"\n" + RECORD_LINE) + 1)
            self.last_record = _line_at(framed, framed.rfind(b"\n" + RECORD_LINE) + 1)
        at = framed.find(b"\n" + STATE_LINE)
        while at != -1:
            line = _line_at(framed, at + 1)
            state = json.loads(line)["state"]
            if "stream" in state:
                stream = state["stream"]["stream_descriptor"]["name"]
                self.last_states[stream] = state
                self.state_messages[stream] = self.state_messages.get(stream, 0) + 1
                self.state_line_bytes[stream] = self.state_line_bytes.get(stream, 0) + len(line)
                self.last_state_line_bytes[stream] = len(line)
            at = framed.find(b"\n" + STATE_LINE, at + 1)
        at = framed.find(b"\n" + TRACE_LINE)
        while at != -1:
            trace = json.loads(_line_at(framed, at + 1))["trace"]
            if trace.get("type") == "ERROR":
                self.errors.append(trace["error"].get("message") or "")
            at = framed.find(b"\n" + TRACE_LINE, at + 1)


def _line_at(text: bytes, start: int) -> bytes:
    return text[start : text.index(b"\n", start)]


def emitted_at(record_line: bytes) -> int:
    """A RECORD line's emitted_at (ms), without decoding the record."""
    return int(record_line[record_line.rindex(b'"emitted_at":') + 13 :].split(b"}", 1)[0].split(b",", 1)[0])


def event_keys(output_file: Path) -> set[tuple[str, str]]:
    """The primary keys (external_id, messageId) of the user_events records in a saved output."""
    keys = set()
    with open(output_file, "rb") as lines:
        for line in lines:
            if line.startswith(RECORD_LINE):
                record = json.loads(line)["record"]
                if record["stream"] == "user_events":
                    keys.add((record["data"]["external_id"], record["data"]["messageId"]))
    return keys


def event_digest(external_id: str, message_id: str) -> int:
    """A user_events primary key as 64 bits: 8 bytes a key where a tuple of two strings takes ~200
    (at 100,000 profiles the keys are compared by the hundred thousand)."""
    return int.from_bytes(hashlib.blake2b(f"{external_id}\0{message_id}".encode(), digest_size=8).digest(), "big")


def event_digests(output_file: Path) -> np.ndarray:
    """The digests of the user_events records' primary keys in a saved output, one per record (a
    record delivered twice is there twice), unsorted."""
    digests = array("Q")
    with open(output_file, "rb") as lines:
        for line in lines:
            if line.startswith(RECORD_LINE):
                record = json.loads(line)["record"]
                if record["stream"] == "user_events":
                    digests.append(event_digest(record["data"]["external_id"], record["data"]["messageId"]))
    return np.frombuffer(digests, dtype=np.uint64)


USERS_ARRAY = '"users":['  # where the ground truth's users start (after its space_id, now and seed)


def ground_truth_users(chunks: Iterable[bytes]) -> Iterator[dict]:
    """The users of an emulator's ground truth one at a time, from its JSON text in pieces of any
    size: at 100,000 users it is ~425 MB, which json.load would hold whole, and several times that
    as Python objects. Each user is decoded once the text holds the whole of it."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    text, at, in_users = "", 0, False
    for chunk in itertools.chain(chunks, [b""]):
        finished = not chunk
        text, at = text[at:] + utf8.decode(chunk, final=finished), 0
        if not in_users:
            start = text.find(USERS_ARRAY)
            if start == -1:
                continue
            at, in_users = start + len(USERS_ARRAY), True
        while True:
            while at < len(text) and text[at] in ", \n\r\t":
                at += 1
            if text.startswith("]", at):
                return
            try:
                user, at = decoder.raw_decode(text, at)
            except json.JSONDecodeError:
                break  # the user goes on in the next piece
            yield user
        if finished:
            raise ValueError(f"the ground truth ends inside its users: {text[at : at + 80]!r}")
    raise ValueError("the ground truth has no users")


def ground_truth_event_digests(emulator: Any) -> np.ndarray:
    """The digests of the user_events keys the emulator serves now (its ground truth, read as it
    streams), each user named as read_all_users reads it: `segment_id:<id>`."""
    digests = array("Q")
    with urllib.request.urlopen(f"{emulator.url}/_emulator/ground-truth", timeout=600) as answer:
        for user in ground_truth_users(iter(lambda: answer.read(READ_BLOCK), b"")):
            external_id = f"segment_id:{user['segment_id']}"
            digests.extend(event_digest(external_id, event.get("messageId") or event.get("message_id")) for event in user["events"])
    return np.frombuffer(digests, dtype=np.uint64)
