"""The resumption check: drop a stream after N token events, reconnect with the last event id, judge what came back."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

from .dialects import Request
from .result import (
    COMPLETED,
    RESUME_DUPLICATE,
    RESUME_GAP,
    RESUME_HEADER,
    RESUME_NO_IDS,
    RESUME_REFUSED,
    RESUME_RESTARTED,
    RESUME_RESUMED,
    WARNING_RESUME_NOT_CHECKED,
    ProbeResult,
    ResumeResult,
    ResumeSpec,
)

MAX_ID_SHOWN = 64  # characters of an event id quoted in a detail

_TRAILING_NUMBER = re.compile(r"(\d+)$")


class ResumeCheck:
    """The state of one probe's resumption check (spec.resume): part 1 is the first connection, part 2 the reconnect.

    The probe's recorder tells it the ids and token events each part carried; it says where to drop part 1 and, once
    the probe has ended, decides the outcome into its ResumeResult.
    """

    def __init__(self, spec: ResumeSpec, result: ResumeResult) -> None:
        self.spec, self.result = spec, result
        self.cut = False  # part 1 reached spec.after_events token events: we drop it and reconnect
        self._ids: set[str] = set()  # event ids seen before the drop

    def sent_as(self) -> str:
        """How the reconnect carried the last id seen, for details and the trace."""
        return _sent_as(self.spec, self.result.last_id)

    def on_id(self, event_id: str, part: int) -> None:
        resume = self.result
        if part == 1:
            if resume.first_id is None:
                resume.first_id = event_id
            if resume.outcome is None:  # until the drop (or until no_ids decided there is none)
                self._ids.add(event_id)
        elif resume.first_id_after is None:  # a new decoder: the first id it has is one the reconnect sent
            resume.first_id_after = event_id

    def is_drop_point(self, token_events: int) -> bool:
        """Part 1's token events reached spec.after_events with the check still open."""
        return self.result.outcome is None and token_events == self.spec.after_events

    def drop(self, last_id: str, token_events: int) -> bool:
        """The token event after which a client's connection dies. With an event id, drop it here (True: stop
        reading, run_probe reconnects); without one there is nothing to resume from: read on to the end."""
        resume, n = self.result, token_events
        resume.events_before = n
        if last_id:
            resume.last_id = last_id
            self.cut = True
            return True
        resume.outcome = RESUME_NO_IDS
        resume.detail = (f"the first {_events(n)} carried no event id (no id: field): a client that loses the "
                         f"connection has nothing to resume from, so it was not dropped and was read to its end")
        return False

    def on_reconnect_token(self, now: float) -> None:
        """A token event of the reconnect, `now` on the probe's time axis."""
        resume = self.result
        resume.events_after += 1
        if resume.ttft_seconds is None:
            resume.ttft_seconds = now - resume.reconnect_seconds

    def finish(self, r: ProbeResult, part: int, part_items: int) -> str | None:
        """The check's outcome, once the probe has ended in `r` on `part` with `part_items` events and comments in
        that part. Returns a warning for the probe's result when nothing else would say the check never happened."""
        res, after = self.result, self.spec.after_events
        if part == 1:
            if res.outcome is None:  # never got to the drop
                res.events_before = r.token_events
                how = "ended properly" if r.outcome == COMPLETED else f"ended ({r.outcome}, {r.reason})"
                res.detail = (f"not checked: the stream {how} after {_events(r.token_events)}, before the "
                              f"{after} after which the connection is dropped and resumed")
                if r.outcome == COMPLETED:  # nothing else says that the check never happens
                    return WARNING_RESUME_NOT_CHECKED
            return None
        sent = self.sent_as()
        if r.outcome != COMPLETED and r.detail:
            r.detail = f"after the reconnect ({sent}): {r.detail}"
        if res.first_id_after is not None:
            res.outcome, res.detail = _compare_ids(res.first_id, res.last_id, res.first_id_after, self._ids)
        elif part_items == 0 and r.outcome != COMPLETED:
            res.outcome = RESUME_REFUSED
            why = f"HTTP {res.status_code}" if r.reason == "http_status" else r.reason.replace("_", " ")
            res.detail = f"the reconnect with {sent} got no stream ({why})"
        elif res.events_after:
            res.outcome = RESUME_NO_IDS
            res.detail = (f"the stream resumed after id {_q(res.last_id)} carried {_events(res.events_after)} but "
                          f"no event id: where it continued cannot be checked")
        elif r.outcome == COMPLETED:
            res.outcome = RESUME_RESUMED
            res.detail = (f"resumed after id {_q(res.last_id)} ({sent}) and ended properly with no further token "
                          f"event: id {_q(res.last_id)} was the last")
        else:
            res.outcome = RESUME_REFUSED
            res.detail = (f"the reconnect with {sent} got a stream that ended ({r.reason}) before any event "
                          f"after id {_q(res.last_id)}")
        return None


