//! Removal: expiry sweeps, drop-oldest eviction, bulk reclaim of acked records, and the
//! on-disk searches they rely on. Part of the writer thread (see `writer.rs`), apart
//! because it is the one concern that reads records back.

use std::time::Duration;

use super::{cf, Batch, Writer, IDLE_WAKE};
use crate::error::{Error, Result};
use crate::keys;
use crate::options;
use crate::queue::{Queue, Run};
use crate::record::{self, Header};

impl Writer {
    /// Removes the prefix of run `idx` of queue `qid` up to `split` (the first record
    /// kept), or the whole run. Returns the messages and bytes removed, and how many of
    /// the removed offsets lie at or past the ack point.
    pub(super) fn cut_front(
        &mut self,
        b: &mut Batch,
        qid: u32,
        idx: usize,
        split: Option<(u64, Header)>,
        delete_records: bool,
    ) -> Result<(u64, u64, u64)> {
        let db = self.db.clone();
        let (msgs_cf, meta_cf) = (cf(&db, &self.path, keys::CF_MSGS)?, cf(&db, &self.path, keys::CF_META)?);
        let q = self.queue(&mut b.overlay, qid)?;
        let ack_end = q.acked_next;
        let run =
            *q.runs.get(idx).ok_or_else(|| Error::Corrupt { path: self.path.clone(), reason: "run index".into() })?;
        b.wb.delete_cf(meta_cf, keys::run(qid, run.start));
        let (count, bytes) = match split {
            Some((offset, h)) => {
                let kept = Run {
                    start: offset,
                    start_cum: h.cum_bytes,
                    start_enqueued: h.enqueued_at,
                    start_evict: h.evict_at,
                    ..run
                };
                b.wb.put_cf(meta_cf, keys::run(qid, offset), kept.encode());
                if delete_records {
                    b.wb.delete_range_cf(msgs_cf, keys::msg(qid, run.start), keys::msg(qid, offset));
                }
                q.runs[idx] = kept;
                (offset - run.start, h.cum_bytes - run.start_cum)
            }
            None => {
                if delete_records {
                    b.wb.delete_range_cf(msgs_cf, keys::msg(qid, run.start), keys::msg(qid, run.end));
                }
                q.runs.remove(idx);
                (run.count(), run.bytes())
            }
        };
        // Offsets at or past the ack point that vanish here without being acked.
        let unacked_gone = match split {
            Some((offset, _)) => offset.saturating_sub(ack_end.max(run.start)),
            None => run.end.saturating_sub(ack_end.max(run.start)),
        };
        b.live_bytes -= bytes;
        Ok((count, bytes, unacked_gone))
    }

    /// Header of the record at `offset`, if it is stored.
    pub(super) fn record_at(&self, qid: u32, offset: u64) -> Result<Option<Header>> {
        let v = self
            .db
            .get_pinned_cf(self.cf(keys::CF_MSGS)?, keys::msg(qid, offset))
            .map_err(|e| Error::from_db(&self.path, e))?;
        v.map(|v| {
            record::decode_header(&v).map(|(h, _)| h).ok_or_else(|| Error::Corrupt {
                path: self.path.clone(),
                reason: format!("bad record header at offset {offset} in queue {qid}"),
            })
        })
        .transpose()
    }

    /// Deletes acknowledged records in one range per queue (see `ack`). Unsynced: the
    /// acks themselves are durable, and a lost reclaim is redone after a restart.
    pub(super) fn reclaim(&mut self) {
        self.last_reclaim = std::time::Instant::now();
        let due: Vec<(u32, u64, u64)> = self
            .read_state()
            .queues
            .values()
            .filter(|q| q.acked_next > q.reclaimed_next)
            .map(|q| (q.id, q.reclaimed_next, q.acked_next))
            .collect();
        if due.is_empty() {
            return;
        }
        let Ok(msgs_cf) = self.cf(keys::CF_MSGS) else { return };
        let mut b = self.begin(false);
        for &(qid, from, to) in &due {
            b.wb.delete_range_cf(msgs_cf, keys::msg(qid, from), keys::msg(qid, to));
        }
        for (qid, _, to) in due {
            if let Ok(q) = self.queue(&mut b.overlay, qid) {
                q.reclaimed_next = q.reclaimed_next.max(to);
            }
        }
        self.commit(b);
    }

