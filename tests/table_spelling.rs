//! Issue 6.6: one spelling of a table. A table map that names `dbo.tblPatients` or
//! `[dbo].[tblWork]` syncs the items the triggers queue under the bare names, from SQL Server's
//! catalog or from the cached copy while SQL Server is unreachable.

mod common;

use common::*;
use syncbridge::mapping::TableMap;

fn spelled_map() -> TableMap {
    let mut map = TableMap::sample_clinic();
    map.tables[0].source = "dbo.tblPatients".to_owned();
    map.tables[1].source = "[dbo].[tblWork]".to_owned();
    map.tables[2].source = "DBO.tblAlignerSets".to_owned();
    map
}

async fn synced_and_equal(h: &Harness, map: &TableMap) {
    h.notify().await;
    assert_nothing_lost(h, map).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_qualified_source_syncs_the_triggers_bare_names() {
    let map = spelled_map();
    let o = Options {
        map: map.clone(),
        ..Options::default()
    };
    let mut h = Harness::start_with(o.clone()).await;
    seed_parents(&h.sql);
    assert!(
        h.sql.queue().iter().any(|q| q.table == "tblPatients"),
        "the triggers queue bare names"
    );
    synced_and_equal(&h, &map).await;

    // Started again while SQL Server is unreachable: the cached catalog finds the same tables.
    h.stop().await;
    h.sql.set_down(true);
    h.launch(&o).await;
    h.sql.set_down(false);
    h.sql.clinic_write(
        "tblPatients",
        &key("PersonID", 2),
        Some(patient(2, "second")),
    );
    h.sql
        .clinic_write("tblWork", &key("WorkID", 2), Some(work(2, 2)));
    synced_and_equal(&h, &map).await;
}
