"""The Great Expectations adapter: one ephemeral GX context per process, created on first use.

:func:`_validate` runs a list of :class:`schemas.expectations.Expect` as a GX suite on a Spark DataFrame (the
staged table: a Spark datasource with a whole-dataframe batch definition, no pandas copy) or on a one-row
pandas frame (the audit metrics, :mod:`dynamix_spark.quality.audit`) and turns GX's results into
:class:`~dynamix_spark.quality.results.CheckResult`; :func:`_with_examples` runs the failed row-level
expectations again for a few unexpected values.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import operator
import sys
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pyspark.sql import DataFrame

from dynamix_spark.quality.results import CheckResult
from schemas.expectations import Expect

# Counts only: GX bundles them into one aggregate per column, where a list of unexpected values costs a
# Spark job per expectation. The few expectations that fail are run again for EXAMPLES unexpected values.
COUNTS_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
EXAMPLES = 5
_OBSERVED_MAX_CHARS = 500


@dataclass
class _Gx:
    gx: Any
    gxe: Any
    context: Any
    source: Any  # Spark: the staged tables
    audit_source: Any  # pandas: the one-row frames of audit metrics computed with Spark
    batch_definitions: dict[str, Any]
    sites: dict[str, str]  # site folder (one per ds and run) -> GX data docs site name
    lock: threading.Lock


def _import_gx() -> tuple[Any, Any]:
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__") \
            and not hasattr(sys, "ps1"):
        # GX imports pyspark.sql.connect, whose dependency check takes a __main__ without __file__
        # (``python -c``, ``python -``) for a doctest run and calls sys.exit(0) when one of Spark Connect's
        # client packages is missing: the process would end silently with status 0. pyarrow >= 18 is no
        # longer what is missing (issue 14), but grpcio, grpcio-status, googleapis-common-protos and
        # zstandard are (pyspark[connect]; nothing here uses Spark Connect), measured with pyspark 4.2.0:
        # "Skipping doctests: No module named 'grpc'". A name keeps it on the normal path.
        main.__file__ = "<dynamix_spark.quality>"
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


@functools.lru_cache(maxsize=1)
def _gx() -> _Gx:
    gx, gxe = _import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # persist=False: the job persists its staged DataFrame itself; GX's own persist is never released.
    source = context.data_sources.add_spark(name="dynamix_spark", persist=False)
    # A one-row frame of numbers needs no Spark job per metric: GX's pandas engine checks it in milliseconds.
    audit_source = context.data_sources.add_pandas(name="dynamix_audit")
    return _Gx(gx, gxe, context, source, audit_source, {}, {}, threading.Lock())


def _batch_definition(g: _Gx, asset_name: str, audit: bool) -> Any:
    if asset_name not in g.batch_definitions:
        asset = (g.audit_source if audit else g.source).add_dataframe_asset(name=asset_name)
        g.batch_definitions[asset_name] = asset.add_batch_definition_whole_dataframe("staged")
    return g.batch_definitions[asset_name]


_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
        "!=": operator.ne}


def _row_condition(when: tuple[tuple[str, str, Any], ...]) -> Any:
    from great_expectations.expectations.row_conditions import Column

    cond = None
    for col, op, value in when:
        c = _OPS[op](Column(col), value)
        cond = c if cond is None else cond & c
    return cond


def _to_gx(g: _Gx, e: Expect) -> Any:
    kwargs = dict(e.kwargs)
    if e.when:
        kwargs["row_condition"] = _row_condition(e.when)
    return getattr(g.gxe, e.gx_type)(**kwargs, severity=e.severity, meta={"name": e.name})


def _exception_message(info: Any) -> str | None:
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for v in info.values():  # keyed by metric when several metrics raised
        if isinstance(v, Mapping) and v.get("raised_exception"):
            return str(v.get("exception_message"))
    return None


def _observed(result: Mapping[str, Any], error: str | None) -> str:
    if error:
        text = f"error: {error}"
    elif "unexpected_count" in result:
        n, total = result.get("unexpected_count"), result.get("element_count")
        text = f"{n} of {total} rows unexpected"
        sample = result.get("partial_unexpected_list") or []
        if n and sample:
            shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in sample[:EXAMPLES])
            text += f", e.g. [{shown}]"
    elif "observed_value" in result:
        text = str(result["observed_value"])
        mismatched = (result.get("details") or {}).get("mismatched")
        if mismatched:
            text += f" (mismatched: {mismatched})"
    else:
        text = json.dumps(result, default=str)
    return text[:_OBSERVED_MAX_CHARS]


def _validate(g: _Gx, asset_name: str, df: Any, expects: Sequence[Expect], run_id: str,
              run_time: dt.datetime, result_format: Any = None) -> tuple[list[CheckResult], list]:
    """Run ``expects`` on ``df`` (a Spark DataFrame, or the pandas audit frame) as the GX suite
    ``asset_name``; return the results and their store keys."""
    from great_expectations.core.run_identifier import RunIdentifier

    gx = g.gx
    with g.lock:
        bd = _batch_definition(g, asset_name, audit=not isinstance(df, DataFrame))
        s = g.context.suites.add_or_update(gx.ExpectationSuite(name=asset_name, expectations=[_to_gx(g, e) for e in expects]))
        vd = g.context.validation_definitions.add_or_update(gx.ValidationDefinition(name=asset_name, data=bd, suite=s))
        res = vd.run(batch_parameters={"dataframe": df}, result_format=result_format or COUNTS_FORMAT,
                     run_id=RunIdentifier(run_name=run_id, run_time=run_time))
    by_name = {e.name: e for e in expects}
    out = []
    for r in res.results:
        cfg = r.expectation_config
        name = cfg.meta["name"]
        result = r.result or {}
        error = _exception_message(r.exception_info)
        out.append(CheckResult(
            expectation=name,
            severity=by_name[name].severity,
            success=bool(r.success) and error is None,
            observed=_observed(result, error),
            details={"gx_type": cfg.type, "kwargs": dict(by_name[name].kwargs),
                     "when": [list(w) for w in by_name[name].when], "result": result, "error": error},
        ))
    keys = [k for k in g.context.validation_results_store.list_keys()
            if k.run_id.run_name == run_id and k.expectation_suite_identifier.name == asset_name]
    return out, keys


def _with_examples(g: _Gx, table: str, df: DataFrame, expects: Sequence[Expect], checks: list[CheckResult],
                   keys: list, run_id: str, run_time: dt.datetime) -> tuple[list[CheckResult], list]:
    """Run the failed row-level expectations again (suite ``<table>.failed``) for a few unexpected values."""
    failed = {c.expectation for c in checks if not c.success and c.details["result"].get("unexpected_count")}
    if not failed:
        return checks, keys
    again, more_keys = _validate(g, f"{table}.failed", df, [e for e in expects if e.name in failed], run_id, run_time,
                                 {"result_format": "BASIC", "partial_unexpected_count": EXAMPLES})
    sample = {c.expectation: c for c in again}
    out = []
    for c in checks:
        if c.expectation in sample:
            c = dataclasses.replace(c, observed=sample[c.expectation].observed,
                                    details={**c.details, "result": sample[c.expectation].details["result"]})
        out.append(c)
    return out, keys + more_keys
