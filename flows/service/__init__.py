"""Running cairn as a service: Prefect deployments, schedules and the file watcher
(deployments), the registry from the command line (registry), the secured local Prefect server
(server)."""
