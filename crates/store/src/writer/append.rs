//! Appends and acks: the two operations that move a queue's tail and head. Part of the
//! writer thread (see `writer.rs`); every fallible step of an append or an ack comes
//! before its first write to the shared batch.

use std::ops::Range;
use std::sync::Arc;

use super::{cf, Batch, Part, Writer};
use crate::error::{Error, Result};
use crate::keys;
use crate::options::{self, WhenFull};
use crate::queue::{Queue, MAX_RUNS};
use crate::record::{self, Header};

impl Writer {
    /// Applies `parts` in order, then `puts` (KV keys and values). Every fallible step (quota, queue ids, queue state) comes
    /// before the first write to the batch, so a refused append leaves nothing behind in it
    /// (the batch is shared with other callers) and the parts are stored all or none.
    pub(super) fn append(
        &mut self,
        b: &mut Batch,
        parts: &[Part],
        puts: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<Vec<Range<u64>>>> {
        let now = options::now_ms();
        let total: usize = parts.iter().map(|p| p.messages.len()).sum();
        let mut incoming = 0u64;
        for p in parts {
            for name in &p.queues {
                // Upper bound: any message may start a run, so count the clamp's 8 bytes for
                // all of them once the queue could reach the cap within this append.
                let runs = self.qid(b, name).map_or(0, |id| {
                    b.overlay
                        .get(&id)
                        .map_or_else(|| self.read_state().queues.get(&id).map_or(0, |q| q.runs.len()), |q| q.runs.len())
                });
                let crowded = runs + total >= MAX_RUNS;
                incoming += p
                    .messages
                    .iter()
                    .map(|m| (keys::MSG_KEY_LEN + record::encoded_len(m.properties, m.body, crowded)) as u64)
                    .sum::<u64>();
            }
        }
        let max = self.opts.max_size_bytes;
        if b.live_bytes.saturating_add(incoming) > max {
            if self.opts.when_full == WhenFull::Reject || incoming > max {
                return Err(Error::Full { live: b.live_bytes, incoming, max });
            }
            if !b.wb.is_empty() {
                self.flush(b);
            }
            self.evict(b, b.live_bytes + incoming - max)?;
            if b.live_bytes + incoming > max {
                return Err(Error::Full { live: b.live_bytes, incoming, max });
            }
        }
        let db = self.db.clone();
        let (msgs_cf, meta_cf) = (cf(&db, &self.path, keys::CF_MSGS)?, cf(&db, &self.path, keys::CF_META)?);
        let kv_cf = cf(&db, &self.path, keys::CF_KV)?;
        // Queue ids, new ones numbered once even when several parts name them.
        let mut fresh: Vec<(Arc<str>, u32)> = Vec::new();
        let mut next_qid = b.next_qid;
        let mut ids: Vec<Vec<u32>> = Vec::with_capacity(parts.len());
        for p in parts {
            let mut part_ids = Vec::with_capacity(p.queues.len());
            for name in &p.queues {
                let known = self.qid(b, name).or_else(|| fresh.iter().find(|(n, _)| n == name).map(|(_, id)| *id));
                part_ids.push(match known {
                    Some(id) => id,
                    None => {
                        let id = next_qid;
                        next_qid = id.checked_add(1).ok_or_else(|| Error::InvalidArgument("too many queues".into()))?;
                        fresh.push((name.clone(), id));
                        id
                    }
                });
            }
            ids.push(part_ids);
        }
        for &id in ids.iter().flatten() {
            if !fresh.iter().any(|(_, f)| *f == id) {
                self.queue(&mut b.overlay, id)?;
            }
        }
        if !fresh.is_empty() {
            b.next_qid = next_qid;
            b.globals_dirty = true;
        }
        for (name, qid) in fresh {
            b.wb.put_cf(meta_cf, keys::name(&name), qid.to_be_bytes());
            b.overlay.insert(qid, Queue::new(qid, name.clone()));
            b.names.push((name, qid));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut all = Vec::with_capacity(parts.len());
        for (p, part_ids) in parts.iter().zip(&ids) {
            let mut ranges = Vec::with_capacity(part_ids.len());
            for &qid in part_ids {
                // Every queue of the append was put in the overlay above.
                let q = b.overlay.get_mut(&qid).ok_or_else(|| Error::Corrupt {
                    path: self.path.clone(),
                    reason: format!("queue id {qid} has no state"),
                })?;
                let old_tail = q.tail;
                let mut added = 0u64;
                for m in p.messages.iter() {
                    let expires_at = options::expiry(now, m.ttl_secs.unwrap_or(self.opts.default_ttl_secs));
                    let (evict_at, new_run) = q.place(expires_at);
                    let h = Header { enqueued_at: now, expires_at, cum_bytes: q.tail_cum, evict_at };
                    scratch.clear();
                    record::encode(&mut scratch, &h, m.properties, m.body);
                    b.wb.put_cf(msgs_cf, keys::msg(qid, q.tail), &scratch);
                    let size = (keys::MSG_KEY_LEN + scratch.len()) as u64;
                    q.push(size, now, evict_at, new_run);
                    added += size;
                }
                b.wb.put_cf(meta_cf, keys::queue(qid), q.encode_counters());
                for run in q.runs.iter().rev().take_while(|r| r.end > old_tail) {
                    b.wb.put_cf(meta_cf, keys::run(qid, run.start), run.encode());
                }
                b.live_bytes += added;
                ranges.push(old_tail..q.tail);
            }
            all.push(ranges);
        }
        self.scratch = scratch;
        for (key, value) in puts {
            b.wb.put_cf(kv_cf, key, value);
        }
        Ok(all)
    }

    pub(super) fn ack(&mut self, b: &mut Batch, name: &str, offset: u64) -> Result<()> {
        let Some(qid) = self.qid(b, name) else {
            return Err(Error::InvalidOffset { queue: name.to_owned(), offset, tail: 0 });
        };
        let published = self.read_state().queues.get(&qid).map(|p| p.tail);
        let (tail, acked_next) = {
            let q = self.queue(&mut b.overlay, qid)?;
            (q.tail, q.acked_next)
        };
        if offset >= tail {
            return Err(Error::InvalidOffset { queue: name.to_owned(), offset, tail });
        }
        let end = offset + 1;
        if end <= acked_next {
            return Ok(());
        }
        // The ack reads the first record it keeps from disk. Only when that record may be
        // one this batch appended is the batch committed first: flushing whenever the queue
        // was appended to would cost a second fsync per batch on every queue written and
        // drained at once (module inputs, `$upstream` while online).
        let mut kept = None;
        if published != Some(tail) {
            if let Some(on_disk) = published.filter(|&t| end < t) {
                kept = self.first_from(qid, end, on_disk)?;
            }
            if kept.is_none() {
                self.flush(b);
            }
        }
        // Every fallible step (the disk read of the record kept, the column family) comes
        // before the first write to the batch, as in `append`: the batch is shared with other
        // callers, so a failed ack must leave neither its counters nor a run cut behind.
        // At most one run straddles the ack point, so the record kept is looked up at most once.
        let straddling = self.queue(&mut b.overlay, qid)?.runs.iter().find(|r| r.start < end && end < r.end).copied();
        let split = match straddling {
            None => None,
            Some(run) => match kept {
                Some(k) => Some(k).filter(|(o, _)| *o < run.end),
                None => self.first_from(qid, end, run.end)?,
            },
        };
        let meta_cf = self.cf(keys::CF_META)?;
        // `cut_front` below can then fail only on a missing column family: checked here too.
        self.cf(keys::CF_MSGS)?;
        let q = self.queue(&mut b.overlay, qid)?;
        q.acked_next = end;
        let counters = q.encode_counters();
        b.wb.put_cf(meta_cf, keys::queue(qid), counters);
        // The acked records themselves are deleted later, in bulk (`reclaim`): a range
        // tombstone per ack would pile up in the memtable and slow every iterator.
        while let Some(&front) = self.queue(&mut b.overlay, qid)?.runs.front() {
            if front.start >= end {
                break;
            }
            let split = if front.end <= end { None } else { split };
            let (_, _, gone) = self.cut_front(b, qid, 0, split, false)?;
            // Records between the ack and the split point were reclaimed by the
            // compaction filter after their own TTL: count them as expired.
            b.expired += gone;
            b.globals_dirty |= gone > 0;
        }
        Ok(())
    }

    /// The first stored record of `qid` in `[lo, hi)`: the one at `lo`, or when that one is
    /// gone (reclaimed after its TTL) the next.
    fn first_from(&self, qid: u32, lo: u64, hi: u64) -> Result<Option<(u64, Header)>> {
        match self.record_at(qid, lo)? {
            Some(h) => Ok(Some((lo, h))),
            None => self.seek_first(qid, lo, hi),
        }
    }
}
