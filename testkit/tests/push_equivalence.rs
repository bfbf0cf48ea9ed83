//! The set-based `syncbridge_push` (sql/supabase/03_versions.sql) decides exactly what the
//! row-by-row one it replaced decided (tests/reference/push_rowwise.sql, the oracle): the same
//! refusals and the same rows, sync_versions and synced_at included, over many generated
//! batches mixing new and existing rows, newer, older and tied versions, rows older than the
//! one Supabase holds, columns Supabase no longer has and rows of different shapes in one call.
//! Both run on real PostgreSQL through the PostgREST stand-in, as the agent calls them.

mod common;

use common::{json as parse, send, Env};
use reqwest::Method;
use serde_json::{json, Map, Value};

const SHARED: [&str; 3] = ["note_text", "is_edited", "edited_at"];
const TIMES: [&str; 3] = [
    "2026-01-01T09:00:00Z",
    "2026-01-01T10:00:00Z",
    "2026-01-01T11:00:00Z",
];
const CASES: u64 = 200;
const ORACLE: &str = include_str!("reference/push_rowwise.sql");

/// A small deterministic generator (xorshift64*): the same cases on every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

fn uid(k: u64) -> String {
    format!("00000000-0000-4000-8000-{k:012}")
}

fn note(g: &mut Gen, k: u64) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("note_uid".into(), json!(uid(k)));
    row.insert("aligner_set_id".into(), json!(1));
    row.insert("note_type".into(), json!("Lab"));
    row.insert("note_text".into(), json!(g.pick(&["a", "b", "c"])));
    row.insert("is_edited".into(), json!(g.coin()));
    let edited = if g.coin() {
        json!(null)
    } else {
        json!("2026-01-01T08:00:00")
    };
    row.insert("edited_at".into(), edited);
    row.insert("is_read".into(), json!(g.coin()));
    row.insert("created_at".into(), json!("2026-01-01T07:00:00"));
    row
}

fn some_times(g: &mut Gen) -> Map<String, Value> {
    let mut out = Map::new();
    for c in SHARED {
        if g.coin() {
            out.insert(c.to_owned(), json!(g.pick(&TIMES)));
        }
    }
    out
}

/// Rows that exist before the push, with versions and row versions of their own.
fn existing(g: &mut Gen) -> Vec<(Map<String, Value>, Value, Value)> {
    let mut out = Vec::new();
    for k in 0..6 {
        if g.below(4) == 0 {
            continue;
        }
        let synced = if g.coin() {
            json!(null)
        } else {
            json!(g.pick(&TIMES))
        };
        out.push((note(g, k), Value::Object(some_times(g)), synced));
    }
    out
}

/// One call's p_rows: up to 8 distinct keys of 0..10, so some exist and some do not.
fn push_rows(g: &mut Gen) -> Value {
    let mut keys: Vec<u64> = (0..10).collect();
    let n = 1 + g.below(8) as usize;
    let mut rows = Vec::new();
    for _ in 0..n {
        let k = keys.remove(g.below(keys.len() as u64) as usize);
        let mut row = note(g, k);
        match g.below(4) {
            0 => {}
            1 => {
                row.insert("synced_at".into(), json!(null));
            }
            _ => {
                row.insert("synced_at".into(), json!(g.pick(&TIMES)));
            }
        }
        // Another shape: a shared column left out, or one Supabase no longer has.
        match g.below(6) {
            0 => {
                row.remove(g.pick(&SHARED));
            }
            1 => {
                row.insert("dropped_in_supabase".into(), json!(1));
            }
            _ => {}
        }
        rows.push(json!({"row": row, "changed": some_times(g)}));
    }
    Value::Array(rows)
}

/// How many shapes (sets of column names, as the function sorts them) a call's rows have.
fn shapes_of(rows: &Value) -> usize {
    let mut seen: Vec<Vec<&str>> = Vec::new();
    for item in rows.as_array().into_iter().flatten() {
        let mut shape: Vec<&str> = item["row"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.keys().map(String::as_str))
            .collect();
        shape.sort_unstable();
        if !seen.contains(&shape) {
            seen.push(shape);
        }
    }
    seen.len()
}

