//! Static checks of the install scripts in `sql/sqlserver/` (no SQL Server): the properties the
//! agent relies on are in the text that gets installed, and the mistakes a real engine would
//! only show at install time are caught here.

const SCRIPTS: &[(&str, &str)] = &[
    (
        "01",
        include_str!("../../../sql/sqlserver/01_sample_schema.sql"),
    ),
    (
        "02",
        include_str!("../../../sql/sqlserver/02_sync_queue.sql"),
    ),
    (
        "03",
        include_str!("../../../sql/sqlserver/03_change_triggers.sql"),
    ),
    ("04", include_str!("../../../sql/sqlserver/04_notify.sql")),
    (
        "05",
        include_str!("../../../sql/sqlserver/05_monitoring.sql"),
    ),
    (
        "06",
        include_str!("../../../sql/sqlserver/06_permissions.sql"),
    ),
];

fn script(prefix: &str) -> &'static str {
    SCRIPTS
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, s)| *s)
        .unwrap_or_default()
}

/// The script without `--` and `/* */` comments (string literals are left alone; none of ours
/// holds a comment marker that matters here).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.find("--").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn batches(text: &str) -> Vec<String> {
    code(text).split("\nGO").map(str::to_owned).collect()
}

#[test]
fn no_two_variables_of_a_batch_differ_only_in_case() {
    // Variable names follow the instance's collation, case-insensitive on a default install:
    // @Url and @url would be one variable declared twice.
    for (file, text) in SCRIPTS {
        for batch in batches(text) {
            let mut seen = std::collections::BTreeMap::<String, String>::new();
            let words = batch.split(|c: char| !(c.is_alphanumeric() || c == '@' || c == '_'));
            for word in words.filter(|w| w.starts_with('@') && !w.starts_with("@@")) {
                if let Some(other) = seen.insert(word.to_lowercase(), word.to_owned()) {
                    assert_eq!(other, word, "{file}: {other} and {word}");
                }
            }
        }
    }
}

#[test]
fn every_script_names_its_versions_and_is_rerunnable() {
    for (file, text) in SCRIPTS {
        assert!(text.contains("Targets: SQL Server 2017"), "{file}");
        let code = code(text);
        for line in code.lines().map(str::trim) {
            for kind in ["PROCEDURE", "VIEW", "TRIGGER", "FUNCTION"] {
                if line.starts_with(&format!("CREATE {kind}")) {
                    panic!("{file}: not re-runnable: {line}");
                }
            }
            assert!(
                !(line.contains("INDEX") && line.contains(" WHERE ")),
                "{file}: a filtered index makes writers with other SET options fail: {line}"
            );
        }
    }
}

#[test]
fn the_change_trigger_skips_only_the_agents_direct_writes() {
    let generator = code(script("03"));
    assert!(
        generator.contains(
            "IF SESSION_CONTEXT(N''syncbridge'') IS NOT NULL AND TRIGGER_NESTLEVEL() = 1 RETURN;"
        ),
        "{generator}"
    );
    assert_eq!(generator.matches("SESSION_CONTEXT").count(), 1);
}

#[test]
fn keys_are_compared_by_their_bytes_and_length() {
    let generator = code(script("03"));
    assert!(generator.contains(
        "N'CONVERT(varbinary(8000), i.' + QUOTENAME(@col) + N') = CONVERT(varbinary(8000), d.' + QUOTENAME(@col) + N')'"
    ));
    assert!(generator.contains(
        "N' AND DATALENGTH(i.' + QUOTENAME(@col) + N') = DATALENGTH(d.' + QUOTENAME(@col) + N')'"
    ));
    // No collation-dependent key equality is left.
    assert!(
        !generator.contains("N' = d.' + QUOTENAME(@col)"),
        "{generator}"
    );
}

#[test]
fn the_installer_writes_declared_names() {
    let generator = code(script("03"));
    for piece in [
        "COLUMNPROPERTY(@object, @col, 'ColumnId')",
        "SET @col = COL_NAME(@object, @id);",
        "N'd.' + QUOTENAME(@col) + N' AS ' + QUOTENAME(@col)",
        "N'i.' + QUOTENAME(@col) + N' AS ' + QUOTENAME(@col)",
        "@schema sysname = OBJECT_SCHEMA_NAME(@object), @name sysname = OBJECT_NAME(@object)",
        "CHARINDEX(N'.', @col) > 0",
        "INSERT INTO ' + @queue + N' (TableName, RecordID, Operation)",
    ] {
        assert!(generator.contains(piece), "{piece}");
    }
}

#[test]
fn the_queue_is_one_procedure_for_the_agent_and_the_self_test() {
    let queue = code(script("02"));
    assert!(queue.contains("CREATE OR ALTER PROCEDURE dbo.sp_SyncInstallQueue"));
    assert!(queue.contains("EXEC dbo.sp_SyncInstallQueue;"));
    assert!(queue.contains("QUOTENAME(@Schema) + N'.[SyncQueue]'"));
    assert!(!queue.contains("CREATE TABLE dbo.SyncQueue"));
}

#[test]
fn the_notification_target_can_be_given_without_touching_sync_config() {
    let notify = code(script("04"));
    assert!(notify.contains("@TargetUrl nvarchar(4000) = NULL"));
    assert!(notify.contains("SET @url = @TargetUrl;"));
}
