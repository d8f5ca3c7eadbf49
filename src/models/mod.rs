//! One model file per table, as in crates.io: read structs (`Queryable`/`Selectable`) and
//! insert structs (`Insertable`) kept apart.

pub mod analysis;
pub mod artifact;
pub mod artifact_version;
pub mod chunk;
pub mod dataset_extra;
pub mod embedding_cache;
pub mod pending_embedding;
pub mod query;

pub use analysis::{Analysis, NewAnalysis};
pub use artifact::{Artifact, NewArtifact};
pub use artifact_version::{ArtifactVersion, NewArtifactVersion};
pub use chunk::{ChunkEmbeddingState, ChunkText, NewChunk};
pub use dataset_extra::DatasetExtra;
pub use embedding_cache::NewCacheEntry;
pub use pending_embedding::NewPendingEmbedding;
pub use query::{NewQuery, Query};
