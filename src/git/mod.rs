//! Running git for the commands that work with the dataset's history: reading a file as a
//! revision holds it.

pub mod revision;
