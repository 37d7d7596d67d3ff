"""The one base class of every user mistake: the CLI prints its message as one line and exits 2."""


class UserError(ValueError):
    """Bad input from the user (a job key, a site, a model, a file); the message names it and what was
    expected. Anything else that goes wrong is a bug and keeps its traceback."""
