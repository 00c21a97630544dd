"""The generated docs tables (docs/models.md, docs/vaes.md): rewritten with `--update-models-table`, else compared."""

from collections.abc import Callable
from pathlib import Path


def check_table(request, path: Path, table: str, static: Callable[[str], list[str]]) -> None:
    """Write `table` to `path` under `--update-models-table`; then fail if `path`'s static part differs from it."""
    if request.config.getoption("--update-models-table"):
        path.write_text(table)
    assert path.exists(), f"docs/{path.name} is missing: run with --update-models-table"
    assert static(path.read_text()) == static(table), f"docs/{path.name} is stale: run with --update-models-table"
