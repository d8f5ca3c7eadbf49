#!/usr/bin/env python3
"""Benchmarks of golden, side by side with pg_dump, psql and the original sequential restore.

`make bench` (full, under 30 minutes) writes BENCHMARKS.md; `make bench-quick` (small sizes,
under 3 minutes) writes target/bench/BENCHMARKS-quick.md. Every figure is a median of several
runs unless the table says otherwise. Wall time and peak RSS come from wait4(2) on each child.

The datasets are made by `golden generate` (deterministic, seeded) in databases of the local
server of `make db`; the embedding server is `examples/embed_server.rs` on 127.0.0.1.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where cargo built them (`make bench` builds them first), CARGO_TARGET_DIR when set.
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
GOLDEN = os.path.join(TARGET, "release/golden")
SERVER = os.path.join(TARGET, "release/examples/embed_server")
PG_BIN = "/usr/lib/postgresql/15/bin"
# The local server of `make db`, on GOLDEN_PGPORT as scripts/db.sh starts it.
SERVER_URL = f"postgres://postgres@127.0.0.1:{os.environ.get('GOLDEN_PGPORT') or 54329}"
WORK = os.path.join(ROOT, "target/bench")
TIME = "/usr/bin/time"


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def measure(cmd, env=None, ok_codes=(0,)):
    """Runs cmd under GNU time; returns (seconds, peak RSS in MB, stdout). Fails loudly when cmd
    exits with a code not in `ok_codes`. (Python's own wait4 would count the interpreter's pages
    shared before exec.)"""
    report = os.path.join(WORK, "time.out")
    fresh_safety_backup(cmd)
    started = time.monotonic()
    proc = subprocess.run([TIME, "-f", "%M", "-o", report] + cmd, env=env, capture_output=True)
    seconds = time.monotonic() - started
    if proc.returncode not in ok_codes:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
    with open(report) as f:
        rss_mb = int(f.read().strip().splitlines()[-1]) / 1024
    return seconds, rss_mb, proc.stdout.decode(errors="replace")


def fresh_safety_backup(cmd):
    """`restore --replace` never replaces a file with its safety backup: drop the last run's."""
    if "--safety-backup" in cmd:
        safety = cmd[cmd.index("--safety-backup") + 1]
        if os.path.exists(safety):
            os.remove(safety)
    return cmd


def median_of(runs, cmd, env=None):
    results = [measure(cmd, env) for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def first_restores(runs, database, file, provider, keep_cache):
    """The first restore of `file` into an empty database, by the default path (append) and by
    `--replace`, alternately, `runs` times each: medians (seconds) and whether every append took
    the bulk path. The tables are emptied before each run (the embedding cache too unless
    `keep_cache`), outside the measurement."""
    env = golden_env(database)
    append = [GOLDEN, "restore", "--json"] + provider + [file]
    replace = [GOLDEN, "restore", "-q", "--replace", "--yes", "--safety-backup",
               os.path.join(WORK, "safety.json")] + provider + [file]
    tables = "chunks, artifacts, artifact_versions, analyses, pending_embeddings, queries, dataset_extras"
    empty = f"TRUNCATE {tables}" + ("" if keep_cache else ", embedding_cache")
    appended, replaced, bulk = [], [], True
    for _ in range(runs):
        psql(database, empty)
        seconds, _, out = measure(append, env)
        appended.append(seconds)
        bulk = bulk and json.loads(out).get("bulk_load") is True
        psql(database, empty)
        replaced.append(measure(replace, env)[0])
    return statistics.median(appended), statistics.median(replaced), bulk


def db_url(name):
    return f"{SERVER_URL}/{name}"


def psql(database, sql):
    subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", db_url(database), "-c", sql],
                   check=True, env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})


def golden_env(database):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDEN_") and k != "DATABASE_URL"}
    env["DATABASE_URL"] = db_url(database)
    env["RUST_LOG"] = "error"
    return env


