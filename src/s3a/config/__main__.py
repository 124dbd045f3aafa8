"""``python -m s3a.config schema|readme``: print a generated file."""

from __future__ import annotations

import json
import sys

from s3a.config.generate import json_schema, readme


def main(argv: list[str] | None = None) -> int:
    """``python -m s3a.config schema|readme``: print the generated file."""
    what = (argv if argv is not None else sys.argv[1:]) or ["schema"]
    if what[0] == "schema":
        print(json.dumps(json_schema(), indent=2))
    elif what[0] == "readme":
        print(readme(), end="")
    else:
        print("usage: python -m s3a.config schema|readme", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
