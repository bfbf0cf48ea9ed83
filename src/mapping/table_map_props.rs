//! Properties of the table-map loader: any text is loaded or refused with an error (never a
//! panic), a valid map written as TOML loads back exactly, and a structurally wrong one (a
//! table listed twice, a key excluded) is refused.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{ReverseSpec, TableMap, TableSpec};

fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_]{0,12}"
}

/// A structurally valid table: keys present and neither excluded nor portal-owned.
fn table(index: usize) -> impl Strategy<Value = TableSpec> {
    (
        proptest::collection::btree_set(ident(), 1..6),
        1usize..3,
        any::<bool>(),
        proptest::option::of((any::<bool>(), any::<bool>(), any::<bool>(), ident())),
    )
        .prop_map(move |(columns, keys, rename_one, reverse)| {
            let columns: Vec<String> = columns.into_iter().collect();
            let keys: Vec<String> = columns
                .iter()
                .take(keys.min(columns.len()))
                .cloned()
                .collect();
            let rest: Vec<String> = columns.iter().skip(keys.len()).cloned().collect();
            let (portal_owned, exclude) = rest.split_at(rest.len() / 2);
            let mut rename = BTreeMap::new();
            if rename_one {
                rename.insert(keys[0].clone(), format!("renamed_{index}"));
            }
            let reverse = reverse.map(|(insert, update, delete, version_column)| ReverseSpec {
                insert,
                // Reverse updates need a portal-owned column.
                update: update && !portal_owned.is_empty(),
                delete,
                version_column,
                ignore_columns: Vec::new(),
            });
            TableSpec {
                source: format!("tblT{index}"),
                target: (index % 2 == 0).then(|| format!("target_{index}")),
                keys,
                exclude: exclude.to_vec(),
                rename,
                portal_owned: portal_owned.to_vec(),
                reverse,
            }
        })
}

fn table_map() -> impl Strategy<Value = TableMap> {
    (1usize..5)
        .prop_flat_map(|n| (0..n).map(table).collect::<Vec<_>>())
        .prop_map(|tables| TableMap { tables })
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The map as an operator would write it.
fn to_toml(map: &TableMap) -> String {
    let mut out = String::new();
    for t in &map.tables {
        out += &format!(
            "[[table]]\nsource = {:?}\nkeys = {}\n",
            t.source,
            list(&t.keys)
        );
        if let Some(target) = &t.target {
            out += &format!("target = {target:?}\n");
        }
        out += &format!(
            "exclude = {}\nportal_owned = {}\n",
            list(&t.exclude),
            list(&t.portal_owned)
        );
        if !t.rename.is_empty() {
            let pairs: Vec<String> = t
                .rename
                .iter()
                .map(|(k, v)| format!("{k:?} = {v:?}"))
                .collect();
            out += &format!("rename = {{ {} }}\n", pairs.join(", "));
        }
        if let Some(r) = &t.reverse {
            out += &format!(
                "[table.reverse]\ninsert = {}\nupdate = {}\ndelete = {}\nversion_column = {:?}\n",
                r.insert, r.update, r.delete, r.version_column
            );
        }
        out += "\n";
    }
    out
}

fn load(text: &str) -> Result<TableMap, super::TableMapError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("map.toml");
    std::fs::write(&path, text).expect("write");
    TableMap::load(&path)
}

proptest! {
    #![proptest_config(crate::proptest_cases::bounded())]

    #[test]
    fn a_valid_map_written_as_toml_loads_back_exactly(map in table_map()) {
        let text = to_toml(&map);
        let loaded = load(&text);
        prop_assert!(loaded.is_ok(), "{text}\n{:?}", loaded.err().map(|e| e.to_string()));
        prop_assert_eq!(loaded.ok(), Some(map), "{}", text);
    }

    #[test]
    fn a_table_listed_twice_or_a_key_excluded_is_refused(map in table_map(), which in any::<bool>()) {
        let mut broken = map.clone();
        if which {
            let mut twin = broken.tables[0].clone();
            // Another spelling of the same table, another target.
            twin.source = format!("[dbo].[{}]", twin.source);
            twin.target = Some("twin_target".to_owned());
            broken.tables.push(twin);
        } else {
            let key = broken.tables[0].keys[0].clone();
            broken.tables[0].exclude.push(key);
        }
        prop_assert!(load(&to_toml(&broken)).is_err());
    }

    #[test]
    fn any_text_loads_or_is_refused_without_panicking(text in "(\\[\\[table\\]\\]\n|[a-z_]{1,8} = |\"[a-zA-Z.\\[\\]]{0,8}\"|\\[|\\]|\n|[0-9]|true){0,30}") {
        if let Ok(map) = load(&text) {
            prop_assert!(map.validate().is_ok());
        }
    }
}
