"""load_config: read, override from the environment, expand ${VAR}, validate, apply defaults; and check_config,
the `sse-monitor check-config` command."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from .errors import ConfigError
from .estimate import estimate_lines
from .messages import _messages, _problem_from_pydantic
from .models import MonitorConfig
from .rules import _cross_field_problems
from .sources import _apply_by_index, _environment_overrides, _merge, _read_document


# ---- loading --------------------------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """Read, override from the environment, expand ${VAR}, validate and apply defaults. Raises ConfigError with
    every problem found."""
    environ = os.environ if environ is None else environ
    display = os.fspath(path)
    try:
        document = _read_document(Path(display).expanduser())
    except ValueError as err:
        raise ConfigError([f"{display}: {err}"]) from None

    problems = list(document.problems)
    overrides = _environment_overrides(environ)
    data = _merge(document.data, overrides.data)
    _apply_by_index(data, overrides)
    problems += overrides.problems

    config: MonitorConfig | None = None
    try:
        config = MonitorConfig.model_validate(data, context={"environ": environ})
    except ValidationError as err:
        problems += [_problem_from_pydantic(e) for e in err.errors(include_url=False)]
    problems += _cross_field_problems(data)

    if problems:
        raise ConfigError(_messages(display, problems, document, overrides))
    assert config is not None
    modules = {name: module.inherit(config.defaults) for name, module in config.modules.items()}
    targets = [
        (t.set_from(config.modules[t.module]) if t.module else t).inherit(config.defaults) for t in config.targets
    ]
    resolved = config.model_copy(update={"targets": targets, "modules": modules})
    resolved._source = Path(display)
    return resolved


def check_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
                 data_dir: str | None = None) -> int:
    """`sse-monitor check-config FILE`: print 'FILE: OK, N targets', what the targets will spend a day (see
    estimate.py) and where history goes, and return 0; or print every problem (stderr) and return 2."""
    try:
        config = load_config(path, environ)
    except ConfigError as err:
        for message in err.messages:
            print(message, file=sys.stderr)
        return 2
    count = len(config.targets)
    print(f"{os.fspath(path)}: OK, {count} target{'' if count == 1 else 's'}")
    for line in estimate_lines(config):
        print(line)
    where = config.storage.file(data_dir)
    print(f"history: the newest {config.server.history} runs per target, for at most "
          f"{_days_or_hours(config.storage.retention)}, "
          f"{'in memory only (storage.path: :memory:)' if where == ':memory:' else f'in {where}'}")
    return 0


def _days_or_hours(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:g} s"
