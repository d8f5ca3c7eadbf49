// @generated automatically by Diesel CLI.

diesel::table! {
    use diesel::sql_types::*;
    use pgvector::sql_types::*;

    analyses (id) {
        id -> Uuid,
        url -> Text,
        title -> Nullable<Text>,
        content_type -> Text,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        extra -> Jsonb,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use pgvector::sql_types::*;

    artifact_versions (id) {
        id -> Uuid,
        analysis_id -> Uuid,
        summary -> Text,
        created_at -> Timestamptz,
        version -> Nullable<Int4>,
        extra -> Jsonb,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use pgvector::sql_types::*;

    artifacts (id) {
        id -> Uuid,
        analysis_id -> Uuid,
        summary -> Text,
        created_at -> Timestamptz,
        extra -> Jsonb,
        version -> Nullable<Int4>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use pgvector::sql_types::*;

    chunks (id) {
        id -> Uuid,
        analysis_id -> Uuid,
        content -> Text,
        section_title -> Nullable<Text>,
        section_path -> Nullable<Text>,
        content_type -> Text,
        chunk_index -> Int4,
        embedding -> Nullable<Vector>,
        embedding_model -> Nullable<Text>,
        extra -> Jsonb,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use pgvector::sql_types::*;

    dataset_extras (key) {
        key -> Text,
        value -> Jsonb,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use pgvector::sql_types::*;

    embedding_cache (provider, model, dims, input_type, text_sha256) {
        provider -> Text,
        model -> Text,
        dims -> Int4,
        text_sha256 -> Bytea,
        embedding -> Vector,
        created_at -> Timestamptz,
        input_type -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use pgvector::sql_types::*;

    pending_embeddings (chunk_id) {
        chunk_id -> Uuid,
        embedding -> Vector,
        model -> Text,
        dims -> Int4,
        text_sha256 -> Bytea,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use pgvector::sql_types::*;

    queries (id) {
        id -> Text,
        query -> Text,
        expected_chunk_ids -> Array<Nullable<Uuid>>,
        category -> Nullable<Text>,
        difficulty -> Nullable<Text>,
        created_at -> Timestamptz,
        extra -> Jsonb,
        unresolved_expected_chunks -> Array<Nullable<Text>>,
    }
}

diesel::joinable!(artifact_versions -> analyses (analysis_id));
diesel::joinable!(artifacts -> analyses (analysis_id));
diesel::joinable!(chunks -> analyses (analysis_id));
diesel::joinable!(pending_embeddings -> chunks (chunk_id));

diesel::allow_tables_to_appear_in_same_query!(
    analyses,
    artifact_versions,
    artifacts,
    chunks,
    dataset_extras,
    embedding_cache,
    pending_embeddings,
    queries,
);
