"""``install_in_app``: an exported artifact copied where a sample app's project expects it (``mcq export --app``).

The iOS project compiles ``apps/ios/McqSegment/McqModel.mlpackage`` (its metadata is inside the package); the Android
app loads ``app/src/main/assets/model.pte`` with its sidecar ``model.pte.json``. Fixed names: the projects reference
them without edits, and a new export replaces the old one.

The projects are source trees, not package data: by default mcq takes the ``apps/`` of the checkout it runs from; an
installed mcq has none and is given one (``apps_dir``, ``--apps-dir``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mcq.errors import McqError
from mcq.tasks.schema import read_sidecar

SOURCE_TREE = Path(__file__).resolve().parents[2]
APPS_DIR = SOURCE_TREE / "apps" if (SOURCE_TREE / "pyproject.toml").is_file() else None  # None: an installed mcq


@dataclass(frozen=True)
class AppSlot:
    """Where an app takes its model: the export ``format`` it runs, the artifact's path in ``apps/`` and whether the
    sidecar goes beside it (where the artifact cannot hold its metadata)."""

    format: str
    model: str
    sidecar: bool


APPS = {"ios": AppSlot("coreml", "ios/McqSegment/McqModel.mlpackage", sidecar=False),
        "android": AppSlot("executorch", "android/app/src/main/assets/model.pte", sidecar=True)}


def _replace(src: Path, dst: Path) -> None:
    if dst.is_dir():
        shutil.rmtree(dst)
    elif dst.exists():
        dst.unlink()
    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)


def app_model_path(app: str, apps_dir: str | Path | None = None) -> Path:
    """Where ``app``'s project under ``apps_dir`` (default: the ``apps/`` of mcq's checkout) takes its model; a
    one-line error where the project is not there."""
    if app not in APPS:
        raise McqError(f"--app {app}: no such app (choose from {', '.join(APPS)})")
    if apps_dir is None and APPS_DIR is None:
        raise McqError(f"--app {app}: mcq is installed, not run from its source tree: give --apps-dir DIR, the apps/ "
                       "folder of a checkout")
    dst = Path(apps_dir or APPS_DIR) / APPS[app].model
    if not dst.parent.is_dir():
        raise McqError(f"{dst.parent}: the {app} app is not there (--apps-dir: the apps/ folder of mcq's source tree)")
    return dst


def install_in_app(artifact: str | Path, app: str, apps_dir: str | Path | None = None) -> list[Path]:
    """Copy ``artifact`` (an exported ``.mlpackage`` for ``ios``, ``.pte`` for ``android``, with a valid sidecar) into
    the app's project under ``apps_dir`` (default: the ``apps/`` of mcq's checkout), replacing the model there;
    return the paths written."""
    dst = app_model_path(app, apps_dir)
    slot, artifact = APPS[app], Path(artifact)
    if artifact.suffix != Path(slot.model).suffix:
        raise McqError(f"{artifact}: the {app} app runs {Path(slot.model).suffix} artifacts "
                       f"(`mcq export {slot.format}`)")
    if not artifact.exists():
        raise McqError(f"{artifact}: no such artifact")
    read_sidecar(artifact)  # the contract the app relies on
    _replace(artifact, dst)
    written = [dst]
    if slot.sidecar:
        shutil.copyfile(f"{artifact}.json", f"{dst}.json")
        written.append(Path(f"{dst}.json"))
    return written


def check_app_export(app: str, apps_dir: str | Path | None, formats: list[str], precisions: list[str | None]) -> None:
    """``mcq export --app``: one artifact of the format the app runs, into a project that is there; refused before a
    long export otherwise."""
    app_model_path(app, apps_dir)
    fmt = APPS[app].format
    if fmt not in formats:
        raise McqError(f"--app {app} runs {fmt} artifacts: `mcq export {fmt} --app {app}` (or `mcq export all`)")
    if len(precisions) > 1:
        raise McqError(f"--app {app} takes one artifact: give one --precision")


def install_export(reports: list[dict], app: str, apps_dir: str | Path | None = None) -> list[Path]:
    """Install the artifact of the format ``app`` runs, out of one export's ``reports`` (``check_app_export``'d);
    return the paths written."""
    [report] = [r for r in reports if r["format"] == APPS[app].format]
    return install_in_app(report["path"], app, apps_dir)
