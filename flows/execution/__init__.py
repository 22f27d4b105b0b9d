"""How stages run: the pipeline over DVC's DAG (pipeline), one stage command line (stages), the
per-partition map runners (fanout), partition reuse (datums), what a run will do (plan), and the
crash-safe writes every stage uses (files, lockfile)."""
