use super::*;
use crate::postgrest::query::parse;

fn notes() -> Table {
    let column = |name: &str, cast: &str| Column {
        name: name.to_owned(),
        cast_type: cast.to_owned(),
        type_name: String::new(),
        not_null: false,
        default: None,
        references: None,
    };
    Table {
        name: "aligner_notes".to_owned(),
        columns: vec![
            column("note_uid", "pg_catalog.uuid"),
            column("note_text", "pg_catalog.text"),
            column("updated_at", "pg_catalog.timestamptz"),
        ],
        primary_key: vec!["note_uid".to_owned()],
    }
}

#[test]
fn filter_values_are_bound_as_text_and_cast() {
    let query = parse("note_uid=eq.x&or=(updated_at.gt.T,and(updated_at.eq.T,note_uid.gt.Y))&order=updated_at,note_uid&limit=5")
        .expect("parses");
    let statement = select(&notes(), &query).expect("builds");
    assert_eq!(statement.params, vec!["x", "T", "T", "Y"]);
    assert!(
        statement.sql.contains(
            "WHERE pgrst_target.\"note_uid\" = $1::text::pg_catalog.uuid AND \
             (pgrst_target.\"updated_at\" > $2::text::pg_catalog.timestamptz OR \
             (pgrst_target.\"updated_at\" = $3::text::pg_catalog.timestamptz AND \
             pgrst_target.\"note_uid\" > $4::text::pg_catalog.uuid))"
        ),
        "{}",
        statement.sql
    );
    assert!(statement.sql.contains(
        "ORDER BY pgrst_target.\"updated_at\" ASC, pgrst_target.\"note_uid\" ASC LIMIT 5"
    ));
}

#[test]
fn hostile_values_never_reach_the_sql_text() {
    let query = parse("note_text=eq.'); DROP TABLE x; --&note_uid=in.(\"a'b\",c)").expect("parses");
    let statement = delete(&notes(), &query).expect("builds");
    assert!(!statement.sql.contains("DROP"), "{}", statement.sql);
    assert!(!statement.sql.contains("a'b"), "{}", statement.sql);
    assert_eq!(statement.params, vec!["'); DROP TABLE x; --", "a'b", "c"]);
}

#[test]
fn unknown_columns_are_42703() {
    for query in ["nope=eq.1", "order=nope", "select=nope", "or=(nope.eq.1)"] {
        let err = select(&notes(), &parse(query).expect("parses")).expect_err(query);
        assert_eq!(err.body["code"], "42703", "{query}");
        assert_eq!(
            err.body["message"],
            "column aligner_notes.nope does not exist"
        );
    }
}

#[test]
fn upsert_updates_every_payload_column_on_conflict() {
    let columns = vec!["note_uid".to_owned(), "note_text".to_owned()];
    let plan = InsertPlan {
        columns: &columns,
        body: "{}",
        body_is_array: false,
        conflict: Some((Resolution::Merge, &["note_uid".to_owned()])),
    };
    let statement = insert(&notes(), &plan, None).expect("builds");
    assert!(statement.sql.contains(
        "json_populate_recordset(NULL::public.\"aligner_notes\", json_build_array($1::text::json))"
    ));
    assert!(statement.sql.contains(
        "ON CONFLICT (\"note_uid\") DO UPDATE SET \"note_uid\" = EXCLUDED.\"note_uid\", \"note_text\" = EXCLUDED.\"note_text\""
    ));
    let ignore = InsertPlan {
        conflict: Some((Resolution::Ignore, &["note_uid".to_owned()])),
        ..plan
    };
    assert!(insert(&notes(), &ignore, None)
        .expect("builds")
        .sql
        .contains("ON CONFLICT (\"note_uid\") DO NOTHING"));
}

#[test]
fn negation_and_is() {
    let query =
        parse("note_text=not.is.null&not.or=(note_text.like.a*,note_text.eq.b)").expect("parses");
    let statement = select(&notes(), &query).expect("builds");
    assert!(
        statement
            .sql
            .contains("NOT (pgrst_target.\"note_text\" IS NULL)"),
        "{}",
        statement.sql
    );
    assert!(
        statement
            .sql
            .contains("NOT (pgrst_target.\"note_text\" LIKE $1::text OR"),
        "{}",
        statement.sql
    );
    assert_eq!(statement.params[0], "a%");
}
