//! Unit tests of table names, quoting, catalog types and column lookup (no SQL Server).

use super::*;

#[test]
fn table_names_default_to_dbo_and_accept_quoting() {
    let p = |s| parse_table_name(s).unwrap();
    assert_eq!(p("tblPatients"), ("dbo".into(), "tblPatients".into()));
    assert_eq!(p("sales.Orders"), ("sales".into(), "Orders".into()));
    assert_eq!(
        p("[my schema].[odd]]name]"),
        ("my schema".into(), "odd]name".into())
    );
    assert_eq!(p("\"s\".\"t.x\""), ("s".into(), "t.x".into()));
    for bad in ["", "a.b.c", "a.", ".b", "[unclosed", "[a]b"] {
        assert!(parse_table_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn identifiers_are_quoted_like_quotename() {
    assert_eq!(quote("tblPatients"), "[tblPatients]");
    assert_eq!(quote("a]b"), "[a]]b]");
    assert_eq!(quote("x'; DROP TABLE y; --"), "[x'; DROP TABLE y; --]");
}

#[test]
fn catalog_types_map_to_sql_types_and_declarations() {
    let t = |name, len, p, s| column_type(name, len, p, s);
    assert_eq!(
        t("int", 4, 10, 0),
        (SqlType::Int { bits: 32 }, Some("int".into()))
    );
    assert_eq!(
        t("decimal", 9, 12, 2),
        (
            SqlType::Decimal {
                precision: 12,
                scale: 2
            },
            Some("decimal(12,2)".into())
        )
    );
    assert_eq!(t("money", 8, 19, 4), (SqlType::Money, Some("money".into())));
    assert_eq!(
        t("nvarchar", 400, 0, 0),
        (
            SqlType::Text {
                unicode: true,
                max_chars: Some(200)
            },
            Some("nvarchar(200)".into())
        )
    );
    assert_eq!(
        t("nvarchar", -1, 0, 0),
        (
            SqlType::Text {
                unicode: true,
                max_chars: None
            },
            Some("nvarchar(max)".into())
        )
    );
    assert_eq!(
        t("char", 3, 0, 0),
        (
            SqlType::Text {
                unicode: false,
                max_chars: Some(3)
            },
            Some("char(3)".into())
        )
    );
    assert_eq!(
        t("varbinary", 64, 0, 0),
        (
            SqlType::Binary {
                max_bytes: Some(64)
            },
            Some("varbinary(64)".into())
        )
    );
    assert_eq!(
        t("varbinary", -1, 0, 0),
        (
            SqlType::Binary { max_bytes: None },
            Some("varbinary(max)".into())
        )
    );
    assert_eq!(
        t("datetime2", 7, 23, 3),
        (SqlType::DateTime2 { scale: 3 }, Some("datetime2(3)".into()))
    );
    assert_eq!(
        t("datetimeoffset", 9, 30, 3),
        (
            SqlType::DateTimeOffset { scale: 3 },
            Some("datetimeoffset(3)".into())
        )
    );
    assert_eq!(
        t("smalldatetime", 4, 16, 0),
        (SqlType::DateTime, Some("smalldatetime".into()))
    );
    assert_eq!(t("ntext", 16, 0, 0).1, Some("nvarchar(max)".into()));
    assert_eq!(
        t("xml", -1, 0, 0),
        (SqlType::Unsupported("xml".into()), None)
    );
    assert_eq!(
        t("geography", -1, 0, 0),
        (SqlType::Unsupported("geography".into()), None)
    );
}

#[test]
fn columns_are_found_exactly_then_case_insensitively() {
    let col = |name: &str| ColumnInfo {
        source: SourceColumn {
            name: name.into(),
            sql_type: SqlType::Int { bits: 32 },
            nullable: false,
            identity: false,
            computed: false,
        },
        type_name: "int".into(),
        decl: Some("int".into()),
    };
    let info = TableInfo {
        schema: "dbo".into(),
        name: "t".into(),
        columns: vec![col("PersonID"), col("a"), col("A")],
    };
    assert_eq!(info.column("personid").unwrap().source.name, "PersonID");
    assert_eq!(info.column("A").unwrap().source.name, "A");
    assert!(info.column("missing").is_err());
    assert_eq!(info.quoted(), "[dbo].[t]");
}

#[test]
fn names_come_from_information_schema_and_types_from_sys_columns() {
    let sql = DESCRIBE_SQL;
    // The object is resolved as the engine resolves names, never by comparing catalog text
    // with what the agent was told.
    assert!(
        sql.contains("OBJECT_ID(QUOTENAME(@P1) + N'.' + QUOTENAME(@P2))"),
        "{sql}"
    );
    assert!(!sql.contains("= @P1") && !sql.contains("= @P2"), "{sql}");
    assert!(sql.contains("COALESCE(t.TABLE_SCHEMA, OBJECT_SCHEMA_NAME(o.id))"));
    assert!(sql.contains("COALESCE(t.TABLE_NAME, OBJECT_NAME(o.id))"));
    assert!(sql.contains("COALESCE(ic.COLUMN_NAME, COL_NAME(c.object_id, c.column_id))"));
    // Columns are paired by id, and sys.columns keeps the types.
    assert!(sql.contains("COLUMNPROPERTY(@id, ic.COLUMN_NAME, 'ColumnId') = c.column_id"));
    assert!(sql.contains("c.max_length AS MaxLength"));
    assert!(!sql.contains("c.name AS"), "{sql}");
}