async fn seed(env: &Env, rows: &[(Map<String, Value>, Value, Value)]) {
    let mut sql =
        String::from("BEGIN; SET LOCAL ROLE service_role; SET LOCAL syncbridge.writer = 'on';\n");
    for (row, versions, synced) in rows {
        sql.push_str(&format!(
            "INSERT INTO aligner_notes (note_uid, aligner_set_id, note_type, note_text, is_edited, edited_at, is_read, created_at, sync_versions, synced_at)
             SELECT note_uid, aligner_set_id, note_type, note_text, is_edited, edited_at, is_read, created_at, '{}'::jsonb, {}
             FROM jsonb_populate_record(NULL::aligner_notes, '{}'::jsonb);\n",
            versions,
            match synced.as_str() {
                Some(t) => format!("'{t}'::timestamptz"),
                None => "NULL".to_owned(),
            },
            Value::Object(row.clone()),
        ));
    }
    sql.push_str("COMMIT;");
    env.db.client().batch_execute(&sql).await.expect("seed");
}

/// The refusals, sorted; or the error's SQLSTATE when the call failed (then nothing of it
/// was written).
async fn push(env: &Env, function: &str, rows: &Value) -> Result<Vec<Value>, String> {
    let (status, body) = send(env.service(Method::POST, &format!("/rpc/{function}")).json(
        &json!({"p_table": "aligner_notes", "p_keys": ["note_uid"], "p_shared": SHARED, "p_rows": rows}),
    ))
    .await;
    let body = parse(&body);
    if status != 200 {
        return Err(format!("{status} {}", body["code"]));
    }
    let mut refused = body.as_array().cloned().unwrap_or_default();
    refused.sort_by_key(|r| (r["index"].as_i64(), r["column"].as_str().map(str::to_owned)));
    Ok(refused)
}

async fn notes(env: &Env) -> Vec<Value> {
    env.rows(
        "SELECT note_uid, note_text, is_edited, edited_at, is_read, created_at, sync_versions,
                synced_at AT TIME ZONE 'UTC' AS synced_at
         FROM aligner_notes ORDER BY note_uid",
    )
    .await
}

#[tokio::test]
async fn the_set_based_push_decides_what_the_row_by_row_push_decided() {
    let (ours, oracle) = (Env::start().await, Env::start().await);
    for env in [&ours, &oracle] {
        env.seed_parents().await;
    }
    oracle
        .db
        .client()
        .batch_execute(ORACLE)
        .await
        .expect("oracle");
    let (mut refusals, mut written, mut failed) = (0, 0, 0);
    let (mut one_shape, mut shapes) = (0, 0);
    for case in 0..CASES {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15 ^ (case + 1));
        let before = existing(&mut g);
        let rows = push_rows(&mut g);
        match shapes_of(&rows) {
            1 if rows.as_array().is_some_and(|r| r.len() > 1) => one_shape += 1,
            n if n > 1 => shapes += 1,
            _ => {}
        }
        for env in [&ours, &oracle] {
            env.db
                .client()
                .batch_execute("DELETE FROM aligner_notes")
                .await
                .expect("clear");
            seed(env, &before).await;
        }
        let seeded = notes(&ours).await;
        assert_eq!(seeded, notes(&oracle).await, "case {case}: seeds differ");
        let got = push(&ours, "syncbridge_push", &rows).await;
        let want = push(&oracle, "syncbridge_push_rowwise", &rows).await;
        assert_eq!(got, want, "case {case}: refusals differ for {rows}");
        let after = notes(&ours).await;
        assert_eq!(
            after,
            notes(&oracle).await,
            "case {case}: rows differ for {rows}"
        );
        refusals += got.as_ref().map_or(0, Vec::len);
        failed += usize::from(got.is_err());
        written += usize::from(after != seeded);
    }
    // The cases must exercise both outcomes, and both ways the function reads a call (one
    // shape of several rows: no per-row shape test; several shapes), or the comparison proves
    // little.
    assert!(one_shape > 10, "only {one_shape} calls of one shape");
    assert!(shapes > 20, "only {shapes} calls of several shapes");
    assert!(refusals > 40, "only {refusals} refusals in {CASES} cases");
    assert!(
        written > 100,
        "only {written} of {CASES} cases changed anything"
    );
    assert!(
        failed < 50,
        "{failed} of {CASES} cases failed (a new row without its NOT NULL column)"
    );
}