def fresh_database(name, analyses, embed_dims=1024):
    psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql("postgres", f'CREATE DATABASE "{name}"')
    psql(name, "CREATE EXTENSION IF NOT EXISTS vector")
    env = golden_env(name)
    subprocess.run([GOLDEN, "migrate", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
    if analyses:
        log(f"generating {analyses} analyses in {name}")
        subprocess.run([GOLDEN, "generate", "-q", "--analyses", str(analyses), "--embed-dims", str(embed_dims)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    return env


class EmbedServer:
    def __init__(self, port, delay_ms, max_batch=None):
        cmd = [SERVER, "--port", str(port), "--delay-ms", str(delay_ms)]
        if max_batch:
            cmd += ["--max-batch", str(max_batch)]
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self.requests()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("bench: the embedding server did not start")

    def requests(self):
        with urllib.request.urlopen(f"{self.url}/stats", timeout=2) as answer:
            return json.load(answer)["requests"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
            memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    pg = subprocess.run([os.path.join(PG_BIN, "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({cpu}), {memory} memory, {platform.system()} {platform.release()}, {pg}"


def commit():
    """The commit measured, and whether the tree had changes on top of it."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{head} (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else head


def mark(ok):
    return "met" if ok else "**missed**"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, under 3 minutes")
    parser.add_argument("--only", metavar="PARTS", help="only these rows, comma-separated: evaluate (needs the "
                        "bench_10000 database of a full run), local; printed, and written to "
                        "target/bench/BENCHMARKS-only.md")
    args = parser.parse_args()
    if args.only:
        return only(args.only.split(","))
    quick = args.quick
    began = time.monotonic()
    measured = commit()  # Before the run: the tree may change while it goes on.
    runs = 3
    os.makedirs(WORK, exist_ok=True)
    if not os.path.exists(TIME):
        log("installing GNU time (peak RSS)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "time"], check=True, stdout=subprocess.DEVNULL)
    rows = []  # (benchmark, golden, reference, target, verdict)
    notes = []

    sizes = [1000] if quick else [1000, 10000]
    big = 1000 if quick else 10000

    # 1. Backup against pg_dump --data-only of the three tables.
    backup_figures = {}
    for n in sizes:
        env = fresh_database(f"bench_{n}", n)
        out = os.path.join(WORK, f"backup_{n}.json")
        if os.path.exists(out):
            os.remove(out)
        # A fresh file each run: the unchanged-file shortcut would make later runs cheaper.
        def backup_once():
            if os.path.exists(out):
                os.remove(out)
            return measure([GOLDEN, "backup", "-q", "--output", out, "--metadata", out + ".meta"], env)
        results = [backup_once() for _ in range(runs)]
        g_time = statistics.median(r[0] for r in results)
        g_rss = statistics.median(r[1] for r in results)
        dump = os.path.join(WORK, f"dump_{n}.sql")
        d_time, d_rss = median_of(runs, [os.path.join(PG_BIN, "pg_dump"), "--data-only", "-t", "analyses", "-t", "chunks",
                                         "-t", "artifacts", "-f", dump, db_url(f"bench_{n}")])
        backup_figures[n] = (g_time, g_rss)
        rows.append((f"backup of {n} analyses: wall", f"{g_time:.2f} s", f"pg_dump {d_time:.2f} s",
                     "≤ 0.5 × pg_dump", mark(g_time <= 0.5 * d_time)))
        rows.append((f"backup of {n} analyses: peak RSS", f"{g_rss:.1f} MB", f"pg_dump {d_rss:.1f} MB", "< 64 MB",
                     mark(g_rss < 64)))

    # 2. Seed-sized restore against a provider answering in 200 ms.
    env = fresh_database("bench_seed", 98)
    seed_file = os.path.join(WORK, "seed.json")
    subprocess.run([GOLDEN, "backup", "-q", "--output", seed_file, "--metadata", seed_file + ".meta"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    server = EmbedServer(18301, 200)
    restore = [GOLDEN, "restore", "-q", "--replace", "--yes", "--embed-provider", "openai", "--embed-url", server.url,
               "--embed-no-cache", seed_file]
    s_time, s_rss = median_of(runs, restore, env)
    chunks = int(json.load(open(seed_file + ".meta"))["total_chunks"])
    if quick:
        original = f"original algorithm not run in bench-quick (expected {chunks} × 0.2 s = {chunks * 0.2:.0f} s)"
    else:
        # One request per chunk, one at a time: minutes per run, so one run.
        o_time, _ = median_of(1, restore + ["--embed-batch-size", "1", "--embed-concurrency", "1"], env)
        original = f"original algorithm {o_time:.1f} s (one run; expected {chunks * 0.2:.0f} s)"
    rows.append((f"restore of the seed-sized dataset (98 analyses, {chunks} chunks), provider at 200 ms",
                 f"{s_time:.2f} s", original, "< 1 s", mark(s_time < 1.0)))
    # 2b. The first restore of that file into an empty database: the default path (an append,
    #     which takes the bulk path there) beside --replace, each computing every vector.
    seed_runs = 5
    a_time, r_time, bulk = first_restores(seed_runs, "bench_seed", seed_file,
                                          ["--embed-provider", "openai", "--embed-url", server.url], keep_cache=False)
    server.stop()
    rows.append((f"first restore of the seed-sized dataset into an empty database by the default path (append"
                 f"{'' if bulk else ', **not** by the bulk path'}), provider at 200 ms",
                 f"{a_time:.2f} s", f"--replace {r_time:.2f} s (medians of {seed_runs}, alternating)",
                 "≤ 1.1 × --replace", mark(bulk and a_time <= 1.1 * r_time)))

    # 3. restore --replace of `big` analyses with every embedding cached, against psql of a
    #    pg_dump snapshot into the indexed schema, and COPY into the bare table + index build.
    env = golden_env(f"bench_{big}")
    backup_file = os.path.join(WORK, f"backup_{big}.json")
    fill = [GOLDEN, "restore", "-q", "--replace", "--yes", "--embed-provider", "hash", "--safety-backup",
            os.path.join(WORK, "safety.json"), backup_file]
    subprocess.run(fresh_safety_backup(fill), env=env, check=True, stdout=subprocess.DEVNULL)  # fills the cache
    c_time, c_rss = median_of(runs, fill, env)
    dump = os.path.join(WORK, f"dump_{big}.sql")
    psql_runs = 1
    psql_times = []
    for _ in range(psql_runs):
        psql(f"bench_{big}", "TRUNCATE chunks, artifacts, artifact_versions, analyses, pending_embeddings")
        started = time.monotonic()
        subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", dump,
                        db_url(f"bench_{big}")], check=True, stdout=subprocess.DEVNULL)
        psql_times.append(time.monotonic() - started)
    p_time = statistics.median(psql_times)
    copy_times = []
    index_times = []
    index_def = "CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding vector_cosine_ops)"
    for _ in range(runs):
        psql(f"bench_{big}", "TRUNCATE chunks, artifacts, artifact_versions, analyses, pending_embeddings; "
                             "DROP INDEX IF EXISTS chunks_embedding_hnsw_idx")
        started = time.monotonic()
        subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", dump,
                        db_url(f"bench_{big}")], check=True, stdout=subprocess.DEVNULL)
        indexing = time.monotonic()
        psql(f"bench_{big}", f"SET maintenance_work_mem = '1GB'; {index_def}")
        index_times.append(time.monotonic() - indexing)
        copy_times.append(time.monotonic() - started)
    b_time = statistics.median(copy_times)
    i_time = statistics.median(index_times)
    notes.append(f"- **What bounds `restore --replace` and `regenerate-embeddings`:** building the HNSW index over "
                 f"{big} analyses' vectors, which happens in the server: {i_time:.1f} s of the {b_time:.1f} s of "
                 f"COPY + index. Both build it once, after the rows are written, with "
                 f"`maintenance_work_mem` raised to 1 GB (pgvector's parallel build uses both cores).")
    rows.append((f"restore --replace of {big} analyses, every embedding cached", f"{c_time:.1f} s",
                 f"COPY into the bare table + index build {b_time:.1f} s; psql -f of the dump into the indexed "
                 f"schema {p_time:.1f} s (one run)", "≤ 1.25 × COPY + index, far below psql",
                 mark(c_time <= 1.25 * b_time and c_time < p_time)))
    rows.append((f"restore --replace of {big} analyses: peak RSS", f"{c_rss:.1f} MB", "", "< 64 MB", mark(c_rss < 64)))

    # 3b. The same dataset as a SkillForge flat 2.0 file (chunks listed apart from their
    #     analyses, read through golden's flat reader), against the golden file just measured.
    flat_file = os.path.join(WORK, f"flat_{big}.json")
    write_flat(backup_file, flat_file)
    flat = [GOLDEN, "restore", "-q", "--replace", "--yes", "--embed-provider", "hash", "--safety-backup",
            os.path.join(WORK, "safety.json"), flat_file]
    f_time, f_rss = median_of(runs, flat, env)
    flat_mb = os.path.getsize(flat_file) / 1e6
    rows.append((f"restore --replace of the same {big} analyses as a SkillForge flat 2.0 file ({flat_mb:.0f} MB)",
                 f"{f_time:.1f} s, {f_rss:.1f} MB", f"golden's own file {c_time:.1f} s, {c_rss:.1f} MB",
                 "≤ 1.25 × the golden file's time, < 64 MB", mark(f_time <= 1.25 * c_time and f_rss < 64)))

    # 3c. The first restore of the `big` file into an empty database, every embedding cached:
    #     the default path (an append, which takes the bulk path there) beside --replace.
    a_time, r_time, bulk = first_restores(runs, f"bench_{big}", backup_file, ["--embed-provider", "hash"],
                                          keep_cache=True)
    rows.append((f"first restore of {big} analyses into an empty database by the default path (append"
                 f"{'' if bulk else ', **not** by the bulk path'}), every embedding cached", f"{a_time:.1f} s",
                 f"--replace {r_time:.1f} s (alternating)", "≤ 1.1 × --replace",
                 mark(bulk and a_time <= 1.1 * r_time)))
    notes.append("- **The first restore by the default path** is an append into an empty database, which takes "
                 "the bulk path (`src/restore/bulk.rs`): one transaction, the HNSW index dropped and built once, "
                 "as `--replace` does. Both rows empty the tables before each run, outside the measurement; the "
                 "seed-sized one empties the embedding cache too, so every run asks the provider for every vector.")

    # 3d. restore --sync of the big dataset after a pull request's edits, against --replace of
    #     the same edited file, each from the same starting database (a copy of bench_{big}).
    bench_sync(big, backup_file, runs, rows, notes)
    bench_diff(big, backup_file, runs, rows, notes)
    bench_evaluate(big, runs, rows, notes)
    bench_local(runs, rows, notes)

    # 4. regenerate-embeddings of every chunk against a provider at 20 ms per request.
    subprocess.run(fresh_safety_backup(fill), env=env, check=True, stdout=subprocess.DEVNULL)
    big_chunks = int(json.load(open(backup_file + ".meta"))["total_chunks"])
    server = EmbedServer(18302, 20)
    regenerate = [GOLDEN, "regenerate-embeddings", "-q", "--all", "--embed-no-cache", "--embed-provider", "openai",
                  "--embed-url", server.url, "--embed-model", "bench-model"]
    r_time, r_rss = median_of(runs, regenerate, env)
    server.stop()
    bound = big_chunks / (128 * 4) * 0.020
    notes.append(f"- **regenerate-embeddings:** the provider bound is chunks ÷ (batch size 128 × concurrency 4) × "
                 f"20 ms. The run embeds the next window while it commits the last into `pending_embeddings` (its "
                 f"resumable progress), then swaps every vector in with one transaction: the rows are set aside with "
                 f"their new vectors, `chunks` is truncated and written back, and the index is built once, over live "
                 f"rows only. (An `UPDATE` of every row would leave the old row versions in the table, and an index "
                 f"built in the same transaction indexes them too: twice the build time.)")
    rows.append((f"regenerate-embeddings of {big_chunks} chunks, provider at 20 ms", f"{r_time:.1f} s "
                 f"({big_chunks / r_time:.0f} embeddings/s)", f"provider bound {bound:.1f} s",
                 "≤ 1.25 × (cached restore + bound)", mark(r_time <= 1.25 * (c_time + bound))))

    # 5. Peak RSS of backup and restore as the dataset grows.
    rss_sizes = [1000] if quick else [1000, 10000, 100000]
    for n in rss_sizes:
        name = f"bench_{n}"
        if n not in sizes:
            # The largest size without the HNSW index: its build happens in the server, not in
            # golden, and would take most of the time budget.
            env = fresh_database(name, n, embed_dims=0)
            psql(name, "DROP INDEX IF EXISTS chunks_embedding_hnsw_idx")
            notes.append(f"- **{n} analyses are measured without the HNSW index:** building it over their vectors "
                         f"happens in the server, not in golden, and would take most of the time budget. The row "
                         f"measures golden's memory as the file grows.")
        env = golden_env(name)
        out = os.path.join(WORK, f"rss_{n}.json")
        if os.path.exists(out):
            os.remove(out)
        b_time, b_rss, _ = measure([GOLDEN, "backup", "-q", "--output", out, "--metadata", out + ".meta"], env)
        t_time, t_rss, _ = measure([GOLDEN, "restore", "-q", "--replace", "--yes", "--embed-provider", "hash",
                                 "--safety-backup", os.path.join(WORK, "safety.json"), out], env)
        rows.append((f"peak RSS at {n} analyses", f"backup {b_rss:.1f} MB, restore {t_rss:.1f} MB",
                     f"(backup {b_time:.1f} s, restore {t_time:.1f} s)", "< 64 MB", mark(max(b_rss, t_rss) < 64)))

    # 6. The shape of the file does not matter: one analysis holding every chunk.
    chunks_in_one = 10000 if quick else 100000
    name = "bench_one_analysis"
    fresh_database(name, 0)
    psql(name, "DROP INDEX IF EXISTS chunks_embedding_hnsw_idx")
    env = golden_env(name)
    one = os.path.join(WORK, "one_analysis.json")
    write_one_analysis(one, chunks_in_one)
    o_time, o_rss, _ = measure([GOLDEN, "restore", "-q", "--replace", "--yes", "--embed-provider", "hash",
                               "--embed-no-cache", "--safety-backup", os.path.join(WORK, "safety.json"), one], env)
    rows.append((f"restore of one analysis of {chunks_in_one} chunks (~1 KB each): peak RSS", f"{o_rss:.1f} MB",
                 f"({os.path.getsize(one) / 1e6:.0f} MB file, {o_time:.1f} s, one run)", "< 64 MB",
                 mark(o_rss < 64)))
    notes.append("- **One analysis of many chunks** is read, embedded and written a window of about a thousand "
                 "chunks at a time, like many small analyses; it is measured without the HNSW index, as the "
                 "largest dataset above.")

    table = ["| benchmark | golden | reference | target | verdict |", "|---|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    text = "\n".join(table)
    print(text)
    header = (f"# Benchmarks\n\nMachine: {machine()}.\n\nProduced by `make {'bench-quick' if quick else 'bench'}` "
              f"on {time.strftime('%Y-%m-%d')} at commit {measured}, in {(time.monotonic() - began) / 60:.1f} "
              f"min; medians of {runs} runs unless a row says otherwise.\n\n")
    target = os.path.join(WORK, "BENCHMARKS-quick.md") if quick else os.path.join(ROOT, "BENCHMARKS.md")
    with open(target, "w") as f:
        f.write(header + text + "\n\n" + "\n".join(notes) + "\n")
    log(f"wrote {os.path.relpath(target, ROOT)}")


def edited_copies(backup_file, work):
    """The big backup after three kinds of pull request: one chunk's text rewritten, 1 % of the
    chunks' texts rewritten (every hundredth), the first 100 analyses deleted (with the golden
    queries expecting their chunks). Totals made true again, checksum dropped (an edited file)."""
    def write(name, edit):
        data = json.load(open(backup_file))
        edit(data)
        analyses = data["analyses"]
        metadata = data["metadata"]
        metadata.pop("checksum", None)
        metadata["total_analyses"] = len(analyses)
        metadata["total_chunks"] = sum(len(a["chunks"]) for a in analyses)
        metadata["total_artifacts"] = sum((1 if a.get("artifact") else 0) + len(a.get("artifact_versions", []))
                                          for a in analyses)
        metadata["total_queries"] = len(data.get("queries", []))
        path = os.path.join(work, name)
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
        return path

    def one_chunk(data):
        data["analyses"][len(data["analyses"]) // 2]["chunks"][0]["content"] += " (rewritten in review)"

    def one_percent(data):
        n = 0
        for analysis in data["analyses"]:
            for chunk in analysis["chunks"]:
                n += 1
                if n % 100 == 0:
                    chunk["content"] += " (rewritten in review)"

    def hundred_deleted(data):
        gone = {c["id"] for a in data["analyses"][:100] for c in a["chunks"]}
        data["analyses"] = data["analyses"][100:]
        data["queries"] = [q for q in data.get("queries", []) if not set(q["expected_chunk_ids"]) & gone]

    return [("1 chunk's text edited", write("sync_one.json", one_chunk), "one"),
            ("1 % of the chunks' texts edited", write("sync_percent.json", one_percent), "percent"),
            ("100 analyses deleted", write("sync_deleted.json", hundred_deleted), "deleted")]


def bench_sync(big, backup_file, runs, rows, notes):
    template = f"bench_{big}"
    work_db = "bench_sync"
    safety = os.path.join(WORK, "safety-sync.json")

    def timed(cmd):
        """Median time and RSS of `cmd` on fresh copies of the starting database, with the last
        run's JSON summary."""
        results = []
        for _ in range(runs):
            psql("postgres", f'DROP DATABASE IF EXISTS "{work_db}" WITH (FORCE)')
            psql("postgres", f'CREATE DATABASE "{work_db}" TEMPLATE "{template}"')
            results.append(measure(cmd, golden_env(work_db)))
        return (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results),
                json.loads(results[-1][2]))

    for label, edited, kind in edited_copies(backup_file, WORK):
        sync = [GOLDEN, "restore", "-q", "--json", "--sync", "--yes", "--embed-provider", "hash",
                "--safety-backup", safety, edited]
        replace = [GOLDEN, "restore", "-q", "--json", "--replace", "--yes", "--embed-provider", "hash",
                   "--safety-backup", safety, edited]
        s_time, s_rss, s_json = timed(sync)
        r_time, _, _ = timed(replace)
        computed, rebuilt = s_json["embeddings_computed"], s_json["index_rebuilt"]
        figure = (f"{s_time:.2f} s, {s_rss:.1f} MB; {computed} embedding{'s' if computed != 1 else ''} computed, "
                  f"index {'rebuilt' if rebuilt else 'kept'}")
        reference = f"--replace of the same file {r_time:.1f} s ({r_time / s_time:.1f} × the sync's time)"
        if kind == "one":
            target, ok = "< 2 s, exactly 1 embedding, no index rebuild", s_time < 2 and computed == 1 and not rebuilt
        elif kind == "percent":
            target, ok = "≥ 5 × faster than --replace", r_time >= 5 * s_time
        else:
            target, ok = "faster than --replace, nothing embedded", s_time < r_time and computed == 0
        rows.append((f"restore --sync of {big} analyses after {label}", figure, reference, target, mark(ok)))
    psql("postgres", f'DROP DATABASE IF EXISTS "{work_db}" WITH (FORCE)')
    notes.append("- **restore --sync** reads the file three times (validation, comparison, writes) and compares it "
                 "with the database a window at a time; what it writes and deletes is noted in temp tables. The "
                 "starting database of every run is a fresh copy (`CREATE DATABASE … TEMPLATE`) of the one that "
                 "holds the unedited file. An updated chunk keeps the HNSW index: each new row version is one "
                 "index insert, a few milliseconds at this size, which is what the 1 % row spends most of its "
                 "time on.")


def bench_diff(big, backup_file, runs, rows, notes):
    """`golden diff` of the big backup against its copy with 1 % of the chunks' texts edited
    (written by `edited_copies`), beside `verify` of the backup, alternately; and against the
    same data with its analyses in reverse order, where every record waits for its match."""
    edited = os.path.join(WORK, "sync_percent.json")
    reversed_file = os.path.join(WORK, "diff_reversed.json")
    data = json.load(open(backup_file))
    data["analyses"].reverse()
    with open(reversed_file, "w") as f:
        json.dump(data, f, indent=2)
    del data
    diff = [GOLDEN, "diff", "--json", backup_file, edited]
    verify = [GOLDEN, "verify", "-q", backup_file]
    d_runs, v_runs = [], []
    for _ in range(max(runs, 5)):
        d_runs.append(measure(diff, ok_codes=(1,)))
        v_runs.append(measure(verify))
    d_time = statistics.median(r[0] for r in d_runs)
    d_rss = statistics.median(r[1] for r in d_runs)
    v_time = statistics.median(r[0] for r in v_runs)
    changed = json.loads(d_runs[-1][2])["summary"]["chunk"]["changed"]
    rows.append((f"diff of two {big}-analysis files, 1 % of the chunks' texts edited ({changed} chunks changed)",
                 f"{d_time:.2f} s, {d_rss:.1f} MB", f"verify of one of them {v_time:.2f} s ({d_time / v_time:.2f} ×)",
                 "≤ 2 × verify, ≤ 64 MB", mark(d_time <= 2 * v_time and d_rss <= 64)))
    r_time, r_rss = median_of(runs, [GOLDEN, "diff", "--json", backup_file, reversed_file])
    rows.append((f"diff of the {big}-analysis file against the same data in reverse order (no difference)",
                 f"{r_time:.2f} s, {r_rss:.1f} MB", f"the 1 % diff above {d_time:.2f} s", "≤ 64 MB",
                 mark(r_rss <= 64)))
    notes.append("- **golden diff** reads both files at once, one thread each, and compares records by id as they "
                 "meet: files in the same order keep only the records near the reading position waiting, so the "
                 "1 % diff costs about one read of one file. In reverse order every record waits for its match; "
                 "past 8 MB the waiting records go to a temp file and only their ids stay in memory.")


def bench_evaluate(big, runs, rows, notes):
    """`golden evaluate` comparing the current model with a candidate whose vectors are cached:
    on the sample (48 queries, 188 chunks), and on the `big` dataset with 1 000 queries, each
    beside the plain evaluation of the same run and without the randomization test."""
    sample = os.path.join(ROOT, "data", "golden_dataset_backup.json")
    env = fresh_database("bench_eval_sample", 0)
    subprocess.run([GOLDEN, "restore", "-q", "--embed-provider", "hash", sample], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    compare = [GOLDEN, "evaluate", "--json", "--embed-provider", "hash", "--candidate-dims", "256"]
    subprocess.run(compare, env=env, check=True, stdout=subprocess.DEVNULL)  # fills the candidate's cache
    sample_runs = max(runs, 5)
    c_runs, p_runs, e_runs = [], [], []
    for _ in range(sample_runs):
        c_runs.append(measure(compare, env))
        p_runs.append(measure(compare + ["--permutations", "0"], env))
        e_runs.append(measure([GOLDEN, "evaluate", "--json", "--embed-provider", "hash", "--exact"], env))
    c_time = statistics.median(r[0] for r in c_runs)
    p_time = statistics.median(r[0] for r in p_runs)
    e_time = statistics.median(r[0] for r in e_runs)
    computed = json.loads(c_runs[-1][2])["candidate"]["chunk_vectors"]["computed"]
    rows.append(("evaluate: two models compared on the sample (48 queries, 188 chunks), candidate's vectors cached "
                 f"({computed} computed)", f"{c_time:.2f} s", f"one model, exact: {e_time:.2f} s", "< 2 s",
                 mark(c_time < 2 and computed == 0)))
    rows.append(("evaluate: what the randomization test (10 000 permutations) adds to the sample's comparison",
                 f"{c_time - p_time:+.2f} s", f"--permutations 0: {p_time:.2f} s", "< 0.5 s",
                 mark(c_time - p_time < 0.5)))

    # The big dataset, with 1 000 queries made from chunks' openings, each expecting its chunk.
    name = f"bench_{big}"
    env = golden_env(name)
    psql(name, "DELETE FROM queries; DELETE FROM embedding_cache WHERE input_type = 'query' OR dims = 256")
    psql(name, "INSERT INTO queries (id, query, expected_chunk_ids, category, difficulty) "
               "SELECT 'bq-' || lpad(n::text, 4, '0'), left(content, 60), ARRAY[id], 'c' || (n % 5), "
               "(ARRAY['easy', 'medium', 'hard'])[1 + n % 3] FROM (SELECT id, content, row_number() OVER (ORDER BY id) "
               "AS n FROM chunks ORDER BY id LIMIT 1000) s")
    chunks = int(subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-At", "-c", "SELECT count(*) FROM chunks",
                                 db_url(name)], check=True, capture_output=True, text=True).stdout.strip())
    compare = [GOLDEN, "evaluate", "--json", "--embed-provider", "hash", "--candidate-dims", "256"]
    started = time.monotonic()
    subprocess.run(compare, env=env, check=True, stdout=subprocess.DEVNULL)  # fills the candidate's cache
    fill_time = time.monotonic() - started
    b_runs, q_runs, x_runs, h_runs = [], [], [], []
    for _ in range(max(runs, 5)):
        b_runs.append(measure(compare, env))
        q_runs.append(measure(compare + ["--permutations", "0"], env))
        x_runs.append(measure([GOLDEN, "evaluate", "--json", "--embed-provider", "hash", "--exact"], env))
        h_runs.append(measure([GOLDEN, "evaluate", "--json", "--embed-provider", "hash"], env))
    b_time = statistics.median(r[0] for r in b_runs)
    b_rss = statistics.median(r[1] for r in b_runs)
    q_time = statistics.median(r[0] for r in q_runs)
    x_time = statistics.median(r[0] for r in x_runs)
    h_time = statistics.median(r[0] for r in h_runs)
    computed = json.loads(b_runs[-1][2])["candidate"]["chunk_vectors"]["computed"]
    # pgvector's exact search, for the choice of searching in memory: a sequential scan per
    # query, 20 queries timed and scaled to 1 000.
    probe = ("SET enable_indexscan = off; SET enable_bitmapscan = off; "
             + " ".join(f"SELECT id FROM chunks ORDER BY embedding <=> (SELECT embedding FROM chunks ORDER BY id "
                        f"OFFSET {i * 97} LIMIT 1) LIMIT 5;" for i in range(20)))
    started = time.monotonic()
    subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-c", probe, db_url(name)], check=True,
                   stdout=subprocess.DEVNULL)
    scan_time = (time.monotonic() - started) * 1000 / 20
    rows.append((f"evaluate: two models compared on {big} analyses ({chunks} chunks) with 1 000 queries, candidate's "
                 f"vectors cached ({computed} computed)", f"{b_time:.1f} s, {b_rss:.0f} MB",
                 f"one model: exact {x_time:.1f} s, HNSW index {h_time:.1f} s; --permutations 0 {q_time:.1f} s; "
                 f"first comparison filling the cache {fill_time:.1f} s (one run)", "< 30 s",
                 mark(b_time < 30 and computed == 0)))
    rows.append(("evaluate: what the randomization test (10 000 permutations) adds on 1 000 queries",
                 f"{b_time - q_time:+.2f} s", f"--permutations 0: {q_time:.1f} s", "< 0.5 s",
                 mark(b_time - q_time < 0.5)))
    notes.append(f"- **evaluate's exact search runs in memory:** the chunks' unit vectors in one matrix and 64 "
                 f"queries at a time multiplied against it. pgvector's exact search (a sequential scan per query, "
                 f"20 queries timed in psql) would take about {scan_time:.0f} s for the 1 000 queries alone. A "
                 f"comparison searches both models that way, so it reads both models' vectors into memory "
                 f"({chunks} × (1024 + 256) × 4 bytes here).")


def bench_local(runs, rows, notes):
    """`--embed-provider local` (all-MiniLM-L6-v2 in process): texts per second on chunks of about
    210 tokens, beside `hash` and one HTTP request to the embedding server; peak RSS; and the first
    restore of the sample into a new database, then a repeated one (every vector cached)."""
    name = "bench_local"
    env = fresh_database(name, 50, embed_dims=0)
    chunks = int(subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-At", "-c", "SELECT count(*) FROM chunks",
                                 db_url(name)], check=True, capture_output=True, text=True).stdout.strip())
    regenerate = [GOLDEN, "regenerate-embeddings", "-q", "--json", "--all", "--embed-no-cache"]
    l_runs = [measure(regenerate + ["--embed-provider", "local"], env) for _ in range(runs)]
    l_time = statistics.median(r[0] for r in l_runs)
    l_rss = statistics.median(r[1] for r in l_runs)
    h_time, _ = median_of(runs, regenerate + ["--embed-provider", "hash", "--embed-dims", "384"], env)
    server = EmbedServer(18303, 0)
    before = server.requests()
    o_time, _ = median_of(runs, regenerate + ["--embed-provider", "openai", "--embed-url", server.url, "--embed-model",
                                              "bench-model", "--embed-dims", "384", "--embed-batch-size", "32",
                                              "--embed-concurrency", "1"], env)
    requests = (server.requests() - before) / runs
    server.stop()
    round_trip = o_time / max(requests, 1)
    rows.append((f"local model (all-MiniLM-L6-v2): regenerate-embeddings of {chunks} chunks of about 210 tokens "
                 f"(~1 KB), two threads", f"{chunks / l_time:.1f} texts/s ({l_time:.1f} s)",
                 f"hash {chunks / h_time:.0f} texts/s ({h_time:.2f} s); one HTTP request of 32 texts to a local "
                 f"server answering at once {round_trip * 1000:.0f} ms (the local model takes "
                 f"{32 / (chunks / l_time) * 1000:.0f} ms for 32)", "≥ 12 texts/s", mark(chunks / l_time >= 12)))
    rows.append(("local model: peak RSS while embedding", f"{l_rss:.0f} MB", "", "≤ 300 MB", mark(l_rss <= 300)))

    sample = os.path.join(ROOT, "data", "golden_dataset_backup.json")
    name = "bench_local_sample"
    first_times, again_times, computed = [], [], []
    for _ in range(runs):
        env = fresh_database(name, 0)  # a new database: empty tables, empty cache, vector(1024)
        started = time.monotonic()
        out = subprocess.run([GOLDEN, "restore", "-q", "--json", "--embed-provider", "local", sample], env=env,
                             check=True, capture_output=True, text=True).stdout
        first_times.append(time.monotonic() - started)
        psql(name, "TRUNCATE chunks, artifacts, artifact_versions, analyses, queries, pending_embeddings")
        started = time.monotonic()
        again = subprocess.run([GOLDEN, "restore", "-q", "--json", "--embed-provider", "local", sample], env=env,
                               check=True, capture_output=True, text=True).stdout
        again_times.append(time.monotonic() - started)
        computed.append((json.loads(out)["embeddings_computed"], json.loads(again)["embeddings_computed"]))
    f_time = statistics.median(first_times)
    a_time = statistics.median(again_times)
    rows.append(("local model: first restore of the sample (188 chunks) into a new database, by the default path",
                 f"{f_time:.1f} s ({computed[-1][0]} computed)",
                 f"the same again, emptied tables: {a_time:.1f} s, {computed[-1][1]} model calls (cache)",
                 "≤ 20 s; 0 model calls again", mark(f_time <= 20 and all(c[1] == 0 for c in computed))))
    notes.append("- **The local model** runs all-MiniLM-L6-v2 with candle on the CPU: one worker per core, texts "
                 "sorted by length and grouped up to 512 tokens, glibc's allocator told to keep "
                 "its buffers (`src/embed/local.rs` has the figures that chose those settings). The rows "
                 "include each command's start, the model's load and SHA-256 check (about 0.5 s) and the "
                 "database writes.")


def only(parts):
    """Some rows alone, for re-measuring them without a full run."""
    began = time.monotonic()
    measured = commit()
    rows, notes = [], []
    for part in parts:
        if part == "evaluate":
            bench_evaluate(10000, 3, rows, notes)
        elif part == "local":
            bench_local(3, rows, notes)
        else:
            raise SystemExit(f"bench: unknown part {part!r} (evaluate, local)")
    table = ["| benchmark | golden | reference | target | verdict |", "|---|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    text = (f"Produced by `python3 scripts/bench.py --only {','.join(parts)}` on {time.strftime('%Y-%m-%d')} at "
            f"commit {measured}, in {(time.monotonic() - began) / 60:.1f} min.\n\n" + "\n".join(table) + "\n\n"
            + "\n".join(notes) + "\n")
    print(text)
    with open(os.path.join(WORK, "BENCHMARKS-only.md"), "w") as f:
        f.write(text)


def write_flat(golden_file, path):
    """Writes the dataset of a golden backup as SkillForge writes its flat 2.0 file: `data` with
    three lists linked by `analysis_id` (chunks first, shuffled by id, so the reader cannot lean
    on their order), snippet/chunk_idx/path/hash keys, and `json.dump(indent=2)`'s escapes."""
    import hashlib
    with open(golden_file) as f:
        backup = json.load(f)
    analyses, artifacts, chunks = [], [], []
    for analysis in backup["analyses"]:
        head = {key: analysis[key] for key in ("id", "url", "title", "content_type", "status", "created_at", "updated_at")}
        analyses.append(head)
        for chunk in analysis["chunks"]:
            chunks.append({"id": chunk["id"], "analysis_id": analysis["id"], "snippet": chunk["content"],
                           "granularity": "coarse", "section_title": chunk["section_title"],
                           "chunk_idx": chunk["chunk_index"], "chunk_total": len(analysis["chunks"]),
                           "path": [analysis["id"], chunk["section_path"] or ""],
                           "hash": hashlib.sha256(chunk["content"].encode()).hexdigest(),
                           "content_type": chunk["content_type"], "language": "en",
                           "model": "text-embedding-3-small", "model_version": None,
                           "created_at": analysis["created_at"]})
        if analysis.get("artifact"):
            artifact = analysis["artifact"]
            artifacts.append({"id": artifact["id"], "analysis_id": analysis["id"],
                              "markdown_content": artifact["summary"], "version": 1,
                              "artifact_metadata": {"topics": []}, "created_at": artifact["created_at"]})
    chunks.sort(key=lambda chunk: chunk["id"])
    flat = {"version": "2.0", "created_at": "2026-02-01T00:00:00.000000", "source": "bench",
            "counts": {"analyses": len(analyses), "artifacts": len(artifacts), "chunks": len(chunks), "fixtures": 0},
            "metadata": {"backup_type": "full", "includes_fixtures": True, "schema_version": 2},
            "data": {"chunks": chunks, "analyses": analyses, "artifacts": artifacts},
            "fixtures": {"documents": [], "source_url_map": {}, "queries": []}}
    with open(path, "w") as f:
        json.dump(flat, f, indent=2)


def write_one_analysis(path, chunks):
    """A backup file of one analysis holding `chunks` chunks of about 1 KB of text each."""
    words = ["retrieval", "vector", "index", "chunk", "golden", "dataset", "query", "embedding",
             "recall", "cosine", "graph", "layer", "postgres", "backup", "restore", "model"]
    with open(path, "w") as f:
        f.write('{"version": "1.0", "metadata": {"total_analyses": 1, "total_chunks": %d, "total_artifacts": 0},\n'
                '"analyses": [{"id": "6b1c7f2e-3d4a-4e5b-8c9d-0a1b2c3d4e5f", "url": "https://bench.golden-dataset.org/one",'
                ' "title": "One", "content_type": "article", "status": "completed",'
                ' "created_at": "2026-01-01T00:00:00.000000Z", "updated_at": "2026-01-01T00:00:00.000000Z",'
                ' "chunks": [\n' % chunks)
        for i in range(chunks):
            text = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(120)) + f" {i}."
            f.write('%s{"id": "00000000-0000-4000-8000-%012x", "content": "%s", "section_title": null, '
                    '"section_path": null, "content_type": "article", "chunk_index": %d}'
                    % ("" if i == 0 else ",\n", i, text, i))
        f.write('], "artifact": null}]}\n')


if __name__ == "__main__":
    main()
