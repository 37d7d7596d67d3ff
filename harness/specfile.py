"""Reading a YAML spec file (an edit, a fine-tune) into a mapping, with one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.errors import UserError


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