#[tokio::test]
async fn a_key_given_twice_in_one_call_counts_once_its_last_row_whatever_their_shapes() {
    let env = Env::start().await;
    env.seed_parents().await;
    let mut g = Gen(7);
    let mut whole = note(&mut g, 1);
    whole.insert("note_text".into(), json!("whole"));
    let mut again = whole.clone();
    again.insert("note_text".into(), json!("again"));
    // The same note without is_read: another shape, which the function takes in its own pass.
    let mut part = whole.clone();
    part.remove("is_read");
    part.insert("note_text".into(), json!("part"));
    for (first, last) in [(&whole, &again), (&whole, &part), (&part, &whole)] {
        env.db
            .client()
            .batch_execute("DELETE FROM aligner_notes")
            .await
            .expect("clear");
        let rows = json!([
            {"row": first, "changed": {"note_text": TIMES[0]}},
            {"row": last, "changed": {"note_text": TIMES[1]}}
        ]);
        assert_eq!(push(&env, "syncbridge_push", &rows).await, Ok(vec![]));
        assert_eq!(
            env.rows("SELECT note_text, sync_versions FROM aligner_notes")
                .await,
            [json!({"note_text": last["note_text"], "sync_versions": {"note_text": TIMES[1]}})],
            "{rows}"
        );
    }
}

#[tokio::test]
async fn a_row_with_no_column_of_the_table_is_refused_whole() {
    let env = Env::start().await;
    env.seed_parents().await;
    let mut g = Gen(11);
    let rows = json!([
        {"row": note(&mut g, 1), "changed": {}},
        {"row": {"dropped_in_supabase": 1}, "changed": {}}
    ]);
    refused_whole(&env, &rows).await;
}

/// Pushes `rows` into the empty aligner_notes: the call must be refused as a bad parameter
/// (400, 22023) and write nothing.
async fn refused_whole(env: &Env, rows: &Value) {
    let (status, body) = send(env.service(Method::POST, "/rpc/syncbridge_push").json(
        &json!({"p_table": "aligner_notes", "p_keys": ["note_uid"], "p_shared": SHARED, "p_rows": rows}),
    ))
    .await;
    assert_eq!(status, 400, "{rows}: {body}");
    assert_eq!(parse(&body)["code"], "22023", "{rows}: {body}");
    assert_eq!(
        env.rows("SELECT count(*) AS n FROM aligner_notes").await,
        [json!({"n": 0})],
        "{rows}: nothing of the call was written"
    );
}

/// The one-shape test reads each row with two key look-ups (`?&`, `?|`), which also answer
/// for a JSON array of the right names and say nothing (NULL) of a missing row: such rows,
/// and a scalar, must still refuse the whole call as a bad parameter, first or last in it.
#[tokio::test]
async fn a_row_that_is_not_an_object_is_refused_whole_wherever_it_stands() {
    let env = Env::start().await;
    env.seed_parents().await;
    let mut g = Gen(13);
    let good = note(&mut g, 1);
    let names: Vec<&String> = good.keys().collect();
    let odd = [
        json!({"row": names, "changed": {}}),
        json!({"changed": {}}),
        json!({"row": "note_uid", "changed": {}}),
    ];
    for bad in &odd {
        for rows in [
            json!([{"row": good, "changed": {}}, bad]),
            json!([bad, {"row": good, "changed": {}}]),
        ] {
            refused_whole(&env, &rows).await;
        }
    }
}
