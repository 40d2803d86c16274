"""The metadata contract: ``metadata.schema.json`` (JSON Schema) for every artifact's ``<artifact>.json`` sidecar.

The exporter validates a sidecar before writing it; apps and their tests read sidecars through ``read_sidecar``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from mcq.errors import McqError
from mcq.io import read_json

SCHEMA_PATH = Path(__file__).with_name("metadata.schema.json")


@cache
def _validator():
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def metadata_errors(meta: dict) -> list[str]:
    """Every way ``meta`` breaks the contract, as ``where: what`` lines (none: it follows it)."""
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
              for e in sorted(_validator().iter_errors(meta), key=lambda e: list(map(str, e.absolute_path)))]
    names, palette = meta.get("class_names"), meta.get("palette")
    if isinstance(names, list) and isinstance(palette, list) and len(names) != len(palette):
        errors.append(f"palette: {len(palette)} colours for {len(names)} classes")
    return errors


def validate_metadata(meta: dict, source: str | Path) -> None:
    """One-line ``McqError`` naming ``source`` unless ``meta`` follows ``metadata.schema.json``."""
    errors = metadata_errors(meta)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise McqError(f"{source}: metadata breaks mcq's schema ({SCHEMA_PATH.name}): {errors[0][:200]}{more}")


def read_sidecar(artifact: str | Path) -> dict:
    """The validated metadata sidecar ``<artifact>.json`` of ``artifact``."""
    sidecar = Path(f"{artifact}.json")
    if not sidecar.is_file():
        raise McqError(f"{artifact}: its metadata {sidecar.name} is missing; re-export with `mcq export`")
    meta = read_json(sidecar)
    if not isinstance(meta, dict):
        raise McqError(f"{sidecar}: metadata must be a JSON object")
    validate_metadata(meta, sidecar)
    return meta
