"""Writes the broken backup files of this folder from small valid backups: golden's own, the
seed template's nested "1.0" and SkillForge's flat "1.0"."""
import copy, hashlib, json

BASE = {
    "version": "1.0",
    "created_at": "2026-01-31T12:00:00.000000Z",
    "metadata": {"total_analyses": 2, "total_chunks": 3, "total_artifacts": 1, "total_queries": 1},
    "analyses": [
        {"id": "11111111-1111-4111-8111-111111111111", "url": "https://www.postgresql.org/docs/current/mvcc.html",
         "title": "MVCC", "content_type": "documentation", "status": "completed",
         "created_at": "2025-01-01T00:00:00.000000Z", "updated_at": "2025-01-01T00:00:00.000000Z",
         "chunks": [
             {"id": "22222222-2222-4222-8222-222222222221", "content": "Snapshots isolate readers.",
              "section_title": "Intro", "section_path": "MVCC > Intro", "content_type": "documentation", "chunk_index": 0},
             {"id": "22222222-2222-4222-8222-222222222222", "content": "Writers create row versions.",
              "section_title": None, "section_path": None, "content_type": "documentation", "chunk_index": 1}],
         "artifact": {"id": "33333333-3333-4333-8333-333333333333", "summary": "How PostgreSQL uses MVCC.",
                      "created_at": "2025-01-01T00:00:00.000000Z"}},
        {"id": "11111111-1111-4111-8111-111111111112", "url": "https://arxiv.org/abs/1603.09320",
         "title": None, "content_type": "paper", "status": "completed",
         "created_at": "2025-01-02T00:00:00.000000Z", "updated_at": "2025-01-02T00:00:00.000000Z",
         "chunks": [
             {"id": "22222222-2222-4222-8222-222222222223", "content": "HNSW builds layered graphs.",
              "section_title": "Method", "section_path": "HNSW > Method", "content_type": "paper", "chunk_index": 0}],
         "artifact": None}],
    "queries": [{"id": "q1", "query": "how do readers avoid blocking writers",
                 "expected_chunk_ids": ["22222222-2222-4222-8222-222222222221"], "category": "databases",
                 "difficulty": "easy"}],
}
TEXT = json.dumps(BASE, indent=2)


def seed_analysis(a):
    """An analysis as the seed's template script writes it: no title or updated_at, findings."""
    artifact = a["artifact"] and {"id": a["artifact"]["id"], "summary": a["artifact"]["summary"],
                                  "key_findings": ["Readers never block writers"], "metadata": {"words": 5}}
    return {"id": a["id"], "url": a["url"], "content_type": a["content_type"], "status": a["status"],
            "created_at": "2025-01-01T00:00:00+00:00",
            "findings": [{"agent": "tech_comparator", "category": "architecture", "content": "Caf\u00e9-sized.",
                          "confidence": 0.9, "metadata": {}}],
            "chunks": a["chunks"], "artifact": artifact}


SEED = {"version": "1.0", "created_at": "2026-01-22T10:00:00.123456+00:00",
        "metadata": {"total_analyses": 2, "total_chunks": 3, "total_artifacts": 1},
        "analyses": [seed_analysis(a) for a in BASE["analyses"]]}


def flat_chunk(id, analysis_id, text, index, path):
    return {"id": id, "analysis_id": analysis_id, "snippet": text, "granularity": "fine", "section_title": None,
            "chunk_idx": index, "chunk_total": 2, "path": path, "hash": hashlib.sha256(text.encode()).hexdigest(),
            "content_type": "documentation", "language": "en", "model": "text-embedding-3-small",
            "model_version": None, "created_at": "2025-01-01T00:00:00+00:00"}


