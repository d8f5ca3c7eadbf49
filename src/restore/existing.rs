//! What append mode does with each row of a window of records, decided once from what the
//! database already holds, so that the dry-run plan and the restore agree: a row whose id
//! exists is skipped (neither inserted again nor embedded again), and so is one whose place is
//! taken by another row that another tool wrote (a chunk's `(analysis_id, chunk_index)`, an
//! analysis's one latest artifact), with that reason. Older artifact versions have no such
//! place: only their ids count. A few queries per window, whatever its size.

use std::collections::{HashMap, HashSet};

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Integer, Uuid as SqlUuid};
use uuid::Uuid;

use crate::backup_file::record::{BackupArtifact, BackupChunk};
use crate::backup_file::records::Record;
use crate::schema::{analyses, artifact_versions, artifacts, chunks};

/// What happens to one row of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Insert,
    /// Its id is in the database: skipped.
    Exists,
    /// Another row holds its unique place: skipped.
    PlaceTaken,
}

/// The rows of a window that the database already has, by id and by unique place.
#[derive(Debug, Default)]
pub struct Existing {
    analyses: HashSet<Uuid>,
    chunks: HashSet<Uuid>,
    /// The chunk at each `(analysis_id, chunk_index)` of the window's chunks.
    chunk_places: HashMap<(Uuid, i32), Uuid>,
    artifacts: HashSet<Uuid>,
    /// The older artifact versions of the window that exist, by id.
    artifact_versions: HashSet<Uuid>,
    /// The (latest) artifact each analysis of the window already has.
    artifact_of: HashMap<Uuid, Uuid>,
}

impl Existing {
    /// Nothing exists: the tables were emptied (replace mode).
    pub fn none() -> Existing {
        Existing::default()
    }

    /// Every key of the dataset's rows: a snapshot for the bulk append ([`super::bulk`]), which
    /// decides each row's fate from it instead of looking windows up through the second
    /// connection (which would wait forever for the vector index dropped by the main one).
    /// Its memory grows with the rows of the database (about 100 bytes a chunk): the bulk path
    /// is taken only below [`super::bulk::MOST_ROWS_IN_TABLE`] chunks. Read inside the caller's
    /// transaction, after it locked the tables against other writers, so it stays true.
    pub fn all(conn: &mut PgConnection) -> QueryResult<Existing> {
        let chunk_rows: Vec<(Uuid, Uuid, i32)> = chunks::table
            .select((chunks::id, chunks::analysis_id, chunks::chunk_index))
            .load(conn)?;
        let mut existing = Existing {
            chunks: HashSet::with_capacity(chunk_rows.len()),
            chunk_places: HashMap::with_capacity(chunk_rows.len()),
            ..Existing::default()
        };
        for (id, analysis_id, chunk_index) in chunk_rows {
            existing.chunks.insert(id);
            existing.chunk_places.insert((analysis_id, chunk_index), id);
        }
        existing.analyses = analyses::table
            .select(analyses::id)
            .load::<Uuid>(conn)?
            .into_iter()
            .collect();
        for (id, analysis_id) in artifacts::table
            .select((artifacts::id, artifacts::analysis_id))
            .load::<(Uuid, Uuid)>(conn)?
        {
            existing.artifacts.insert(id);
            existing.artifact_of.insert(analysis_id, id);
        }
        existing.artifact_versions = artifact_versions::table
            .select(artifact_versions::id)
            .load::<Uuid>(conn)?
            .into_iter()
            .collect();
        Ok(existing)
    }

