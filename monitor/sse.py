"""Server-Sent Events decoding by the WHATWG EventSource rules: bytes in, events and comments out, no I/O."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

DEFAULT_MAX_EVENT_CHARS = 1024 * 1024


@dataclass(slots=True, frozen=True)
class Event:
    """A dispatched event. `id` is the stream's last event ID at dispatch time ("" when none was set)."""

    type: str
    data: str
    id: str = ""
    retry: int | None = None


@dataclass(slots=True, frozen=True)
class Comment:
    """A line starting with ':' — a heartbeat. Never dispatched as an event."""

    text: str


class EventTooLarge(Exception):
    """A line or an event grew past the decoder's limit."""


class SSEDecoder:
    """Incremental decoder. Feed it the body in any chunking; it yields the same events.

    Memory is bounded: a line or an event's data longer than `max_event_chars` raises EventTooLarge.
    """

    def __init__(self, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS) -> None:
        self.max_event_chars = max_event_chars
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True  # a BOM is only stripped at the very start of the stream
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to that line end
        self._partial: list[str] = []  # pieces of the current, unfinished line
        self._partial_len = 0
        self._data: list[str] = []
        self._data_len = 0
        self._event_type = ""
        self._in_event = False  # a field line was seen since the last blank line
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event | Comment]:
        """Decode one chunk of the body; return what it completed, in order."""
        return self._feed_text(self._utf8.decode(chunk))

    def close(self) -> bool:
        """End of stream. Returns True when an unfinished event (or line) was discarded — a sign of an early end."""
        self._feed_text(self._utf8.decode(b"", final=True))
        unfinished = self._in_event or self._partial_len > 0
        self._partial.clear()
        self._partial_len = 0
        self._reset_event()
        return unfinished

    # -- internals ------------------------------------------------------------------------------------------------

    def _feed_text(self, text: str) -> list[Event | Comment]:
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        if "\r" in text:
            self._skip_lf = text.endswith("\r")
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text:
            self._grow_partial(text)
            return []
        lines = text.split("\n")
        rest = lines.pop()
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = "".join(self._partial)
            self._partial.clear()
            self._partial_len = 0
        out: list[Event | Comment] = []
        for line in lines:
            self._line(line, out)
        if rest:
            self._grow_partial(rest)
        return out

    def _grow_partial(self, text: str) -> None:
        if not text:
            return
        self._partial.append(text)
        self._partial_len += len(text)
        if self._partial_len > self.max_event_chars:
            raise EventTooLarge(f"a line grew past {self.max_event_chars} characters without ending")

    def _line(self, line: str, out: list[Event | Comment]) -> None:
        if not line:
            self._dispatch(out)
            return
        if len(line) > self.max_event_chars:
            raise EventTooLarge(f"a line grew past {self.max_event_chars} characters")
        if line[0] == ":":
            out.append(Comment(line[1:]))
            return
        self._in_event = True
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_len += len(value) + 1
            if self._data_len > self.max_event_chars:
                raise EventTooLarge(f"an event's data grew past {self.max_event_chars} characters")
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        # any other field name is ignored

    def _dispatch(self, out: list[Event | Comment]) -> None:
        if self._data:
            out.append(Event(self._event_type or "message", "\n".join(self._data), self.last_event_id, self.retry))
        self._reset_event()

    def _reset_event(self) -> None:
        self._data.clear()
        self._data_len = 0
        self._event_type = ""
        self._in_event = False
