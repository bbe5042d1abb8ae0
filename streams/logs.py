"""Readable logs when the world fails: a client library that logs the same error a hundred times
a second. Imports no Faust, so the command line and the SDK use it too."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

REPEAT_WINDOW_S = 30.0


def message_template(record: logging.LogRecord) -> Hashable:
    """What makes two records "the same": the unformatted message, before its arguments."""
    return record.msg


class RepeatLimiter(logging.Filter):
    """Lets a warning or error through once per REPEAT_WINDOW_S per logger and message
    template, then says how many like it were held back: a broker outage makes the Kafka
    client log each failed reconnect, tens of lines a second, and the log must stay readable."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock=time.monotonic,
                 key: Callable[[logging.LogRecord], Hashable] = message_template) -> None:
        super().__init__()
        self._window_s, self._clock, self._key = window_s, clock, key
        self._seen: dict[tuple[str, Hashable], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = (record.name, self._key(record)), self._clock()
        first, held = self._seen.get(key, (None, 0))
        if first is not None and now - first < self._window_s:
            self._seen[key] = (first, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self._window_s:.0f} s)"
        return True


def limit_repeated_logs(limiter: logging.Filter) -> None:
    """Put `limiter` on every handler of the root logger (a filter on a logger would not see
    its children's records)."""
    for handler in logging.getLogger().handlers:
        if limiter not in handler.filters:
            handler.addFilter(limiter)
