"""Configuration errors fail at start-up, before any Spark work, with the key named."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import ROOT
from dynamix_spark.config import ConfigError, load_config

LOCAL = ROOT / "conf" / "local.yaml"


@pytest.mark.parametrize("override, key", [
    ("stats.no_such_key=1", "stats.no_such_key"),
    ("bogus.x=1", "bogus"),
    ("stats.forecast_horizon_s=abc", "stats.forecast_horizon_s"),
    ("segmentation.epsilon=-0.5", "segmentation.epsilon"),
    ("segmentation.target_active_fraction=1.5", "segmentation.target_active_fraction"),
    ("stats.window_length_s=120", "stats.window_length_s"),  # shorter than the 300 s horizon
    ("stats.window_length_s=7000", "stats.window_length_s"),  # does not divide a day
    ("segmentation.epsilon_mode=magic", "segmentation.epsilon_mode"),
    ("segmentation.thresholds=[0.8, 0.3]", "segmentation.thresholds"),
    ("denoise.upper_mode=median", "denoise.upper_mode"),
    ("generator.start_date=yesterday", "generator.start_date"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(LOCAL, [override])
    assert key in str(e.value)


def test_good_overrides_apply():
    cfg = load_config(LOCAL, ["stats.forecast_horizon_s=600", "segmentation.epsilon_mode=fixed",
                              "segmentation.epsilon=0.25"])
    assert cfg.stats.forecast_horizon_s == 600
    assert cfg.segmentation.epsilon_mode == "fixed" and cfg.segmentation.epsilon == 0.25
    with pytest.raises(Exception):
        cfg.stats.forecast_horizon_s = 1  # frozen


def test_cluster_profile_loads():
    load_config(ROOT / "conf" / "cluster.yaml")


def test_a_profile_extends_another_key_by_key(tmp_path):
    (tmp_path / "base.yaml").write_text("paths:\n  raw_root: /r\n  database: base\n"
                                        "spark:\n  conf:\n    a.b: '1'\n    c.d: '2'\n"
                                        "ebf:\n  seq_len: {ad: 4, organic: 4, page: 4}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("extends: ../base.yaml\npaths:\n  database: child\n"
                                                 "spark:\n  conf:\n    c.d: '3'\n"
                                                 "ebf:\n  low_importance_attributes: [surface]\n")
    c = load_config(tmp_path / "sub" / "child.yaml", ["spark.app_name=x"])
    assert (c.paths.raw_root, c.paths.database) == ("/r", "child")  # mappings merge, the child's keys win
    assert dict(c.spark.conf) == {"a.b": "1", "c.d": "3"} and c.spark.app_name == "x"
    assert c.ebf.seq_len == {"ad": 4, "organic": 4, "page": 4} and c.ebf.low_importance_attributes == ("surface",)
    (tmp_path / "base.yaml").write_text("extends: sub/child.yaml\n")
    with pytest.raises(ConfigError, match="extends loop"):
        load_config(tmp_path / "sub" / "child.yaml")
    (tmp_path / "lone.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "lone.yaml")


def test_job_exits_before_spark_on_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stats:\n  forecast_horizon_s: 300\n  horizon_typo: 5\n")
    t0 = time.time()
    p = subprocess.run([sys.executable, str(ROOT / "jobs" / "denoise.py"), "--config", str(bad), "--ds", "2026-11-02"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2
    assert "stats.horizon_typo" in p.stderr
    assert time.time() - t0 < 15  # no JVM was started
