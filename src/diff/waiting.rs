//! The records of one file that wait for their match in the other, by id. Files in the same
//! order keep few of them; files in different orders (another tool's, or one sorted by
//! another key) may keep most of a file, so past a budget the records go to an anonymous temp
//! file and only their key and place there stay in memory (a few dozen bytes each).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use uuid::Uuid;

use super::items::{Item, Kind};

/// The bytes of waiting records both files together keep in memory.
const MEMORY_BUDGET: usize = 8 * 1024 * 1024;

/// A waiting record, with its position in its file.
pub struct Waiting {
    pub seq: u64,
    held: Held,
}

enum Held {
    /// Boxed: a record on the shelf costs its key and place only, not an `Item`'s size.
    Here(Box<Item>, usize),
    Shelved {
        offset: u64,
        len: usize,
    },
}

/// The waiting records of one file.
#[derive(Default)]
pub struct WaitingRoom {
    records: HashMap<(Kind, Uuid), Waiting>,
}

/// Where records past the budget go, shared by both files' rooms.
#[derive(Default)]
pub struct Shelf {
    file: Option<File>,
    end: u64,
    in_memory: usize,
}

impl WaitingRoom {
    /// Leaves `item` waiting; in memory while the budget allows, on the shelf past it.
    pub fn wait(&mut self, seq: u64, item: Item, shelf: &mut Shelf) -> Result<()> {
        let key = item.key();
        let weight = item.weight();
        let held = if shelf.in_memory + weight <= MEMORY_BUDGET {
            shelf.in_memory += weight;
            Held::Here(Box::new(item), weight)
        } else {
            shelf.put(&item)?
        };
        self.records.insert(key, Waiting { seq, held });
        Ok(())
    }

    /// The record of `key`, if it waits here: taken out.
    pub fn take(&mut self, key: &(Kind, Uuid), shelf: &mut Shelf) -> Result<Option<Item>> {
        match self.records.remove(key) {
            None => Ok(None),
            Some(waiting) => shelf.fetch(waiting.held).map(Some),
        }
    }

    /// Hands every record still waiting to `each`, in file order, one at a time (what waits
    /// on the shelf is read back one record at a time too).
    pub fn drain(
        &mut self,
        shelf: &mut Shelf,
        mut each: impl FnMut(Item) -> Result<()>,
    ) -> Result<()> {
        let mut waiting: Vec<Waiting> = self.records.drain().map(|(_, w)| w).collect();
        waiting.sort_by_key(|w| w.seq);
        for w in waiting {
            each(shelf.fetch(w.held)?)?;
        }
        Ok(())
    }
}

impl Shelf {
    fn put(&mut self, item: &Item) -> Result<Held> {
        let bytes = serde_json::to_vec(item)?;
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                tempfile::tempfile().wrap_err("creating a temp file for records that wait")?,
            ),
        };
        file.write_all_at(&bytes, self.end)
            .wrap_err("writing records that wait to a temp file")?;
        let held = Held::Shelved {
            offset: self.end,
            len: bytes.len(),
        };
        self.end += bytes.len() as u64;
        Ok(held)
    }

    fn fetch(&mut self, held: Held) -> Result<Item> {
        match held {
            Held::Here(item, weight) => {
                self.in_memory -= weight;
                Ok(*item)
            }
            Held::Shelved { offset, len } => {
                let mut bytes = vec![0; len];
                let file = self
                    .file
                    .as_ref()
                    .ok_or_else(|| color_eyre::eyre::eyre!("internal error: no shelf file"))?;
                file.read_exact_at(&mut bytes, offset)
                    .wrap_err("reading records that wait from their temp file")?;
                Ok(serde_json::from_slice(&bytes)?)
            }
        }
    }
}
