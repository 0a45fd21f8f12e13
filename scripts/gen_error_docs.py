"""Write docs/errors.md from kpimetrics/codes.py.

    python scripts/gen_error_docs.py          # rewrite the doc
    python scripts/gen_error_docs.py --check  # exit 1 if the doc is out of date (CI)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kpimetrics.codes import errors_doc  # noqa: E402

DOC = ROOT / "docs" / "errors.md"


def main(argv: list[str]) -> int:
    text = errors_doc()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text("utf-8") != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run python scripts/gen_error_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, "utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
