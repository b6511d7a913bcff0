"""Print what the demo produced: row reconciliation, segments, where the tables are, a query to try."""
import argparse
import json
from pathlib import Path

from dynamix_spark.config import load_config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="conf/local.yaml")
    p.add_argument("--report", required=True)
    args = p.parse_args()
    cfg = load_config(args.config)
    rep = json.loads(Path(args.report).read_text())
    print("\nraw -> clean + quarantined + dropped (ad_impressions):")
    for ds, srcs in rep["denoise"].items():
        a = srcs["ad_impressions"]
        print(f"  {ds}: {a['rows_in']:>9} = {a['clean']:>9} + {a['quarantined']:>6} + {sum(a['drops'].values()):>6}"
              f"  drops {a['drops']}")
    print("\nuser windows and segments:")
    for ds, s in rep["user_window_stats"].items():
        print(f"  {ds}: {s['windows']} user windows, {s['with_corr']} with a corr, epsilon={s['epsilon']:.4f}"
              f" ({s['epsilon_mode']}), active share {s['active_share']:.3f} of all windows,"
              f" {s['active_share_with_corr']:.3f} of those with a corr")
    print("\nEBF examples (one per clean ad impression and policy):")
    for ds, e in rep.get("build_ebf", {}).items():
        print(f"  {ds}: {e['examples']} examples x {len(e['policies'])} policies, {e['positives']} positive,"
              f" by segment {e['segments']}, largest user {e['max_examples_per_user']} examples")
    lake = Path(cfg.paths.lake_root).resolve()
    ds = list(rep["user_window_stats"])[len(rep["user_window_stats"]) // 2]
    print(f"\nDelta tables under {lake}: " + ", ".join(sorted(p.name for p in lake.iterdir() if p.is_dir())))
    db = cfg.paths.database
    query = f"SELECT segment, count(*) FROM {db}.user_window_stats WHERE ds = '{ds}' GROUP BY segment"
    print(f"Registered in the catalog database {db!r}. Try (one Spark process at a time: embedded Derby):\n"
          f"  .venv/bin/dynamix sql \"{query}\"\n  bash scripts/spark.sh sql -e \"{query}\"")


if __name__ == "__main__":
    main()
