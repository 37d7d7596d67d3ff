"""Reading YAML spec files (a job, an edit, a fine-tune): the mapping, `--set` overrides, and one-line errors
naming the file and the key."""

from __future__ import annotations

import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import JobError, UserError, did_you_mean
from harness.paths import resolve_override


def read_mapping(data: dict | str | Path, what: str, keys: str, error: type[UserError]) -> tuple[dict, str, Path]:
    """(the mapping, its source for messages, the folder its relative paths are resolved against) of `data`,
    a dict or a YAML file of `what` ("edit", "fine-tune") whose keys are described by `keys`."""
    source, base = what.replace("-", ""), Path.cwd()
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise error(f"{what} file '{path}' does not exist")
        source, base = str(path), path.parent
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise error(f"{source}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping of {what} keys ({keys}), got {type(data).__name__}")
    return dict(data), source, base


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel]:
    """The pydantic model that owns the field at `loc` (to suggest a close key for a typo)."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        annotation = fields[part].annotation
        candidates = [annotation, *typing.get_args(annotation)]
        candidates += [a for c in candidates for a in typing.get_args(c)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), model)
    return model


def format_validation_error(exc: ValidationError, source: str, root: type[BaseModel]) -> str:
    """One line for the first error of validating a `root` model (a job, an edit or a fine-tune spec):
    ``SOURCE: key.path: what was expected``, with a close key suggested for an unknown one."""
    err = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        names = [f.alias or n for n, f in _model_at(err["loc"][:-1], root).model_fields.items()]
        msg = "unknown key" + did_you_mean(err["loc"][-1], names)
    elif err["type"] == "missing":
        msg = "required"
    elif err["type"] == "literal_error":
        msg = f"got {err['input']!r}, {msg[0].lower()}{msg[1:]}"
    return f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"


def apply_overrides(data: dict, pairs: list[str]) -> dict:
    """`--set key=value` pairs (dotted keys, YAML values) applied on top of a job's keys; a path in a value
    is made absolute against the working directory, where it was typed (`harness.paths`)."""
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise JobError(f"--set: expected KEY=VALUE, got '{pair}'")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise JobError(f"--set {key}: value '{value}' is not valid YAML ({getattr(exc, 'problem', exc)})") from None
        node, parts = data, key.split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise JobError(f"--set {key}: '{'.'.join(parts[:depth + 1])}' is not a mapping of keys")
        node[parts[-1]] = resolve_override(key, parsed)
    return data
