"""The launcher's one error type for bad input: printed as one line, exit code 2, no traceback (launch/cli.py)."""


class InputError(SystemExit):
    """Bad input (a command-line value, a recipe, a run folder): one line naming it and the reason."""

    exit_code = 2
