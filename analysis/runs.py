"""Run directories as the analysis reads them: the manifest, the Parquet parts, the site table.

A run directory is what `loco sweep` writes (see `harness.results.store`). Analysis never writes into it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError
from harness.paths import shown


class AnalysisError(UserError):
    """A run directory, metric or option the analysis cannot use; one line naming what was expected."""


@dataclass(frozen=True)
class Run:
    path: Path
    manifest: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def parts(self) -> list[Path]:
        return sorted((self.path / "results").glob("method=*/*.parquet"))

    @property
    def results_glob(self) -> str:
        return str(self.path / "results" / "**" / "*.parquet")

    @property
    def has_results(self) -> bool:
        return bool(self.parts)

    @property
    def method(self) -> str | None:
        return self.manifest.get("method") or next((p.parent.name.removeprefix("method=") for p in self.parts), None)

    @property
    def model(self) -> dict:
        return self.manifest.get("model") or {}

    @property
    def model_id(self) -> str | None:
        return self.model.get("model_id")

    @property
    def model_fingerprint(self) -> str | None:
        return self.model.get("fingerprint") or self.model.get("model_fingerprint")

    @property
    def sites_csv(self) -> Path:
        return self.path / "sites.csv"

    def failure_files(self) -> list[Path]:
        """Failure records written by the sweep: ``failures.parquet`` at the run's root (one row per failed
        unit: unit_id, error, attempts, ...; `harness.results.failures` owns the file and its schema)."""
        from harness.results.failures import FILENAME

        root = self.path / FILENAME
        return [root] if root.is_file() else []


def open_run(path: str | Path) -> Run:
    """A run directory: it must hold a manifest.json or a results/ folder written by `loco sweep`."""
    path = Path(path)
    if not path.is_dir():
        raise AnalysisError(f"run directory '{shown(path)}' does not exist")
    manifest_path = path / "manifest.json"
    check_not_multi_model(path)
    if not manifest_path.is_file() and not (path / "results").is_dir():
        raise AnalysisError(f"'{shown(path)}' is not a run directory (expected manifest.json or results/ from `loco sweep`)")
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise AnalysisError(f"{manifest_path}: not valid JSON ({exc.msg})") from None
    return Run(path, manifest)


def check_not_multi_model(path: Path) -> None:
    """The root of a multi-model sweep (`harness.multisweep`: models.json, one run directory per model) is
    not itself a run: name the model directories to read instead."""
    index = path / "models.json"
    if index.is_file() and not (path / "manifest.json").is_file():
        try:
            dirs = [str(path / m["dir"]) for m in json.loads(index.read_text())["models"]]
        except (json.JSONDecodeError, KeyError, TypeError):
            dirs = ["<model dir>"]
        raise AnalysisError(f"'{path}' is the root of a multi-model sweep; read one model's run: {', '.join(dirs)}")


def open_runs(paths) -> list[Run]:
    runs = [open_run(p) for p in paths]
    if not runs:
        raise AnalysisError("expected at least one run directory")
    names = [r.name for r in runs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise AnalysisError(f"two run directories are named '{dup}'; the views tell runs apart by directory name")
    return runs


def require_results(run: Run) -> None:
    if not run.has_results:
        raise AnalysisError(f"'{run.path}' has no results (expected {run.path}/results/method=*/part-*.parquet "
                            "from `loco sweep`)")
