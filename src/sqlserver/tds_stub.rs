//! TEMPORARY lead-only stub so the crate compiles until tds/ lands.
pub struct TdsStore;
impl TdsStore {
    pub fn new(_c: tiberius::Config, _a: String, _p: u32) -> super::memory::MemoryStore {
        super::memory::MemoryStore::new()
    }
}
