//! Reads: live messages of a queue in offset order, and the figures of the store. They run
//! on the caller's thread against RocksDB and the published state, never waiting for the
//! writer; what they see is what was committed (the state is published after the write).

use super::{check_name, Message, MessageRef, ReadLimits, Stats, Store};
use crate::error::{Error, Result};
use crate::keys;
use crate::options;
use crate::queue::QueueStats;
use crate::record;

impl Store {
    /// Visits the live messages of `queue` from offset `from` in order, skipping acked and
    /// expired ones. Returns how many were visited.
    pub fn read_with(
        &self,
        queue: &str,
        from: u64,
        limits: ReadLimits,
        mut visit: impl FnMut(MessageRef<'_>),
    ) -> Result<usize> {
        check_name("queue name", queue)?;
        let db = self.db()?;
        let (qid, acked_next, tail) = {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            match s.by_name.get(queue).and_then(|id| s.queues.get(id)) {
                Some(q) => (q.id, q.acked_next, q.tail),
                None => return Ok(0),
            }
        };
        let start = from.max(acked_next);
        if start >= tail || limits.limit == 0 {
            return Ok(0);
        }
        let cf = db.cf_handle(keys::CF_MSGS).ok_or(Error::Closed)?;
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(keys::msg(qid, tail).to_vec());
        let mut it = db.raw_iterator_cf_opt(cf, ro);
        it.seek(keys::msg(qid, start));
        let now = options::now_ms();
        let (mut n, mut bytes) = (0usize, 0usize);
        let corrupt = |reason: String| Error::Corrupt { path: self.path.clone(), reason };
        while it.valid() && n < limits.limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            let offset = keys::msg_offset(qid, k).ok_or_else(|| corrupt(format!("bad key in queue {queue:?}")))?;
            let r = record::decode(v)
                .ok_or_else(|| corrupt(format!("bad record at offset {offset} of queue {queue:?}")))?;
            if r.header.expires_at > now {
                let size = r.properties.len() + r.body.len();
                if n > 0 && bytes + size > limits.max_bytes {
                    break;
                }
                bytes += size;
                n += 1;
                let expires_at = (r.header.expires_at != record::NEVER).then_some(r.header.expires_at);
                visit(MessageRef {
                    offset,
                    enqueued_at: r.header.enqueued_at,
                    expires_at,
                    properties: r.properties,
                    body: r.body,
                });
            }
            it.next();
        }
        it.status().map_err(|e| Error::from_db(&self.path, e))?;
        Ok(n)
    }

    /// Reads up to `limit` live messages of `queue` from offset `from`.
    pub fn read(&self, queue: &str, from: u64, limit: usize) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        let mut bad = None;
        self.read_with(queue, from, ReadLimits { limit, max_bytes: usize::MAX }, |m| match record::decode_properties(
            m.properties,
        ) {
            Ok(properties) => out.push(Message {
                offset: m.offset,
                enqueued_at: m.enqueued_at,
                expires_at: m.expires_at,
                properties,
                body: m.body.to_vec(),
            }),
            Err(e) => bad = Some(e),
        })?;
        match bad {
            Some(reason) => Err(Error::Corrupt { path: self.path.clone(), reason }),
            None => Ok(out),
        }
    }

    /// Counters of one queue, `None` for a name never appended to; no disk access, and none
    /// of the other queues' figures built (a per-send check must not cost one per queue).
    pub fn queue_stats(&self, name: &str) -> Result<Option<QueueStats>> {
        self.db()?;
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        Ok(s.by_name.get(name).and_then(|qid| s.queues.get(qid)).map(|q| q.stats()))
    }

    /// Counters of every queue and the totals; no disk access.
    pub fn stats(&self) -> Result<Stats> {
        self.db()?;
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut queues: Vec<QueueStats> = s.queues.values().map(|q| q.stats()).collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Stats {
            count: queues.iter().map(|q| q.count).sum(),
            bytes: s.live_bytes,
            queues,
            max_size_bytes: self.options().max_size_bytes,
            expired: s.expired,
            dropped: s.dropped,
        })
    }
}
