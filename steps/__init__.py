"""Pure pipeline logic: data in, new data out. No files, no environment, no Prefect, no global RNG."""

from steps.errors import BadInput

__all__ = ["BadInput"]
