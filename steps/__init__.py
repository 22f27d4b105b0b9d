"""Pure pipeline logic: data in, new data out. No files, no environment, no Prefect, no global RNG."""


class StepError(ValueError):
    """Input a step cannot work with. The message names the file, column and row where known."""
