"""Put a measured matrix into the README: MATRIX_DIR/matrix.md between the markers.

  .venv/bin/python scripts/readme_matrix.py runs/matrix-<time> [--readme README.md]

Everything between the line ``<!-- matrix:start -->`` and the line ``<!-- matrix:end -->``
is replaced by matrix.md (written by scripts/matrix.py and ``pgchaos matrix-report``), with a
blank line either side; the markers stay, the rest of the file is untouched.  Without both
markers, once each and in that order, nothing is written and the exit status is 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- matrix:start -->"
END = "<!-- matrix:end -->"
MARKDOWN_FILE = "matrix.md"  # pgchaos.matrix.MARKDOWN_FILE


class Refused(Exception):
    pass


def _marker_line(lines: list[str], marker: str, readme: Path) -> int:
    found = [i for i, line in enumerate(lines) if line.strip() == marker]
    if not found:
        raise Refused(
            f"{readme} has no line {marker!r}: add the lines {START!r} and {END!r} where the"
            " table should go"
        )
    if len(found) > 1:
        raise Refused(f"{readme} has the line {marker!r} {len(found)} times: keep one")
    return found[0]


def replace_section(text: str, table: str, readme: Path) -> str:
    """``text`` with the lines between the markers replaced by ``table``."""
    lines = text.splitlines(keepends=True)
    start, end = _marker_line(lines, START, readme), _marker_line(lines, END, readme)
    if end < start:
        raise Refused(f"{readme}: {END!r} comes before {START!r}")
    # Blank lines around it: Markdown then ends the table before the end marker's comment.
    body = "\n" + table.strip("\n") + "\n\n"
    return "".join([*lines[: start + 1], body, *lines[end:]])


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/readme_matrix.py", description=__doc__)
    parser.add_argument("matrix_dir", type=Path, metavar="MATRIX_DIR")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    source = args.matrix_dir / MARKDOWN_FILE
    try:
        table = source.read_text(encoding="utf-8")
        text = args.readme.read_text(encoding="utf-8")
        updated = replace_section(text, table, args.readme)
    except OSError as exc:
        print(f"scripts/readme_matrix.py: error: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"scripts/readme_matrix.py: error: {exc}; nothing written", file=sys.stderr)
        return 2
    if updated == text:
        print(f"{args.readme}: already up to date")
        return 0
    tmp = args.readme.with_name(f".{args.readme.name}.tmp")
    tmp.write_text(updated, encoding="utf-8")
    tmp.replace(args.readme)
    print(f"{args.readme}: the matrix section now holds {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
