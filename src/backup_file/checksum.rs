//! The content checksum in `metadata.checksum`: SHA-256 over the canonical (compact JSON)
//! form of every analysis in file order, so it detects any change to the content however the
//! file is indented, and does not depend on `created_at` of the backup itself.

use sha2::{Digest, Sha256};

#[cfg(test)]
use super::record::BackupAnalysis;
use super::record::{BackupAnalysisHead, BackupArtifact, BackupChunk, BackupQuery, Extra};

/// The prefix that names the algorithm, so another one can be added later.
pub const PREFIX: &str = "sha256:";
/// The width of a checksum as written; the writer patches it in place.
pub const WRITTEN_WIDTH: usize = PREFIX.len() + 64;

#[derive(Default)]
pub struct ContentHasher {
    hasher: Sha256,
}

impl ContentHasher {
    /// Adds one whole analysis: the definition the streaming functions below reproduce (the
    /// tests hold them to it).
    #[cfg(test)]
    pub fn add(&mut self, analysis: &BackupAnalysis) {
        // Serialising plain data to a hasher cannot fail: no map has non-string keys and the
        // writer never errors.
        serde_json::to_writer(HashWriter(&mut self.hasher), analysis)
            .expect("serialising a backup record to a hasher cannot fail");
        self.hasher.update(b"\n");
    }

    /// Starts an analysis whose chunks follow one by one: [`ContentHasher::begin_analysis`],
    /// [`ContentHasher::add_chunk`] for each, [`ContentHasher::end_analysis`] hash the same
    /// bytes as [`ContentHasher::add`] of the whole record (its compact JSON, written piece by
    /// piece), so a streaming validator checks the same checksum in constant memory.
    pub fn begin_analysis(&mut self, head: &BackupAnalysisHead) {
        let mut json = serde_json::to_vec(head).expect("serialising a backup record cannot fail");
        // `{"id":…,"updated_at":"…"}` without its `}`: the whole record goes on with its chunks.
        json.pop();
        self.hasher.update(&json);
        self.hasher.update(br#","chunks":["#);
    }

    /// Adds the chunk at `position` of the analysis begun last.
    pub fn add_chunk(&mut self, position: usize, chunk: &BackupChunk) {
        self.hasher.update(chunk_json(position, chunk));
    }

    /// Adds the bytes of [`chunk_json`] held until the analysis's head was known.
    pub fn add_chunk_json(&mut self, held: &mut impl std::io::Read) -> std::io::Result<()> {
        std::io::copy(held, &mut HashWriter(&mut self.hasher)).map(|_| ())
    }

    /// Ends the analysis begun last, with its latest artifact and its older `versions`.
    pub fn end_analysis(&mut self, artifact: Option<&BackupArtifact>, versions: &[BackupArtifact]) {
        self.hasher.update(br#"],"artifact":"#);
        serde_json::to_writer(HashWriter(&mut self.hasher), &artifact)
            .expect("serialising a backup record to a hasher cannot fail");
        if !versions.is_empty() {
            self.hasher.update(br#","artifact_versions":"#);
            serde_json::to_writer(HashWriter(&mut self.hasher), versions)
                .expect("serialising a backup record to a hasher cannot fail");
        }
        self.hasher.update(b"}\n");
    }

    /// Adds the file-level keys beyond golden's and the `metadata` keys golden keeps, after
    /// the queries. A file without them hashes as before they were kept.
    pub fn add_file_extras(&mut self, top: &Extra, metadata: &Extra) {
        for (label, extras) in [(&b"extras\n"[..], top), (&b"metadata\n"[..], metadata)] {
            if extras.is_empty() {
                continue;
            }
            self.hasher.update(label);
            serde_json::to_writer(HashWriter(&mut self.hasher), extras)
                .expect("serialising plain data to a hasher cannot fail");
            self.hasher.update(b"\n");
        }
    }

    /// Adds the queries, after every analysis. A file without queries hashes as before
    /// queries existed.
    pub fn add_queries(&mut self, queries: &[BackupQuery]) {
        if queries.is_empty() {
            return;
        }
        self.hasher.update(b"queries\n");
        for query in queries {
            serde_json::to_writer(HashWriter(&mut self.hasher), query)
                .expect("serialising a query to a hasher cannot fail");
            self.hasher.update(b"\n");
        }
    }

    pub fn finish(self) -> String {
        format!("{PREFIX}{}", hex(&self.hasher.finalize()))
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A chunk's part of its analysis's compact JSON: a comma before all but the first.
pub fn chunk_json(position: usize, chunk: &BackupChunk) -> Vec<u8> {
    let mut json = Vec::with_capacity(chunk.content.len() + 256);
    if position > 0 {
        json.push(b',');
    }
    serde_json::to_writer(&mut json, chunk).expect("serialising a backup record cannot fail");
    json
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_an_analysis_piece_by_piece_equals_hashing_it_whole() {
        let sample = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/golden_dataset_backup.json"
        ))
        .unwrap();
        let file: serde_json::Value = serde_json::from_slice(&sample).unwrap();
        let mut whole = ContentHasher::default();
        let mut pieces = ContentHasher::default();
        for value in file["analyses"].as_array().unwrap() {
            let record: BackupAnalysis = serde_json::from_value(value.clone()).unwrap();
            whole.add(&record);
            let head = BackupAnalysisHead::from_fields(value.as_object().unwrap()).unwrap();
            pieces.begin_analysis(&head);
            for (position, chunk) in record.chunks.iter().enumerate() {
                pieces.add_chunk(position, chunk);
            }
            pieces.end_analysis(record.artifact.as_ref(), &record.artifact_versions);
        }
        let queries: Vec<BackupQuery> = serde_json::from_value(file["queries"].clone()).unwrap();
        whole.add_queries(&queries);
        pieces.add_queries(&queries);
        let whole = whole.finish();
        assert_eq!(whole, pieces.finish());
        assert_eq!(
            Some(whole.as_str()),
            file["metadata"]["checksum"].as_str(),
            "the sample's own checksum"
        );
    }
}
