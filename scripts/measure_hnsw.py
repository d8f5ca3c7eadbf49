#!/usr/bin/env python3
"""What the rule of `src/restore/bulk.rs` comes from: the cost per row of keeping the HNSW index
row by row (what an append batch by batch pays) against dropping it, writing the rows and
building it once (what the bulk path pays), for a few sizes of table and of write.

    python3 scripts/measure_hnsw.py            # the figures of src/restore/bulk.rs (about 15 min)
    python3 scripts/measure_hnsw.py --quick    # fewer, smaller trials (about 3 min)

It works at the SQL level, in a database of its own (`measure_hnsw`) on the local server of
`make db`: `golden generate` makes the rows (chunks of about 1 KB with 1024-dimension vectors,
as `make bench` does), copied into `src`; each trial fills `t` (`chunks`' columns, constraints
and indexes) with N indexed rows, then either
  - appends n rows in transactions of 42 rows (ten analyses of the seed's shape, an append
    batch), the index in place, or
  - in one transaction, drops the index, inserts the n rows and builds the index once with
    maintenance_work_mem at 1 GB (what `restore --replace` and the bulk append do),
and reports the wall time of each, and per row written.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
GOLDEN = os.path.join(TARGET, "release/golden")
PG_BIN = "/usr/lib/postgresql/15/bin"
SERVER_URL = f"postgres://postgres@127.0.0.1:{os.environ.get('GOLDEN_PGPORT') or 54329}"
DB = "measure_hnsw"
INDEX = "CREATE INDEX t_embedding_idx ON t USING hnsw (embedding vector_cosine_ops)"


def log(message):
    print(f"measure: {message}", file=sys.stderr, flush=True)


def psql(database, sql, timing=False):
    """Runs sql in one psql session; with timing, returns the server time of each statement (s)."""
    script = ("\\timing on\n" if timing else "") + sql
    out = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                          f"{SERVER_URL}/{database}"], input=script, check=True, capture_output=True,
                         text=True, env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}).stdout
    return [float(ms) / 1000 for ms in re.findall(r"Time: ([0-9.]+) ms", out)]


def setup(analyses):
    psql("postgres", f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    psql("postgres", f'CREATE DATABASE "{DB}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDEN_")}
    env.update(DATABASE_URL=f"{SERVER_URL}/{DB}", RUST_LOG="error")
    subprocess.run([GOLDEN, "migrate", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
    log(f"generating {analyses} analyses")
    subprocess.run([GOLDEN, "generate", "-q", "--analyses", str(analyses)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    psql(DB, """
        CREATE TABLE src AS SELECT row_number() OVER (ORDER BY id) AS rn, c.* FROM chunks c;
        CREATE UNIQUE INDEX ON src (rn);
        CREATE TABLE t (LIKE chunks INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
        CREATE PROCEDURE append_rows(first bigint, n bigint, per_tx int) LANGUAGE plpgsql AS $$
        DECLARE i bigint := 0;
        BEGIN
          WHILE i < n LOOP
            INSERT INTO t SELECT id, analysis_id, content, section_title, section_path, content_type,
                                 chunk_index, embedding, embedding_model, extra
              FROM src WHERE rn > first + i AND rn <= first + least(i + per_tx, n);
            COMMIT;
            i := i + per_tx;
          END LOOP;
        END $$;
        VACUUM ANALYZE src;
    """)
    return int(psql_value("SELECT count(*) FROM src"))


def psql_value(sql):
    return subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-At", f"{SERVER_URL}/{DB}", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def insert(first, n):
    return (f"INSERT INTO t SELECT id, analysis_id, content, section_title, section_path, content_type, "
            f"chunk_index, embedding, embedding_model, extra FROM src WHERE rn > {first} AND rn <= {first + n};")


def fill(existing, index=True):
    """t with `existing` rows of src and its HNSW index (built once), or without the index."""
    psql(DB, f"""
        DROP INDEX IF EXISTS t_embedding_idx;
        TRUNCATE t;
        {insert(0, existing)}
        SET maintenance_work_mem = '1GB';
        {INDEX if index else ""};
        VACUUM ANALYZE t;
        CHECKPOINT;
    """)


def row_by_row(existing, n, index=True):
    fill(existing, index)
    started = time.monotonic()
    psql(DB, f"CALL append_rows({existing}, {n}, 42);")
    return time.monotonic() - started


def bulk(existing, n):
    fill(existing)
    started = time.monotonic()
    times = psql(DB, f"""
        BEGIN;
        LOCK TABLE t IN ACCESS EXCLUSIVE MODE;
        DROP INDEX t_embedding_idx;
        {insert(existing, n)}
        SET LOCAL maintenance_work_mem = '1GB';
        {INDEX};
        COMMIT;
    """, timing=True)
    wall = time.monotonic() - started
    build = times[-2]  # the CREATE INDEX, before the COMMIT
    return wall, build


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--trials", help="N:n pairs to measure instead, comma-separated (4000:800,20000:4000)")
    parser.add_argument("--analyses", type=int, help="analyses generated for the source rows")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    analyses = args.analyses or (2500 if args.quick else 12000)
    rows = setup(analyses)
    log(f"{rows} source rows")
    if args.quick:
        trials = [(0, 400), (0, 4000), (4000, 400), (4000, 4000)]
    else:
        trials = [(0, 400), (0, 4000), (4000, 400), (4000, 4000), (20000, 400), (20000, 2000), (20000, 4000),
                  (40000, 400), (40000, 4000), (0, 42000)]
    if args.trials:
        trials = [tuple(int(x) for x in pair.split(":")) for pair in args.trials.split(",")]
    print("| rows in the table N | rows written n | n/N | row by row | per row | bulk (drop, insert, build) "
          "| of which the build | build per row of N+n | bulk / row by row |")
    print("|---|---|---|---|---|---|---|---|---|")
    for existing, n in trials:
        if existing + n > rows:
            log(f"skipping N={existing} n={n}: only {rows} source rows")
            continue
        # Row by row at 42 000 rows takes minutes: measured once, at that size only on request.
        inc = [row_by_row(existing, n) for _ in range(runs if n <= 4000 else 1)]
        blk = [bulk(existing, n) for _ in range(runs)]
        r = statistics.median(inc)
        b = statistics.median(w for w, _ in blk)
        build = statistics.median(x for _, x in blk)
        ratio = f"{n / existing:.2f}" if existing else "∞"
        print(f"| {existing} | {n} | {ratio} | {r:.2f} s | {r / n * 1000:.2f} ms | {b:.2f} s | {build:.2f} s "
              f"| {build / (existing + n) * 1000:.3f} ms | {b / r:.2f} |", flush=True)
    # Without a vector index: 42-row transactions against one INSERT of every row.
    n = min(rows, 4000 if args.quick else 42000)
    plain = statistics.median(row_by_row(0, n, index=False) for _ in range(runs))
    fill(0, index=False)
    started = time.monotonic()
    psql(DB, f"BEGIN; {insert(0, n)} COMMIT;")
    one = time.monotonic() - started
    print(f"\nwithout a vector index, {n} rows into an empty table: row by row {plain:.2f} s "
          f"({plain / n * 1000:.3f} ms a row), in one transaction {one:.2f} s")
    psql("postgres", f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
