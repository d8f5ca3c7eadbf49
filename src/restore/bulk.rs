//! When a load pays for dropping the vector index and building it once (placeholder until
//! the measured rule lands).

/// Whether writing `rows_to_write` chunk rows into a table of `rows_in_table` is faster with
/// the vector index dropped and built once afterwards than kept and updated row by row.
pub fn bulk_pays(rows_to_write: u64, rows_in_table: u64) -> bool {
    rows_to_write >= 1_000 && rows_to_write * 10 >= rows_in_table + rows_to_write
}
