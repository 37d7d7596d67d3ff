"""Small helpers shared by the model-backed scorers: fingerprints of weight files, and the device option.

Every model-backed scorer writes an identity column naming its weights by content (a SHA-256 prefix),
not by path: the same file copied to another node gives the same name, and a silently swapped file does
not. Hashing reads the file once per process and scorer construction (about a second per 600 MB).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import torch

SHORT = 16  # hex digits kept in identity columns


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_fingerprint(paths: Iterable[Path]) -> str:
    """Short SHA-256 of one file, or of the concatenated hashes of several (in the given order)."""
    hashes = [file_sha256(p) for p in paths]
    if len(hashes) == 1:
        return hashes[0][:SHORT]
    return hashlib.sha256("".join(hashes).encode()).hexdigest()[:SHORT]


def resolve_device(device: str) -> torch.device:
    """The ``device`` option: "auto" = CUDA when available, else CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
