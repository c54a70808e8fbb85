//! [`StateStore`] for the embedded SQLite store
//! (`crate::approval::store::Store`, ledger tables in `crate::ledger::db`).

use super::{StateStore, StoreError};
use crate::approval::store::Store;
use crate::evidence::dsse::Envelope;
use crate::ledger::merkle::Hash;
use crate::ledger::{Entry, db};

impl StateStore for Store {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn store_id(&mut self) -> Result<String, StoreError> {
        Store::store_id(self)
    }

    fn consumed_at(&mut self, approval_id: &str) -> Result<Option<String>, StoreError> {
        Store::consumed_at(self, approval_id)
    }

    fn consume_all(
        &mut self,
        approval_ids: &[String],
        contract_sha256: &str,
        execution_id: &str,
        now: &str,
    ) -> Result<Result<(), (String, String)>, StoreError> {
        Store::consume_all(self, approval_ids, contract_sha256, execution_id, now)
    }

    fn append(&mut self, receipt: &[u8], now: &str) -> Result<u64, StoreError> {
        db::append(self, receipt, now)
    }

    fn for_each_entry(
        &mut self,
        each: &mut dyn FnMut(Entry) -> Result<(), String>,
    ) -> Result<(), String> {
        db::for_each_entry(self, each)
    }

    fn leaves(&mut self) -> Result<Vec<Hash>, StoreError> {
        db::leaves(self)
    }

    fn checkpoints(&mut self) -> Result<Vec<Envelope>, String> {
        db::checkpoints(self)
    }

    fn add_checkpoint(&mut self, tree_size: u64, env: &Envelope) -> Result<(), StoreError> {
        db::add_checkpoint(self, tree_size, env)
    }

    fn integrity_check(&mut self) -> Result<(), StoreError> {
        Store::integrity_check(self)
    }
}
