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
    }
}

diesel::joinable!(artifacts -> analyses (analysis_id));
diesel::joinable!(chunks -> analyses (analysis_id));

diesel::allow_tables_to_appear_in_same_query!(analyses, artifacts, chunks,);
