//! `dataset_extras`: the keys of a backup file's top level (and of its `metadata`) that golden
//! does not define, kept so that `backup` writes them back (SkillForge's `source` and
//! `fixtures`, artifacts whose analysis is not in the file, …).

use diesel::prelude::*;

use crate::schema::dataset_extras;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = dataset_extras)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct DatasetExtra {
    pub key: String,
    pub value: serde_json::Value,
}
// The row of the file's own `metadata` keys is `backup_file::extras::METADATA_ROW`.
