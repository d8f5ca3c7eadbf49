//! The content checksum in `metadata.checksum`: SHA-256 over the canonical (compact JSON)
//! form of every analysis in file order, so it detects any change to the content however the
//! file is indented, and does not depend on `created_at` of the backup itself.

use sha2::{Digest, Sha256};

use super::record::{BackupAnalysis, BackupQuery};

/// The prefix that names the algorithm, so another one can be added later.
pub const PREFIX: &str = "sha256:";
/// The width of a checksum as written; the writer patches it in place.
pub const WRITTEN_WIDTH: usize = PREFIX.len() + 64;

#[derive(Default)]
pub struct ContentHasher {
    hasher: Sha256,
}

impl ContentHasher {
    pub fn add(&mut self, analysis: &BackupAnalysis) {
        // Serialising plain data to a hasher cannot fail: no map has non-string keys and the
        // writer never errors.
        serde_json::to_writer(HashWriter(&mut self.hasher), analysis)
            .expect("serialising a backup record to a hasher cannot fail");
        self.hasher.update(b"\n");
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
        let digest = self.hasher.finalize();
        let mut out = String::with_capacity(WRITTEN_WIDTH);
        out.push_str(PREFIX);
        for byte in digest {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
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
