"""Data Docs: one GX Data Docs site per ``ds`` and run, and a hand-built index of every run's gates.

Layout under ``quality.docs_dir``: ``<ds>/<run_id>/`` (GX's site, its ``static/`` a link to the shared
``_static/``), ``<ds>/<run_id>/gates/<table>.json`` (the gate's summary) and ``index.html`` (every run's
gates, newest first, with their failures and warnings).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from dynamix_spark.quality.gx import _Gx
    from dynamix_spark.quality.results import GateResult


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _render_docs(g: _Gx, docs_dir: str, ds: str, run_id: str, keys: list) -> str:
    """GX Data Docs of this gate under ``<docs_dir>/<ds>/<run_id>/``; return that site's index URL.

    One site per run: GX's index builder deletes every page whose result is not in the context's
    validation results store, which for an ephemeral context holds this process's results only, so a
    site shared across runs would lose the earlier runs' pages.
    """
    path = os.path.abspath(os.path.join(docs_dir, ds, _safe(run_id)))
    with g.lock:
        if path not in g.sites:
            name = f"quality_docs_{len(g.sites)}"
            g.context.add_data_docs_site(site_name=name, site_config={
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": path},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })
            g.sites[path] = name
        urls = g.context.build_data_docs(site_names=[g.sites[path]], resource_identifiers=keys)
    _share_static(docs_dir, path)
    return urls[g.sites[path]]


def _share_static(docs_dir: str, site: str) -> None:
    """Point the site's ``static/`` (4 MB of GX fonts and images, copied into every site) at one shared copy."""
    shared = os.path.abspath(os.path.join(docs_dir, "_static"))
    static = os.path.join(site, "static")
    if os.path.islink(static) or not os.path.isdir(static):
        return
    if os.path.isdir(shared):
        shutil.rmtree(static)
    else:
        os.replace(static, shared)
    os.symlink(os.path.relpath(shared, site), static)


def _write_gate_summary(docs_dir: str, results: "Sequence[GateResult]") -> None:
    """``<run site>/gates/<table>.json`` per result and the top ``<docs_dir>/index.html`` listing every run's gates."""
    for result in results:
        site = os.path.join(docs_dir, result.ds, _safe(result.run_id))
        os.makedirs(os.path.join(site, "gates"), exist_ok=True)
        summary = {"table": result.table, "job": result.job, "passed": result.passed,
                   "critical_failures": [[c.expectation, c.observed] for c in result.critical_failures],
                   "warnings": [[c.expectation, c.observed] for c in result.warnings], "checks": len(result.checks)}
        with open(os.path.join(site, "gates", f"{_safe(result.table)}.json"), "w") as f:
            json.dump(summary, f, sort_keys=True)
    rows = []
    for ds_dir in sorted(os.listdir(docs_dir), reverse=True):
        runs = os.path.join(docs_dir, ds_dir)
        if ds_dir.startswith("_") or not os.path.isdir(runs):
            continue
        for run in sorted(os.listdir(runs), key=lambda r: os.path.getmtime(os.path.join(runs, r)), reverse=True):
            gates = os.path.join(runs, run, "gates")
            if not os.path.isdir(gates):
                continue
            for name in sorted(os.listdir(gates)):
                with open(os.path.join(gates, name)) as f:
                    g = json.load(f)
                state = "passed" if g["passed"] else "FAILED"
                notes = "; ".join(f"{e}: {o}" for e, o in g["critical_failures"] + g["warnings"])
                rows.append(f"<tr><td>{html.escape(ds_dir)}</td><td><a href='{html.escape(ds_dir)}/{html.escape(run)}/index.html'>"
                            f"{html.escape(run)}</a></td><td>{html.escape(g['table'])}</td><td class='{state}'>{state}</td>"
                            f"<td>{g['checks']}</td><td>{html.escape(notes)}</td></tr>")
    page = ("<!doctype html><meta charset='utf-8'><title>DynamiX quality gates</title>"
            "<style>td,th{padding:2px 8px;text-align:left}.FAILED{color:#b00;font-weight:bold}</style>"
            "<h1>DynamiX quality gates</h1><p>One GX Data Docs site per run; failures and warnings by table.</p>"
            "<table><tr><th>ds</th><th>run</th><th>table</th><th>gate</th><th>checks</th><th>failures / warnings</th></tr>"
            + "".join(rows) + "</table>")
    with open(os.path.join(docs_dir, "index.html"), "w") as f:
        f.write(page)
