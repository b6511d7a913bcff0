"""What ``scripts/spark.sh submit`` adds in front of a job's spark-submit options.

    python -m dynamix_spark.submit <spark-submit options> <job.py> <job arguments>   # one argument a line

1. The Delta set-up (``session.spark_submit_args``: the cached jars, Delta's SQL extension and catalog).
2. The job profile's **launch-time settings**. The settings that size or configure the driver JVM
   (``spark.driver.memory``, ``spark.driver.extraJavaOptions``, ...) only take effect when spark-submit
   starts that JVM; set later by the job's ``SparkSession`` builder they are silently ignored (the heap is
   fixed by then), so a ``spark.driver.memory: 6g`` in ``conf/local.yaml`` would leave a submitted job with
   Spark's default 1 GB driver while ``python jobs/nightly.py`` (whose builder starts the JVM) gets 6 GB.
   The profile is the job's ``--config`` (default ``conf/local.yaml``, the jobs' own default) with its
   ``--set`` overrides, loaded by ``dynamix_spark.config.load_config`` exactly as the job will load it.
   ``spark.driver.memory`` becomes ``--driver-memory``; the other ``spark.driver.*``, ``spark.executor.*``,
   ``spark.yarn.*`` and ``spark.kubernetes.*`` keys become ``--conf KEY=VALUE``. A setting the caller gives
   (``--driver-memory 8g`` or ``--conf spark.driver.memory=8g``, or the other dedicated flags) wins: the
   profile's value is then left out.
3. Before anything is printed: every ``--py-files`` entry named ``dynamix_pyfiles.zip`` (a local path) is
   built with ``scripts/build_pyfiles.sh`` when it is missing or older than the sources, so a fresh checkout
   (or the Airflow DAG right after the set-up) submits the current code without a separate build step.

A profile that does not load exits 2 with ``config error: ...`` (what the job itself would say), before
spark-submit starts a JVM.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYFILES_NAME = "dynamix_pyfiles.zip"
PYFILES_PACKAGES = ("dynamix_spark", "schemas", "jobs")  # what scripts/build_pyfiles.sh zips
DEFAULT_PROFILE = "conf/local.yaml"  # dynamix_spark.cli.job_parser's default for --config

# Profile keys passed to spark-submit: those read when the driver JVM (or, on a cluster manager, the
# application master / driver pod) is launched, and the executor resources, so that spark-submit's own view
# of the application (dynamic allocation, cluster-mode drivers) is the profile's.
LAUNCH_CONF_PREFIXES = ("spark.driver.", "spark.executor.", "spark.yarn.", "spark.kubernetes.")

# spark-submit's dedicated flags and the property each one sets.
FLAG_TO_CONF = {
    "--driver-memory": "spark.driver.memory",
    "--driver-java-options": "spark.driver.extraJavaOptions",
    "--driver-library-path": "spark.driver.extraLibraryPath",
    "--driver-class-path": "spark.driver.extraClassPath",
    "--driver-cores": "spark.driver.cores",
    "--executor-memory": "spark.executor.memory",
    "--executor-cores": "spark.executor.cores",
    "--num-executors": "spark.executor.instances",
}
CONF_TO_FLAG = {"spark.driver.memory": "--driver-memory"}
# spark-submit options that take no value (every other option takes one).
_NO_VALUE = {"--verbose", "-v", "--supervise", "--help", "-h", "--version", "--usage-error"}


def split_submit_args(argv: Sequence[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """``(options, rest)``: spark-submit's own options as ``(name, value)`` pairs, and the primary resource
    (the job) followed by its arguments. ``--name=value`` is accepted as spark-submit accepts it."""
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            break
        if "=" in arg and arg.startswith("--"):
            name, value = arg.split("=", 1)
            options.append((name, value))
        elif arg in _NO_VALUE:
            options.append((arg, None))
        else:
            options.append((arg, argv[i + 1] if i + 1 < len(argv) else None))
            i += 1
        i += 1
    return options, list(argv[i:])


def caller_conf_keys(options: Sequence[tuple[str, str | None]]) -> set[str]:
    """The Spark properties the caller set on the command line (``--conf K=V`` or a dedicated flag)."""
    keys = set()
    for name, value in options:
        if name in ("--conf", "-c") and value and "=" in value:
            keys.add(value.split("=", 1)[0].strip())
        elif name in FLAG_TO_CONF:
            keys.add(FLAG_TO_CONF[name])
    return keys


def job_profile(job_args: Sequence[str]) -> tuple[str, list[str]]:
    """The job's ``--config`` (default ``conf/local.yaml``) and its ``--set`` overrides, as the job parses them."""
    profile, overrides = DEFAULT_PROFILE, []
    args = list(job_args[1:])  # job_args[0] is the job file
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg == "--config" and nxt is not None:
            profile = nxt
        elif arg.startswith("--config="):
            profile = arg.split("=", 1)[1]
        elif arg == "--set" and nxt is not None:
            overrides.append(nxt)
        elif arg.startswith("--set="):
            overrides.append(arg.split("=", 1)[1])
    return profile, overrides


