"""Storage: crash-safe files and the datum store (per-partition results kept by content)."""