# SkillForge's flat "1.0": three lists linked by analysis_id, a naive header time.
FLAT = {
    "version": "1.0",
    "created_at": "2025-12-12T08:33:16.928533",
    "source": "SkillForge Golden Dataset Backup",
    "counts": {"analyses": 2, "artifacts": 1, "chunks": 3},
    "data": {
        "analyses": [{k: a[k] for k in ("id", "url", "content_type", "title", "status", "created_at", "updated_at")}
                     for a in BASE["analyses"]],
        "artifacts": [{"id": "33333333-3333-4333-8333-333333333333", "analysis_id": "11111111-1111-4111-8111-111111111111",
                       "markdown_content": "How PostgreSQL uses MVCC.", "version": 1,
                       "artifact_metadata": {"document_id": "mvcc"}, "created_at": "2025-01-01T00:00:00+00:00"}],
        "chunks": [
            flat_chunk("44444444-4444-4444-8444-444444444441", "11111111-1111-4111-8111-111111111111",
                       "Snapshots isolate readers.", 0, ["mvcc", "mvcc/intro"]),
            flat_chunk("44444444-4444-4444-8444-444444444442", "11111111-1111-4111-8111-111111111111",
                       "Writers create row versions.", 1, ["mvcc", "mvcc/versions"]),
            flat_chunk("44444444-4444-4444-8444-444444444443", "11111111-1111-4111-8111-111111111112",
                       "HNSW builds layered graphs.", 0, ["hnsw"])],
    },
}
cases, expected = {}, {}


def case(name, verify_code, phrase, content, place=None):
    """`verify` exits `verify_code`, and one line of its message holds `phrase` (and `place`)."""
    cases[name] = content
    expected[name] = {"verify": verify_code, "message": phrase}
    if place:
        expected[name]["place"] = place


def edited(change, base=BASE):
    data = copy.deepcopy(base)
    change(data)
    return json.dumps(data, indent=2)


case("empty.json", 2, "is empty", "")
case("whitespace.json", 2, "truncated", "   \n\n")
for cut in (1, 40, 400, len(TEXT) - 2):
    case(f"truncated-at-{cut}.json", 2, "truncated", TEXT[:cut])
case("not-json.json", 2, "not valid JSON", "version = 1.0\nanalyses = []\n")
case("trailing-garbage.json", 2, "not valid JSON", TEXT + "\n}{")
case("a-list.json", 2, "not a golden backup", "[1, 2, 3]")
case("a-string.json", 2, "not a golden backup", '"backup"')
case("no-analyses.json", 2, "no \"analyses\" list", json.dumps({"version": "1.0", "metadata": {}}))
case("no-version.json", 2, "no \"version\"", edited(lambda d: d.pop("version")))
case("version-2.json", 2, "version \"2.0\" is not supported", edited(lambda d: d.update(version="2.0")))
case("version-number.json", 2, "must be a string", edited(lambda d: d.update(version=1.0)))
case("analyses-object.json", 2, "not a golden backup", edited(lambda d: d.update(analyses={"a": 1})))
case("missing-url.json", 3, "missing \"url\"", edited(lambda d: d["analyses"][0].pop("url")))
case("chunk-index-string.json", 3, "chunk_index \"0\" is not an integer",
     edited(lambda d: d["analyses"][0]["chunks"][0].update(chunk_index="0")))
case("title-number.json", 3, "\"title\" must be a string or null", edited(lambda d: d["analyses"][0].update(title=7)))
case("bad-uuid.json", 3, "is not a UUID", edited(lambda d: d["analyses"][1].update(id="not-a-uuid")))
case("bad-date.json", 3, "is not a datetime", edited(lambda d: d["analyses"][0].update(created_at="31/01/2025")))
case("duplicate-analysis-id.json", 3, "duplicate analysis id",
     edited(lambda d: d["analyses"][1].update(id=d["analyses"][0]["id"])))
case("duplicate-chunk-id.json", 3, "duplicate chunk id",
     edited(lambda d: d["analyses"][1]["chunks"][0].update(id=d["analyses"][0]["chunks"][0]["id"])))
case("chunk-index-clash.json", 3, "chunk_index 0 is used by another chunk",
     edited(lambda d: d["analyses"][0]["chunks"][1].update(chunk_index=0)))
case("totals-lie.json", 3, "total_chunks says 30", edited(lambda d: d["metadata"].update(total_chunks=30)))
case("claims-a-billion.json", 3, "total_analyses says 1000000000",
     edited(lambda d: d["metadata"].update(total_analyses=1_000_000_000)))
