"""Names, defaults, patterns and the wording of what each kind of value is expected to be."""

from __future__ import annotations

import re

from monitor.dialects import DIALECTS as _DIALECT_CLASSES

ENV_PREFIX = "SSE_MONITOR_"
ENV_NESTED_DELIMITER = "__"

DIALECTS = tuple(_DIALECT_CLASSES)
GENERIC_DIALECT = "generic"
GENERIC_ONLY_FIELDS = ("heartbeat_events", "terminal_event", "terminal_data", "error_event")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
RESERVED_LABELS = ("alertname", "target", "severity")  # set by sse-monitor on every alert
COMPUTED_HEADERS = ("content-length", "transfer-encoding")  # the HTTP client sets these from the body

DEFAULT_INTERVAL = 60.0
DEFAULT_DIALECT = "openai-chat"
# Streams open at once. Measured with the real process on one core (bench/process.py, 20 events/s a stream): 200 streams
# take ~35 % of the core and ~70 MB, ~630 saturate it. 400 leaves headroom for scrapes and faster streams; the cap
# bounds CPU and memory, never timing precision (kernel stamps), and runs that wait for it are counted.
DEFAULT_MAX_CONCURRENT = 400
DEFAULT_HISTORY = 100  # runs kept per target for the pages and /api/v1/targets/NAME/history
DEFAULT_RETENTION = 7 * 86400.0  # runs older than this are deleted from the history
DEFAULT_DATA_DIR = "data"  # where the history file goes when storage.path is not set (--data-dir, SSE_MONITOR_DATA_DIR)
DATA_DIR_ENV = "SSE_MONITOR_DATA_DIR"
HISTORY_FILE = "sse-monitor.db"
DEFAULT_MAX_CONCURRENT_PROBES = 50  # /probe runs at once: Prometheus scrapes them on its own schedule
DEFAULT_JITTER = 5.0
DEFAULT_LISTEN = "0.0.0.0:9108"
DEFAULT_RESEND_INTERVAL = 60.0
DEFAULT_ALERTMANAGER_TIMEOUT = 10.0
DEFAULT_CHAIN_CHECK_INTERVAL = 86400.0  # a chain check holds ~17 connections for minutes: daily is plenty

TARGET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")

DURATION_EXPECTED = "expected a duration such as 30s, 5m, 1h or a number of seconds"
URL_EXPECTED = "expected an http or https URL with a host"
LISTEN_EXPECTED = "expected HOST:PORT such as 0.0.0.0:9108, localhost:9108 or [::]:9108"
SIZE_EXPECTED = "expected a size in bytes such as 1048576, 64KiB or 1MiB"
NAME_EXPECTED = "expected a name of 1 to 64 letters, digits and _ . : - starting with a letter or digit"
