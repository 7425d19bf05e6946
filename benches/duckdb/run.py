#!/usr/bin/env python3
"""Runs benches/duckdb/sli.sql in an in-memory DuckDB.

    run.py --sql sli.sql --data FLAT_DIR --out OUT_DIR [--threads 2] [--param NAME=VALUE ...]

The SQL file is cut into phases at `-- @phase NAME` lines; each phase runs as one
`execute` (several statements) and is timed. `${NAME}` in the SQL is replaced by
the --param values and by `data` / `out`. Prints one JSON line to stdout:
the DuckDB version, the settings and the seconds per phase.
"""

import argparse
import json
import re
import sys
import time

import duckdb


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sql", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temp", help="spill directory (default: OUT/duckdb.tmp)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()

    params = {"data": args.data, "out": args.out}
    for kv in args.param:
        k, _, v = kv.partition("=")
        params[k] = v
    with open(args.sql, encoding="utf-8") as f:
        text = f.read()

    def subst(m: re.Match) -> str:
        if m.group(1) not in params:
            sys.exit(f"run.py: the SQL uses ${{{m.group(1)}}}, which no --param sets")
        return params[m.group(1)]

    text = re.sub(r"\$\{([a-z_]+)\}", subst, text)
    phases = []
    for chunk in re.split(r"^-- @phase ", text, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        phases.append((name.strip(), body))

    t0 = time.perf_counter()
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {args.threads}")
    con.execute(f"SET temp_directory = '{args.temp or args.out + '/duckdb.tmp'}'")
    # Row order of the results does not matter (the harness compares keyed maps).
    con.execute("SET preserve_insertion_order = false")
    seconds = {"connect": time.perf_counter() - t0}
    for name, body in phases:
        t = time.perf_counter()
        con.execute(body)
        seconds[name] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "duckdb": duckdb.__version__,
                "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
                "seconds": seconds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
