"""The schemas package on the Spark side sees what it always saw, and its names import without PySpark
(the training environment has none)."""
from __future__ import annotations

import ast
import subprocess
import sys

from pyspark.sql.types import ArrayType, IntegerType, LongType, StringType, StructField, StructType

from conftest import ROOT


def test_ebf_examples_is_the_spark_schema_as_written_out():
    from schemas.ebf import ALL_SEQ_COLUMNS, EBF_EXAMPLES, EBF_EXAMPLES_COLUMNS, LEN_COLUMNS, TARGET_COLUMNS

    fields = [
        StructField("user_id", LongType(), False),
        StructField("event_ts_us", LongType(), False),
        StructField("label", IntegerType(), False),
        StructField("segment_window_end_us", LongType(), True),
    ]
    fields += [StructField(c, IntegerType(), False) for c in TARGET_COLUMNS]
    fields += [StructField(c, ArrayType(IntegerType()), True) for c in ALL_SEQ_COLUMNS]
    fields += [StructField(c, IntegerType(), False) for c in LEN_COLUMNS]
    fields += [StructField("ds", StringType(), False), StructField("policy", StringType(), False),
               StructField("segment", IntegerType(), False)]
    assert EBF_EXAMPLES == StructType(fields)
    assert EBF_EXAMPLES_COLUMNS == tuple(EBF_EXAMPLES.fieldNames())
    import schemas.ebf

    assert schemas.ebf.EBF_EXAMPLES is EBF_EXAMPLES  # built once


def test_package_exports_are_the_modules_objects():
    import schemas
    import schemas.raw
    import schemas.tables

    for name in schemas.__all__:
        mod = schemas.raw if hasattr(schemas.raw, name) else schemas.tables
        assert getattr(schemas, name) is getattr(mod, name), name
    from schemas.names import AD_EBF_ATTRIBUTES

    assert schemas.raw.AD_EBF_ATTRIBUTES is AD_EBF_ATTRIBUTES


def test_training_side_imports_no_pyspark():
    """schemas.ebf, the config and every training module import with pyspark and jobs/ unimportable."""
    code = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('pyspark', 'jobs', 'py4j', 'delta'):
            raise ModuleNotFoundError('blocked: ' + name, name=name)
sys.meta_path.insert(0, Block())
import schemas, schemas.ebf, schemas.names
from dynamix_spark.config import load_config
load_config('conf/local.yaml')
import training.delta_snapshot, training.spark_side, training.metrics, training.experiments
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


def test_training_code_imports_nothing_of_the_spark_side():
    """Every import in training/ (module level or not): no pyspark, no jobs/, of dynamix_spark only the
    pure-YAML config, of schemas only the PySpark-free modules."""
    allowed = {"dynamix_spark.config", "schemas.ebf", "schemas.names"}
    for path in sorted((ROOT / "training").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                assert top not in ("pyspark", "py4j", "delta", "jobs"), (path.name, name)
                if top in ("dynamix_spark", "schemas"):
                    assert name in allowed, (path.name, name)
