"""A path means what it meant where the user typed it.

Jobs, edits and their files travel: to Ray actors in another process (a private Ray's workers, a
cluster's nodes), into `job.yaml` for a later resume or `loco regress --candidate-model`, into rows and
manifests. A relative path would then be read against whatever folder that process happens to be in. So
every path a user gives is made absolute once, where it was typed, before anything travels:

* a value on the command line (``--out``, ``--set model=...``, ``--candidate-model``, an edit
  directory) against the working directory of the command;
* a value inside a job, edit or fine-tune file (``prompts:``, ``model:``, ``edit:``, ``lora:``,
  ``stage_ii.model``, scorer weights, ``candidates:``) against the folder of that file.

A model value is a path only when it names one — an existing directory, or text that can only be a path
(``./x``, ``../x``, ``/x``, ``~/x``, more than one ``/``); ``org/name`` that is no directory stays a hub
id and ``tiny:sd15``, ``toyworld`` stay names. A ``+planted=<site>`` suffix is kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PLANT_SEP = "+planted="
MODEL_KEYS = ("model", "source_model")  # a job's and an edit's model
FILE_KEYS = ("edit", "lora", "candidates", "words_file")  # always paths (files or folders)
SCORER_PATH_OPTIONS = ("weights", "weights_dir", "cache_dir", "model_dir", "ocr_weights_dir")


def absolute(path: str | os.PathLike, base: Path | None = None) -> Path:
    """`path` made absolute against `base` (default: the working directory), ``~`` expanded, without
    resolving symlinks (a user's link is their name for the place)."""
    path = Path(path).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else (base or Path.cwd()) / path))


def shown(path: str | os.PathLike) -> str:
    """`path` as a message shows it: relative to the working directory when it lies inside it (the way
    the user typed it, since command-line paths were made absolute on the way in), else as it is."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def cli_path(value: str) -> str:
    """An argparse ``type=`` for a path argument: absolute against the working directory."""
    return str(absolute(value))


def cli_model(value: str) -> str:
    """An argparse ``type=`` for a model argument: a local directory made absolute, names kept."""
    return model_value(value)


def looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value.count("/") > 1


def model_value(value: Any, base: Path | None = None) -> Any:
    """A model id with a local directory in it made absolute against `base`; names and hub ids unchanged
    (a list of models: each)."""
    if isinstance(value, list):
        return [model_value(v, base) for v in value]
    if not isinstance(value, str) or not value:
        return value
    name, sep, planted = value.partition(PLANT_SEP)
    if name.startswith(("tiny:", "random:", "builtin:")):
        return value
    candidate = absolute(name, base)
    if candidate.is_dir() or looks_like_path(name):
        return f"{candidate}{sep}{planted}"
    return value


def option_value(value: Any, base: Path | None = None) -> Any:
    """A scorer option that may be a file or a tag (``weights: openai``): absolute when it names a file
    or folder that exists there, or can only be a path."""
    if not isinstance(value, str) or not value:
        return value
    candidate = absolute(value, base)
    return str(candidate) if candidate.exists() or looks_like_path(value) else value


def resolve_job_paths(data: dict, base: Path | None = None) -> dict:
    """A job's (or one ``--set``'s) keys with every path in them absolute against `base`."""
    data = dict(data)
    for key in MODEL_KEYS:
        if key in data:
            data[key] = model_value(data[key], base)
    if isinstance(data.get("models"), list):
        data["models"] = [model_value(m, base) for m in data["models"]]
    for key in FILE_KEYS:
        if isinstance(data.get(key), str):
            data[key] = str(absolute(data[key], base))
    if isinstance(data.get("prompts"), str):
        data["prompts"] = str(absolute(data["prompts"], base))
    if isinstance(data.get("stage_ii"), dict) and isinstance(data["stage_ii"].get("model"), str):
        stage = dict(data["stage_ii"])
        stage["model"] = stage["model"] if stage["model"] == "none" else model_value(stage["model"], base)
        data["stage_ii"] = stage
    if isinstance(data.get("scorers"), dict):
        data["scorers"] = {name: ({k: (option_value(v, base) if k in SCORER_PATH_OPTIONS else v)
                                   for k, v in options.items()} if isinstance(options, dict) else options)
                           for name, options in data["scorers"].items()}
    return data


def resolve_override(key: str, value: Any, base: Path | None = None) -> Any:
    """The value of one ``--set key=value`` with a path in it made absolute against `base` (the cwd)."""
    parts = key.split(".")
    nested: dict = {}
    node = nested
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    resolved = resolve_job_paths(nested, base)
    for part in parts:
        resolved = resolved[part]
    return resolved