    /// First stored record of queue `qid` in `[lo, hi)`.
    pub(super) fn seek_first(&self, qid: u32, lo: u64, hi: u64) -> Result<Option<(u64, Header)>> {
        let cf = self.cf(keys::CF_MSGS)?;
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(keys::msg(qid, hi).to_vec());
        ro.fill_cache(false);
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek(keys::msg(qid, lo));
        if !it.valid() {
            it.status().map_err(|e| Error::from_db(&self.path, e))?;
            return Ok(None);
        }
        let corrupt = |what: &str| Error::Corrupt { path: self.path.clone(), reason: format!("{what} in queue {qid}") };
        let offset = it.key().and_then(|k| keys::msg_offset(qid, k)).ok_or_else(|| corrupt("bad message key"))?;
        let (h, _) = it.value().and_then(record::decode_header).ok_or_else(|| corrupt("bad record header"))?;
        Ok(Some((offset, h)))
    }

    /// First stored record in `[lo, hi)` for which `pred` holds, given that `pred` is
    /// monotone (false…false true…true) over the stored records: O(log n) seeks.
    pub(super) fn search(
        &self,
        qid: u32,
        mut lo: u64,
        mut hi: u64,
        pred: impl Fn(&Header) -> bool,
    ) -> Result<Option<(u64, Header)>> {
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.seek_first(qid, mid, hi)? {
                None => hi = mid,
                Some((offset, h)) if pred(&h) => {
                    found = Some((offset, h));
                    hi = offset;
                }
                Some((offset, _)) => lo = offset + 1,
            }
        }
        Ok(found)
    }

    /// Evicts the oldest messages until at least `need` bytes are freed (drop-oldest).
    pub(super) fn evict(&mut self, b: &mut Batch, mut need: u64) -> Result<()> {
        while need > 0 {
            let ids: Vec<u32> = self.read_state().queues.keys().copied().collect();
            let oldest = ids
                .into_iter()
                .filter_map(|id| {
                    let front = match b.overlay.get(&id) {
                        Some(q) => q.runs.front().copied(),
                        None => self.read_state().queues.get(&id).and_then(|q| q.runs.front().copied()),
                    };
                    front.map(|r| (r.start_enqueued, id, r))
                })
                .min_by_key(|(t, id, _)| (*t, *id));
            let Some((_, qid, run)) = oldest else { return Ok(()) };
            let split = if run.bytes() <= need {
                None
            } else {
                self.search(qid, run.start, run.end, |h| h.cum_bytes - run.start_cum >= need)?
            };
            let (count, bytes, _) = self.cut_front(b, qid, 0, split, true)?;
            b.dropped += count;
            b.globals_dirty = true;
            need = need.saturating_sub(bytes);
        }
        Ok(())
    }

    pub(super) fn until_next_sweep(&self) -> Duration {
        let now = options::now_ms();
        let s = self.read_state();
        let next = s.queues.values().filter_map(Queue::next_evict).min().unwrap_or(u64::MAX).max(self.sweep_not_before);
        Duration::from_millis(next.saturating_sub(now)).min(IDLE_WAKE)
    }

    /// Removes every run prefix whose eviction time has passed.
    pub(super) fn sweep(&mut self) {
        let now = options::now_ms();
        let due: Vec<u32> = self
            .read_state()
            .queues
            .values()
            .filter(|q| q.next_evict().is_some_and(|t| t <= now))
            .map(|q| q.id)
            .collect();
        if due.is_empty() {
            return;
        }
        let mut b = self.begin(false);
        let mut result = Ok(());
        for qid in due {
            result = self.sweep_queue(&mut b, qid, now);
            if result.is_err() {
                break;
            }
        }
        let failed = match result {
            Ok(()) => !self.commit(b),
            Err(_) => true,
        };
        // A failing disk must not turn the writer into a busy loop.
        self.sweep_not_before = if failed { now + 1000 } else { 0 };
    }

    pub(super) fn sweep_queue(&mut self, b: &mut Batch, qid: u32, now: u64) -> Result<()> {
        let mut idx = 0;
        loop {
            let Some(&run) = self.queue(&mut b.overlay, qid)?.runs.get(idx) else { return Ok(()) };
            if run.start_evict > now {
                idx += 1;
                continue;
            }
            let split =
                if run.max_evict <= now { None } else { self.search(qid, run.start, run.end, |h| h.evict_at > now)? };
            let (count, _, _) = self.cut_front(b, qid, idx, split, true)?;
            b.expired += count;
            b.globals_dirty = true;
            if split.is_some() {
                idx += 1;
            }
        }
    }
}
