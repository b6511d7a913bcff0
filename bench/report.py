"""Render bench/results_stats.json as the stats section of BENCHMARKS.md (ratios measured in one run)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def main(*paths: str) -> str:
    paths = paths or tuple(str(p) for p in sorted((ROOT / "bench").glob("results_stats*.json")))
    rows = [r for p in paths for r in json.loads(Path(p).read_text())]
    by = {(r["method"], r["n_impressions"], r["s"]): r for r in rows}
    lines = ["| impressions | s | method | wall s | events/s | peak RSS GB | n_pos | vs dynamix (wall ratio) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["n_impressions"], r["s"], r["method"])):
        base = by.get(("dynamix", r["n_impressions"], 300))
        ratio = (r["wall_s"] / base["wall_s"]) if (base and r.get("wall_s") and base.get("wall_s")) else None
        wall = fmt(r.get("wall_s")) if r.get("wall_s") else f"timeout > {r.get('timed_out_after_s')}"
        lines.append(f"| {r['n_impressions']:,} | {r['s']} | {r['method']} | {wall} | {r.get('events_per_s', '-'):,} "
                     f"| {r['peak_rss_gb']} | {r.get('n_pos') if r.get('n_pos') is not None else '-'} | {fmt(ratio, 2)} |"
                     if isinstance(r.get('events_per_s'), int) else
                     f"| {r['n_impressions']:,} | {r['s']} | {r['method']} | {wall} | - | {r['peak_rss_gb']} | - | - |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