case("nul-in-text.json", 3, "NUL character", edited(lambda d: d["analyses"][0]["chunks"][0].update(content="a\u0000b")))
case("placeholder-url.json", 3, "placeholder", edited(lambda d: d["analyses"][0].update(url="https://example.com/doc")))
case("query-expects-missing-chunk.json", 3, "is not in the file",
     edited(lambda d: d["queries"][0].update(expected_chunk_ids=["22222222-2222-4222-8222-999999999999"])))
case("checksum-mismatch.json", 3, "checksum does not match",
     edited(lambda d: d["metadata"].update(checksum="sha256:" + "0" * 64)))
case("before-4714-bc.json", 3, "before 4714-11-24 BC",
     edited(lambda d: d["analyses"][0].update(created_at="-5000-01-01T00:00:00Z")))
case("leap-second.json", 3, "leap second",
     edited(lambda d: d["analyses"][1].update(updated_at="2016-12-31T23:59:60Z")))
case("nanoseconds.json", 3, "more than microsecond precision",
     edited(lambda d: d["analyses"][0]["artifact"].update(created_at="2025-01-01T00:00:00.0000001Z")))
case("chunks-not-a-list.json", 3, "\"chunks\" is not a list",
     edited(lambda d: d["analyses"][0].update(chunks={"0": "a"})))
case("analysis-a-number.json", 3, "is not a JSON object", edited(lambda d: d["analyses"].insert(1, 42)))
# Keys sorted, as writers that sort them put them: "chunks" before "id". A problem in a chunk
# is still named by its analysis's id.
case("sorted-keys-bad-chunk.json", 3, "analysis 11111111-1111-4111-8111-111111111112, chunk",
     json.dumps(json.loads(edited(lambda d: d["analyses"][1]["chunks"][0].update(content=""))), indent=2, sort_keys=True))
case("status-too-long.json", 3, "an index holds at most 2000 bytes",
     edited(lambda d: d["analyses"][1].update(status="x" * 9000)))
case("query-id-too-long.json", 3, "an index holds at most 2000 bytes",
     edited(lambda d: d["queries"][0].update(id="q" * 9000)))

# The other dialects (issue 12).
case("flat-chunk-of-no-analysis.json", 3, "11111111-1111-4111-8111-999999999999",
     edited(lambda d: d["data"]["chunks"][2].update(analysis_id="11111111-1111-4111-8111-999999999999"), FLAT),
     place="44444444-4444-4444-8444-444444444443")
case("flat-hash-mismatch.json", 3, "hash",
     edited(lambda d: d["data"]["chunks"][1].update(hash=hashlib.sha256(b"Writers").hexdigest()), FLAT),
     place="44444444-4444-4444-8444-444444444442")
case("flat-chunks-not-a-list.json", 3, "not a list",
     edited(lambda d: d["data"].update(chunks={"0": d["data"]["chunks"][0]}), FLAT), place="data.chunks")
case("flat-version-3.json", 2, "version \"3.0\"", edited(lambda d: d.update(version="3.0"), FLAT))
case("seed-chunk-missing-content.json", 3, "missing \"content\"",
     edited(lambda d: d["analyses"][0]["chunks"][1].pop("content"), SEED),
     place="22222222-2222-4222-8222-222222222222")

for name, content in cases.items():
    with open(name, "w", encoding="utf-8", newline="") as f:
        f.write(content)
with open("bom.json", "wb") as f:
    f.write(b"\xef\xbb\xbf" + TEXT.encode())
expected["bom.json"] = {"verify": 2, "message": "byte-order mark"}
with open("latin1.json", "wb") as f:
    f.write(TEXT.replace("Snapshots isolate", "Caf\u00e9 snapshots").encode("latin-1"))
expected["latin1.json"] = {"verify": 2, "message": "not valid JSON"}
with open("expected.json", "w") as f:
    json.dump(expected, f, indent=2, sort_keys=True)
    f.write("\n")
print(len(expected), "files")
