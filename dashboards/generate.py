"""Builds sse-monitor's Grafana dashboards from code; the JSON files beside this script are its committed output.

    python dashboards/generate.py          rewrite dashboards/*.json
    python dashboards/generate.py --check  exit 1 if a committed file differs from what this script builds

Every query here reads only metrics that monitor/metrics.py exports (tests/test_dashboards.py proves it).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # run as a script: make the project importable from a plain checkout too
    sys.path.insert(0, str(HERE.parent))

from dashboards.overview import overview
from dashboards.panels import FAST_BURN, OVERVIEW_UID, SLOW_BURN, TARGET_UID  # noqa: F401 - the burn factors: tests
from dashboards.target import target

# The generated JSON depends on the SDK's defaults: the committed files are built with exactly this release
# (its Grafana 11.6 schema). Other releases (the versions carry an epoch, so ">=" would pick older schemas) differ.
SDK_VERSION = "1769699379!11.6.0"

FILES = {OVERVIEW_UID: HERE / "sse-monitor-overview.json", TARGET_UID: HERE / "sse-monitor-target.json"}


def build(builder: Builder) -> dm.Dashboard:
    """The dashboard model, with panel ids numbered in order."""
    model = builder.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return model


def render(builder: Builder) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build(builder)) + "\n"


def rendered() -> dict[Path, str]:
    """Each dashboard file and the text this script writes into it."""
    return {FILES[OVERVIEW_UID]: render(overview()), FILES[TARGET_UID]: render(target())}


def _panel_queries(panels: list[dm.Panel | dm.RowPanel]) -> list[tuple[str, str]]:
    out = []
    for panel in panels:
        out += _panel_queries(getattr(panel, "panels", None) or [])
        for q in getattr(panel, "targets", None) or []:
            out.append((panel.title or "", q.expr))
    return out


def all_queries(values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query in both dashboards, annotations included, with Grafana's variables replaced.

    `values` maps a variable name to a regex (default ".+" for target and job); every matcher on a variable
    becomes a regex matcher on it. $__rate_interval and $__interval become 1m, $__range 1h.
    """
    values = {"target": ".+", "job": ".+", **(values or {})}
    out = []
    for builder in (overview(), target()):
        model = build(builder)
        out += _panel_queries(model.panels or [])
        for annotation in (model.annotations.list_val if model.annotations else None) or []:
            if annotation.expr:
                out.append((f"annotation: {annotation.name}", annotation.expr))
    return [(title, substitute(expr, values)) for title, expr in out]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's variables in one expression: `values` for the dashboard's own, fixed windows for the rest."""
    for name, value in values.items():
        expr = re.sub(rf'(\w+)\s*=~?\s*"\$\{{?{name}\}}?"', lambda m, value=value: f'{m.group(1)}=~"{value}"', expr)
    for name, value in (("__rate_interval", "1m"), ("__interval", "1m"), ("__range", "1h")):
        expr = re.sub(rf"\$\{{?{name}\}}?", value, expr)
    return expr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard differs from the generated one")
    args = parser.parse_args(argv)
    installed = metadata.version("grafana-foundation-sdk")
    if installed != SDK_VERSION:
        print(f"grafana-foundation-sdk {installed} is installed; these dashboards are built with {SDK_VERSION}:\n"
              f"  pip install 'grafana-foundation-sdk=={SDK_VERSION}'", file=sys.stderr)
        return 2
    stale = []
    for path, text in rendered().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
