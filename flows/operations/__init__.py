"""Running cairn as a service: Prefect deployments and schedules (deployments), the model
registry and its champion gate (registry), stages on worker pools (workers), and the secured
local Prefect server (server)."""