def resume_request(request: Request, resume: ResumeSpec, last_id: str) -> Request:
    """The reconnect: the same method, body and headers, with the last event id seen in a Last-Event-ID header and/or
    in the query parameter `resume.query_param` (replacing one of that name)."""
    headers = dict(request.headers)
    url = request.url
    if resume.header:
        headers = {k: v for k, v in headers.items() if k.lower() != RESUME_HEADER.lower()}
        headers[RESUME_HEADER] = last_id
    if resume.query_param:
        parts = urlsplit(url)
        name = quote(resume.query_param, safe="")
        kept = [p for p in parts.query.split("&") if p and p.split("=", 1)[0] != name]
        query = "&".join([*kept, f"{name}={quote(last_id, safe='')}"])
        url = urlunsplit(parts._replace(query=query))
    return Request(request.method, url, headers, request.content)


def _sent_as(resume: ResumeSpec, last_id: str | None) -> str:
    """How the reconnect carried the id, for details: 'Last-Event-ID: 17 and resume=17'."""
    shown = _shown(last_id or "")
    ways = ([f"{RESUME_HEADER}: {shown}"] if resume.header else []) + (
        [f"{resume.query_param}={shown}"] if resume.query_param else [])
    return " and ".join(ways)


def _shown(event_id: str) -> str:
    return event_id if len(event_id) <= MAX_ID_SHOWN else event_id[:MAX_ID_SHOWN - 3] + "..."


def _q(event_id: str | None) -> str:
    return f'"{_shown(event_id or "")}"'


def _events(n: int) -> str:
    return f"{n} token event" + ("" if n == 1 else "s")


def _number(event_id: str) -> int | None:
    """The integer an id ends in ("17", "chunk-17"), or None: ids are opaque strings, most servers number them."""
    m = _TRAILING_NUMBER.search(event_id)
    return int(m.group(1)) if m else None


def _compare_ids(first: str | None, last: str, after: str, seen: set[str]) -> tuple[str, str]:
    """(outcome, detail) of a resumption from what came first after the reconnect. `first` and `last` are the first
    and last ids of the first connection, `seen` all its ids. Numbered ids (both ending in an integer) are compared as
    numbers; others can only be told apart as seen before or not."""
    a, l_ = _q(after), _q(last)
    n_after, n_last = _number(after), _number(last)
    n_first = _number(first) if first is not None else None
    if n_after is not None and n_last is not None:
        if n_after == n_last + 1:
            return RESUME_RESUMED, f"resumed right after id {l_}: the next id was {a}"
        if n_after > n_last + 1:
            skipped = n_after - n_last - 1
            return RESUME_GAP, (f"the resumed stream began with id {a} after the last id seen, {l_}: "
                                f"{skipped} event{'s' if skipped != 1 else ''} skipped")
        restarted = after == first or (n_first is not None and n_after == n_first)
    else:
        if after not in seen:
            return RESUME_RESUMED, (f"resumed after id {l_} with id {a}, not seen before; the ids are not numbered, "
                                    f"so a gap cannot be checked")
        restarted = after == first
    if restarted and first != last:
        return RESUME_RESTARTED, (f"the resumed stream started over: its first id {a} is the first connection's "
                                  f"first id, not the one after {l_}")
    again = "the last id seen" if after == last else f"from before the last id seen, {l_}"
    return RESUME_DUPLICATE, f"the resumed stream began with id {a} again ({again}): events were sent twice"
