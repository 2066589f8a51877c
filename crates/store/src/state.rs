//! The store's in-memory state (queues, runs, counters) and its loading at open.
//!
//! Loading reads only the `meta` column family: a few keys per queue and one per run, so
//! opening a store costs the same with a million messages as with none.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{IteratorMode, DB};

use crate::error::{Error, Result};
use crate::keys;
use crate::queue::{Queue, Run};

pub(crate) const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub queues: HashMap<u32, Queue>,
    pub by_name: HashMap<Arc<str>, u32>,
    pub next_qid: u32,
    /// Messages removed because their TTL passed (persisted).
    pub expired: u64,
    /// Messages evicted by the `drop-oldest` policy (persisted).
    pub dropped: u64,
    /// Σ live bytes of all queues; kept in step with the runs.
    pub live_bytes: u64,
}

impl State {
    pub fn encode_global(&self) -> Vec<u8> {
        let mut v = self.next_qid.to_be_bytes().to_vec();
        v.extend_from_slice(&keys::u64s([self.expired, self.dropped]));
        v
    }

    /// Loads the state of an opened database, initialising a new one.
    pub fn load(db: &DB, path: &Path) -> Result<State> {
        let corrupt = |reason: String| Error::Corrupt { path: path.to_path_buf(), reason };
        let dberr = |e| Error::from_db(path, e);
        let meta = db.cf_handle(keys::CF_META).ok_or_else(|| corrupt("no meta column family".into()))?;
        let version = db.get_cf(meta, keys::META_VERSION).map_err(dberr)?;
        let mut state = State::default();
        let Some(version) = version else {
            let mut any = db.iterator_cf(meta, IteratorMode::Start);
            if any.next().is_some() {
                return Err(corrupt("metadata present but no format version".into()));
            }
            let msgs = db.cf_handle(keys::CF_MSGS).ok_or_else(|| corrupt("no msgs column family".into()))?;
            if db.iterator_cf(msgs, IteratorMode::Start).next().is_some() {
                return Err(corrupt("messages present but no metadata".into()));
            }
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(meta, keys::META_VERSION, FORMAT_VERSION.to_be_bytes());
            wb.put_cf(meta, keys::META_GLOBAL, state.encode_global());
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            db.write_opt(wb, &wo).map_err(dberr)?;
            return Ok(state);
        };
        let found = <[u8; 4]>::try_from(&version[..])
            .map(u32::from_be_bytes)
            .map_err(|_| corrupt("format version is not 4 bytes".into()))?;
        if found > FORMAT_VERSION || found == 0 {
            return Err(Error::UnsupportedFormat { path: path.to_path_buf(), found, supported: FORMAT_VERSION });
        }
        let g = db
            .get_cf(meta, keys::META_GLOBAL)
            .map_err(dberr)?
            .ok_or_else(|| corrupt("global counters missing".into()))?;
        if g.len() != 20 {
            return Err(corrupt("global counters have the wrong length".into()));
        }
        state.next_qid = u32::from_be_bytes([g[0], g[1], g[2], g[3]]);
        [state.expired, state.dropped] = keys::parse_u64s(&g[4..]).ok_or_else(|| corrupt("global counters".into()))?;

        for item in db.prefix_iterator_cf(meta, [keys::META_NAME]) {
            let (k, v) = item.map_err(dberr)?;
            if k.first() != Some(&keys::META_NAME) {
                break;
            }
            let name: Arc<str> =
                std::str::from_utf8(&k[1..]).map_err(|_| corrupt("queue name is not UTF-8".into()))?.into();
            let qid = <[u8; 4]>::try_from(&v[..])
                .map(u32::from_be_bytes)
                .map_err(|_| corrupt(format!("queue id of {name:?}")))?;
            let counters = db
                .get_cf(meta, keys::queue(qid))
                .map_err(dberr)?
                .ok_or_else(|| corrupt(format!("counters of queue {name:?} missing")))?;
            let [tail, tail_cum, acked_next] =
                keys::parse_u64s(&counters).ok_or_else(|| corrupt(format!("counters of queue {name:?}")))?;
            let mut q = Queue::new(qid, name.clone());
            (q.tail, q.tail_cum, q.acked_next) = (tail, tail_cum, acked_next);
            let prefix = &keys::run(qid, 0)[..5];
            for item in db.prefix_iterator_cf(meta, prefix) {
                let (k, v) = item.map_err(dberr)?;
                if !k.starts_with(prefix) {
                    break;
                }
                let start =
                    keys::parse_u64s::<1>(&k[5..]).ok_or_else(|| corrupt(format!("run key of queue {name:?}")))?[0];
                let run = Run::decode(start, &v).ok_or_else(|| corrupt(format!("run at {start} of queue {name:?}")))?;
                let ordered = q.runs.back().is_none_or(|p| p.end <= run.start);
                if !ordered || run.end > q.tail || run.end_cum > q.tail_cum || run.start < q.acked_next {
                    return Err(corrupt(format!("run at {start} of queue {name:?} is inconsistent with its counters")));
                }
                q.runs.push_back(run);
            }
            if qid >= state.next_qid || state.queues.contains_key(&qid) {
                return Err(corrupt(format!("queue id {qid} of {name:?} is not unique")));
            }
            state.live_bytes += q.live_bytes();
            state.by_name.insert(name, qid);
            state.queues.insert(qid, q);
        }
        Ok(state)
    }
}
