"""The published report schema (`edgekd/schemas/report.schema.json`): its version and the check every report
document passes before it is written or after it is read.

Apart from `report.document` (which writes the files and renders them) so that the typed report
(`report.model`) can check what it makes without depending on the renderers and the gate.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema

from edgekd.errors import ReportError

SCHEMA_VERSION = "1.5"  # 1.x stays additive: every 1.0 report validates against this schema


def report_schema() -> dict[str, Any]:
    return json.loads((resources.files("edgekd") / "schemas" / "report.schema.json").read_text(encoding="utf-8"))


@functools.cache
def _validator() -> Any:
    """The schema's validator, made once: every report is checked against the same file."""
    schema = report_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_report(report: Any, origin: str) -> None:
    error = jsonschema.exceptions.best_match(_validator().iter_errors(report))  # what jsonschema.validate raises
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ReportError(f"{origin} does not match the report schema at '{where}': {error.message}")
