"""SQL over the lake's tables: ``python jobs/sql.py [--config conf/<profile>.yaml] "SELECT ..." ["..."]``.

The same as the console script ``dynamix sql`` (``dynamix_spark/sql_cli.py``); also runs under spark-submit:

    bash scripts/spark.sh submit --py-files dist/dynamix_pyfiles.zip jobs/sql.py "SHOW TABLES IN dynamix"
"""
from __future__ import annotations

import sys

from dynamix_spark.sql_cli import main

if __name__ == "__main__":
    sys.exit(main(["sql", *sys.argv[1:]]))
