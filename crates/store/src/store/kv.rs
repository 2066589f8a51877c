//! The key-value space beside the queues: small durable state (twins, sessions, the
//! identity cache) in namespaces. Writes go through the writer thread like appends, so a
//! put shares the group commit and can join an append (`append_parts_with`); reads go to
//! RocksDB directly.

use super::{check_name, wait, Store};
use crate::error::{Error, Result};
use crate::keys;
use crate::writer::{Command, Reply};

impl Store {
    pub(super) fn kv_key(ns: &str, key: &str) -> Result<Vec<u8>> {
        check_name("kv namespace", ns)?;
        if ns.as_bytes().contains(&0) {
            return Err(Error::InvalidArgument("kv namespace must not contain NUL".into()));
        }
        Ok(keys::kv(ns, key))
    }

    /// Stores `value` under `ns`/`key` durably.
    pub fn kv_put_with(&self, ns: &str, key: &str, value: Vec<u8>, done: Reply<()>) {
        match Self::kv_key(ns, key) {
            Ok(key) => self.submit(Command::KvPut { key, value, reply: done }),
            Err(e) => done(Err(e)),
        }
    }

    pub fn kv_put(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<()> {
        wait(|reply| self.kv_put_with(ns, key, value, reply))
    }

    /// Deletes `ns`/`key` durably (no error when absent).
    pub fn kv_delete_with(&self, ns: &str, key: &str, done: Reply<()>) {
        match Self::kv_key(ns, key) {
            Ok(key) => self.submit(Command::KvDelete { key, reply: done }),
            Err(e) => done(Err(e)),
        }
    }

    pub fn kv_delete(&self, ns: &str, key: &str) -> Result<()> {
        wait(|reply| self.kv_delete_with(ns, key, reply))
    }

    pub fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let k = Self::kv_key(ns, key)?;
        let db = self.db()?;
        let cf = db.cf_handle(keys::CF_KV).ok_or(Error::Closed)?;
        db.get_cf(cf, k).map_err(|e| Error::from_db(&self.path, e))
    }

    /// Entries of `ns` whose key starts with `prefix`, in key order.
    pub fn kv_scan(&self, ns: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let start = Self::kv_key(ns, prefix)?;
        let db = self.db()?;
        let cf = db.cf_handle(keys::CF_KV).ok_or(Error::Closed)?;
        let mut it = db.raw_iterator_cf(cf);
        it.seek(&start);
        let skip = ns.len() + 1;
        let mut out = Vec::new();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            if !k.starts_with(&start) {
                break;
            }
            let key = String::from_utf8(k[skip..].to_vec())
                .map_err(|_| Error::Corrupt { path: self.path.clone(), reason: "kv key is not UTF-8".into() })?;
            out.push((key, v.to_vec()));
            it.next();
        }
        it.status().map_err(|e| Error::from_db(&self.path, e))?;
        Ok(out)
    }
}
