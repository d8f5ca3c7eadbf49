//! Bytes held for later that may outgrow memory. A file may list an analysis's chunks before
//! the analysis's own fields (any writer that sorts keys does: "chunks" comes before "id"),
//! and what needs those fields first (a chunk's row needs its analysis's row; the checksum
//! hashes the fields before the chunks) must hold the chunks until the analysis ends. They
//! are held here: in memory up to a limit, then in an anonymous temp file, so memory stays
//! bounded whatever the file's key order.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Cursor, Seek, SeekFrom, Write};

/// What is held in memory before the rest goes to a temp file.
const MEMORY_LIMIT: usize = 8 * 1024 * 1024;

#[derive(Default)]
pub struct Spill {
    memory: Vec<u8>,
    file: Option<BufWriter<File>>,
}

impl Spill {
    pub fn new() -> Spill {
        Spill::default()
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            return file.write_all(bytes);
        }
        if self.memory.len() + bytes.len() <= MEMORY_LIMIT {
            self.memory.extend_from_slice(bytes);
            return Ok(());
        }
        let mut file = BufWriter::new(tempfile::tempfile()?);
        file.write_all(&self.memory)?;
        file.write_all(bytes)?;
        self.memory = Vec::new();
        self.file = Some(file);
        Ok(())
    }

    /// Everything written, from the start.
    pub fn into_reader(self) -> io::Result<Box<dyn BufRead>> {
        match self.file {
            None => Ok(Box::new(Cursor::new(self.memory))),
            Some(file) => {
                let mut file = file.into_inner().map_err(|e| e.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                Ok(Box::new(BufReader::new(file)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gives_back_what_was_written_in_memory_and_on_disk() {
        for size in [10, MEMORY_LIMIT + 10] {
            let mut spill = Spill::new();
            let piece: Vec<u8> = (0..=255u8).collect();
            let mut expected = Vec::new();
            while expected.len() < size {
                spill.write(&piece).unwrap();
                expected.extend_from_slice(&piece);
            }
            let mut back = Vec::new();
            spill.into_reader().unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, expected);
        }
    }
}
