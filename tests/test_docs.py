"""The reference pages generated from the code (scripts/docs): current, and `scripts/docs --check` says when not."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from conftest import ROOT
from monitor.config.models import MonitorConfig
from monitor.config.schema import field_description

SCRIPT = ROOT / "scripts" / "docs"


def load_script():
    loader = importlib.machinery.SourceFileLoader("scripts_docs", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


DOCS = load_script()


@pytest.mark.parametrize("page", sorted(DOCS.PAGES))
def test_each_generated_page_is_current(page: str) -> None:
    assert (ROOT / page).read_text(encoding="utf-8") == DOCS.PAGES[page](), f"{page} is stale: run scripts/docs"


def test_check_exits_zero_when_current_and_one_naming_a_stale_page(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    for page in DOCS.PAGES:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / page, tmp_path / page)
    with (tmp_path / "docs" / "metrics.md").open("a", encoding="utf-8") as f:
        f.write("| `sse_hand_written_total` | counter | | drifted |\n")
    (tmp_path / "docs" / "cli.md").unlink()
    assert DOCS.stale_pages(tmp_path) == ["docs/metrics.md", "docs/cli.md"]


def models(model: type[BaseModel] = MonitorConfig) -> typing.Iterator[type[BaseModel]]:
    yield model
    for tp in typing.get_type_hints(model, include_extras=True).values():
        for inner in DOCS._models_in(tp):
            yield from models(inner)


def test_every_configuration_key_has_a_description_in_the_code() -> None:
    missing = sorted({f"{model.__name__}.{name}" for model in models() for name in model.model_fields
                      if not field_description(model, name)})
    assert missing == [], "add Field(description=...) in monitor/config/models.py"


def test_the_pages_hold_what_a_user_looks_up() -> None:
    configuration = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "| `idle_timeout` | duration | `90s` | the longest silence (not a byte) tolerated mid-stream |" in configuration
    assert "| `name` | name | required |" in configuration
    metrics = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert "| `sse_probe_runs_total` | counter | `target`, (`region`), `outcome`, `reason` |" in metrics
    alerts = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    assert "| [SSEProbeTTFTHigh](runbook/SSEProbeTTFTHigh.md) | critical | 90s |" in alerts
    assert "## sse-monitor config-schema" in (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