def launch_args(profile_conf: Mapping[str, str], given: set[str]) -> list[str]:
    """spark-submit flags for the profile's launch-time settings the caller did not give (``given``)."""
    out: list[str] = []
    for key, value in profile_conf.items():
        if not key.startswith(LAUNCH_CONF_PREFIXES) or key in given:
            continue
        flag = CONF_TO_FLAG.get(key)
        out += [flag, str(value)] if flag else ["--conf", f"{key}={value}"]
    return out


def pyfiles_zips(options: Sequence[tuple[str, str | None]]) -> list[Path]:
    """The local ``dynamix_pyfiles.zip`` entries of ``--py-files`` (relative to the working directory)."""
    zips = []
    for name, value in options:
        if name != "--py-files" or not value:
            continue
        for entry in value.split(","):
            entry = entry.strip()
            if entry.startswith("file:"):
                entry = entry[len("file:"):]
                entry = "/" + entry.lstrip("/") if entry.startswith("//") else entry
            elif "://" in entry or entry.startswith("local:"):
                continue  # on the cluster or an object store: built and shipped at deploy time
            if Path(entry).name == PYFILES_NAME:
                zips.append(Path(entry))
    return zips


def _sources(root: Path) -> list[Path]:
    return sorted(p for pkg in PYFILES_PACKAGES for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def pyfiles_stale(zip_path: Path, root: Path = PROJECT_ROOT) -> bool:
    """Missing, older than a source, or not holding exactly the current source files."""
    if not zip_path.is_file():
        return True
    sources = _sources(root)
    built = zip_path.stat().st_mtime
    if any(p.stat().st_mtime > built for p in sources):
        return True
    try:
        names = sorted(zipfile.ZipFile(zip_path).namelist())
    except zipfile.BadZipFile:
        return True
    return names != sorted(p.relative_to(root).as_posix() for p in sources)


def ensure_pyfiles(zip_path: Path, root: Path = PROJECT_ROOT) -> bool:
    """Build ``zip_path`` with scripts/build_pyfiles.sh if it is stale; whether it was built."""
    if not pyfiles_stale(zip_path, root):
        return False
    print(f"spark.sh: building {zip_path} (missing or older than the sources)", file=sys.stderr)
    subprocess.run(["bash", str(root / "scripts" / "build_pyfiles.sh"), str(zip_path.resolve().parent)],
                   check=True, stdout=sys.stderr)
    return True


def submit_prefix(argv: Sequence[str], *, delta_args: Sequence[str] | None = None) -> list[str]:
    """Everything spark.sh puts between ``spark-submit`` and the caller's own arguments ``argv``."""
    from dynamix_spark.config import load_config

    options, rest = split_submit_args(argv)
    for z in pyfiles_zips(options):
        ensure_pyfiles(z)
    if delta_args is None:
        from dynamix_spark.session import spark_submit_args

        delta_args = spark_submit_args()
    delta_args = list(delta_args)
    given = caller_conf_keys(options)
    extra: list[str] = []
    if rest:
        profile, overrides = job_profile(rest)
        if profile != DEFAULT_PROFILE or Path(profile).is_file() or overrides:
            conf = load_config(profile, overrides).spark.conf
            cp = conf.get("spark.driver.extraClassPath")
            if cp and "spark.driver.extraClassPath" not in given and "--driver-class-path" in delta_args:
                i = delta_args.index("--driver-class-path") + 1  # the Delta jars': add the profile's to them
                delta_args[i] = f"{delta_args[i]}:{cp}"
            extra = launch_args(conf, given | caller_conf_keys(split_submit_args(delta_args)[0]))
    return [*delta_args, *extra]


def main(argv: Sequence[str]) -> int:
    from dynamix_spark.config import ConfigError

    try:
        prefix = submit_prefix(argv)
    except (ConfigError, OSError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    print("\n".join(prefix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
