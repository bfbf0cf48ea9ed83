//! The triggers the double emulates: the change trigger `sql/sqlserver/03` installs on every
//! synced table (one queue row per changed row, the agent's direct writes skipped), and clinic
//! triggers a test registers — a clinic's own AFTER trigger that writes another table when a row
//! is written, as a "has new note" flag would. Writes made by a clinic trigger run one trigger
//! level deeper, which is what the change trigger's loop guard looks at.

use std::fmt;
use std::sync::Arc;

use super::{MemoryStore, State};
use crate::sqlserver::SqlValue;
use crate::sqlserver::{RecordKey, Row};

/// SQL Server stops a chain of nested triggers at 32 levels.
const MAX_NEST_LEVEL: u32 = 32;

/// Who wrote a row, and at which trigger level: `TRIGGER_NESTLEVEL()` as the change trigger
/// fired by that write sees it (1 for a statement's direct write, 2 for a write made by a
/// trigger fired by it, and so on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Origin {
    agent: bool,
    nest_level: u32,
}

impl Origin {
    /// A statement of the clinic's own applications.
    pub(super) const CLINIC: Self = Self {
        agent: false,
        nest_level: 1,
    };
    /// A statement of the agent's session (SESSION_CONTEXT(N'syncbridge') set).
    pub(super) const AGENT: Self = Self {
        agent: true,
        nest_level: 1,
    };

    /// The change trigger's loop guard: only the agent's direct writes are skipped. A change a
    /// clinic trigger makes because of an agent's write is a real change of another row and
    /// must reach Supabase.
    pub(super) fn queues(self) -> bool {
        !(self.agent && self.nest_level == 1)
    }

    fn nested(self) -> Self {
        Self {
            nest_level: self.nest_level + 1,
            ..self
        }
    }
}

/// What a clinic trigger does for one written row: the key of the `target` row to update and
/// the columns to set, or `None` to do nothing.
pub type ClinicRule = dyn Fn(&Row) -> Option<(RecordKey, Vec<(String, SqlValue)>)> + Send + Sync;

/// A clinic's AFTER INSERT, UPDATE trigger on `on` that updates a row of `target`.
#[derive(Clone)]
pub struct ClinicTrigger {
    on: String,
    target: String,
    rule: Arc<ClinicRule>,
}

impl ClinicTrigger {
    pub fn new(
        on: &str,
        target: &str,
        rule: impl Fn(&Row) -> Option<(RecordKey, Vec<(String, SqlValue)>)> + Send + Sync + 'static,
    ) -> Self {
        Self {
            on: on.to_owned(),
            target: target.to_owned(),
            rule: Arc::new(rule),
        }
    }
}

impl fmt::Debug for ClinicTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClinicTrigger")
            .field("on", &self.on)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// Registers a clinic trigger; it fires for every later write of its table, the agent's
    /// included.
    pub fn add_clinic_trigger(&self, trigger: ClinicTrigger) {
        self.lock().clinic_triggers.push(trigger);
    }

    /// One row written (`None` deletes) by `origin`, inside writer transaction `tx` if any: the
    /// row changes, the change trigger queues it unless the loop guard skips it, and the
    /// clinic triggers on the table fire one level deeper.
    pub(super) fn write_row(
        s: &mut State,
        table: &str,
        key: &RecordKey,
        row: Option<Row>,
        tx: Option<u64>,
        origin: Origin,
    ) {
        let Some(t) = s.tables.get(table) else {
            return;
        };
        let existed = t.rows.contains_key(key);
        let operation = match (&row, existed) {
            (None, _) => "DELETE",
            (Some(_), true) => "UPDATE",
            (Some(_), false) => "INSERT",
        };
        let written = row.clone();
        match tx {
            Some(tx) => s
                .pending
                .entry(tx)
                .or_default()
                .push((table.to_owned(), key.clone(), row)),
            None => Self::put(s, table, key, row),
        }
        if origin.queues() {
            Self::enqueue(s, table, &key.to_json(), operation, tx);
        }
        if let Some(row) = written {
            Self::fire_clinic_triggers(s, table, &row, tx, origin);
        }
    }

    fn fire_clinic_triggers(s: &mut State, table: &str, row: &Row, tx: Option<u64>, by: Origin) {
        if by.nest_level >= MAX_NEST_LEVEL {
            return;
        }
        let fired: Vec<_> = s
            .clinic_triggers
            .iter()
            .filter(|t| t.on == table)
            .filter_map(|t| (t.rule)(row).map(|(key, set)| (t.target.clone(), key, set)))
            .collect();
        for (target, key, set) in fired {
            // An UPDATE that matches no row changes nothing and queues nothing.
            let Some(mut current) = s
                .tables
                .get(&target)
                .and_then(|t| t.rows.get(&key).cloned())
            else {
                continue;
            };
            current.extend(set);
            Self::write_row(s, &target, &key, Some(current), tx, by.nested());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlserver::KeyPart;

    #[test]
    fn only_the_agents_direct_writes_are_skipped() {
        assert!(Origin::CLINIC.queues());
        assert!(!Origin::AGENT.queues());
        assert!(Origin::AGENT.nested().queues());
        assert!(Origin::CLINIC.nested().queues());
    }

    #[test]
    fn a_clinic_trigger_updates_its_target_and_the_change_is_queued() {
        let store = MemoryStore::new();
        store.create_table("Notes", vec![]);
        store.create_table("Sets", vec![]);
        let key = |id| RecordKey([("ID".to_owned(), KeyPart::Int(id))].into_iter().collect());
        store.clinic_write(
            "Sets",
            &key(7),
            Some([("Flag".to_owned(), SqlValue::Bit(false))].into()),
        );
        store.add_clinic_trigger(ClinicTrigger::new("Notes", "Sets", move |row| {
            let Some(SqlValue::Int(set)) = row.get("SetID") else {
                return None;
            };
            Some((key(*set), vec![("Flag".to_owned(), SqlValue::Bit(true))]))
        }));
        store.clinic_write(
            "Notes",
            &key(1),
            Some([("SetID".to_owned(), SqlValue::Int(7))].into()),
        );
        assert_eq!(
            store.row("Sets", &key(7)).unwrap()["Flag"],
            SqlValue::Bit(true)
        );
        let queued: Vec<_> = store
            .queue()
            .into_iter()
            .map(|q| (q.table, q.operation))
            .collect();
        assert_eq!(
            queued,
            [
                ("Sets".to_owned(), "INSERT".to_owned()),
                ("Notes".to_owned(), "INSERT".to_owned()),
                ("Sets".to_owned(), "UPDATE".to_owned()),
            ]
        );
    }
}
