"""The nightly pipeline's steps, in order: the one list that ``jobs/nightly.py`` runs and the Airflow DAG
(``dags/dynamix_nightly.py``) makes its tasks from.

Step ``<step>`` is the job ``jobs/<step>.py`` (one spark-submit each in the DAG). A day's examples use the
day's segments and the day's segments its clean tables, hence the order; ``maintenance`` (OPTIMIZE / VACUUM /
catalog registration) is always last, and the nightly runs it once for a whole range.

Plain data with no imports: the DAG reads this file in Airflow's own environment (``.venv-airflow``) without
importing the project.
"""

STEPS: tuple[str, ...] = ("denoise", "user_window_stats", "build_ebf", "maintenance")


def job_file(step: str) -> str:
    """The job a step runs, relative to the repository root."""
    return f"jobs/{step}.py"
