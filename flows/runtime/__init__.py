"""How stages run: the one DVC adapter (dvc), the pipeline over DVC's DAG (pipeline), one stage
command line (stages), stages on worker pools (workers), what a run will do (plan) and the
dvc.lock guard (lockfile)."""
