"""The one base class of every user mistake: the CLI prints its message as one line and exits 2."""


class UserError(ValueError):
    """Bad input from the user (a job key, a site, a model, a file); the message names it and what was
    expected. Anything else that goes wrong is a bug and keeps its traceback."""


def did_you_mean(name: str, choices, default: str | None = None) -> str:
    """`` (did you mean 'x'?)`` for the closest of `choices` to `name` (or `default`), else ""."""
    import difflib

    close = default or next(iter(difflib.get_close_matches(str(name), list(choices), n=1)), None)
    return f" (did you mean '{close}'?)" if close else ""


class JobError(UserError):
    """A job that cannot run as written; the message is one line naming the field. (Defined here so the
    method registry, which the job model consults, can raise it without importing `harness.jobs`.)"""


class Stopped(Exception):
    """A run that cannot go on for a reason outside the job — its Ray node died, no worker could start
    within `executor.node_wait`, the disk is full. Finished work is kept and the manifest says `stopped`;
    the CLI prints the message as one line and exits 3: running the same command again resumes."""