    /// Looks up the rows of `records` in the database.
    pub fn lookup(conn: &mut PgConnection, records: &[Record]) -> QueryResult<Existing> {
        let mut analysis_ids = Vec::new();
        let mut chunk_ids = Vec::new();
        let (mut place_analyses, mut place_indexes) = (Vec::new(), Vec::new());
        let mut artifact_ids = Vec::new();
        let mut artifact_analyses = Vec::new();
        for record in records {
            match record {
                Record::Analysis(head) => analysis_ids.push(head.id),
                Record::Chunk { analysis_id, chunk } => {
                    chunk_ids.push(chunk.id);
                    place_analyses.push(*analysis_id);
                    place_indexes.push(chunk.chunk_index);
                }
                Record::Artifact {
                    analysis_id,
                    artifact,
                    latest,
                } => {
                    artifact_ids.push(artifact.id);
                    if *latest {
                        artifact_analyses.push(*analysis_id);
                    }
                }
                Record::End { .. } => {}
            }
        }
        #[derive(QueryableByName)]
        struct Place {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
            #[diesel(sql_type = SqlUuid)]
            analysis_id: Uuid,
            #[diesel(sql_type = Integer)]
            chunk_index: i32,
        }
        let places: Vec<Place> = if place_analyses.is_empty() {
            Vec::new()
        } else {
            diesel::sql_query(
                "SELECT c.id, c.analysis_id, c.chunk_index FROM chunks c \
                 JOIN unnest($1::uuid[], $2::int4[]) AS w(analysis_id, chunk_index) \
                 USING (analysis_id, chunk_index)",
            )
            .bind::<Array<SqlUuid>, _>(&place_analyses)
            .bind::<Array<Integer>, _>(&place_indexes)
            .load(conn)?
        };
        Ok(Existing {
            analyses: analyses::table
                .filter(analyses::id.eq_any(&analysis_ids))
                .select(analyses::id)
                .load::<Uuid>(conn)?
                .into_iter()
                .collect(),
            chunks: chunks::table
                .filter(chunks::id.eq_any(&chunk_ids))
                .select(chunks::id)
                .load::<Uuid>(conn)?
                .into_iter()
                .collect(),
            chunk_places: places
                .into_iter()
                .map(|place| ((place.analysis_id, place.chunk_index), place.id))
                .collect(),
            artifacts: artifacts::table
                .filter(artifacts::id.eq_any(&artifact_ids))
                .select(artifacts::id)
                .load::<Uuid>(conn)?
                .into_iter()
                .collect(),
            artifact_of: artifacts::table
                .filter(artifacts::analysis_id.eq_any(&artifact_analyses))
                .select((artifacts::analysis_id, artifacts::id))
                .load::<(Uuid, Uuid)>(conn)?
                .into_iter()
                .collect(),
            artifact_versions: artifact_versions::table
                .filter(artifact_versions::id.eq_any(&artifact_ids))
                .select(artifact_versions::id)
                .load::<Uuid>(conn)?
                .into_iter()
                .collect(),
        })
    }

    pub fn analysis(&self, id: Uuid) -> Fate {
        if self.analyses.contains(&id) {
            Fate::Exists
        } else {
            Fate::Insert
        }
    }

    pub fn chunk(&self, analysis_id: Uuid, chunk: &BackupChunk) -> Fate {
        if self.chunks.contains(&chunk.id) {
            return Fate::Exists;
        }
        match self.chunk_places.get(&(analysis_id, chunk.chunk_index)) {
            Some(other) if *other != chunk.id => Fate::PlaceTaken,
            _ => Fate::Insert,
        }
    }

    /// The fate of an artifact of analysis `analysis_id`: its latest (`latest`) or an older
    /// version. An id that exists as either is skipped.
    pub fn artifact(&self, analysis_id: Uuid, artifact: &BackupArtifact, latest: bool) -> Fate {
        if self.artifacts.contains(&artifact.id) || self.artifact_versions.contains(&artifact.id) {
            return Fate::Exists;
        }
        if !latest {
            return Fate::Insert;
        }
        match self.artifact_of.get(&analysis_id) {
            Some(other) if *other != artifact.id => Fate::PlaceTaken,
            _ => Fate::Insert,
        }
    }

    /// The fate of `record`'s row.
    pub fn fate(&self, record: &Record) -> Fate {
        match record {
            Record::Analysis(head) => self.analysis(head.id),
            Record::Chunk { analysis_id, chunk } => self.chunk(*analysis_id, chunk),
            Record::Artifact {
                analysis_id,
                artifact,
                latest,
            } => self.artifact(*analysis_id, artifact, *latest),
            // Its late extras are set on the analysis when this restore inserted it.
            Record::End { .. } => Fate::Insert,
        }
    }
}
