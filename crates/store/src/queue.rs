//! In-memory state of one queue: its tail, ack position and runs.
//!
//! A *run* is a contiguous range of offsets whose eviction times never decrease. Expiry
//! therefore removes a prefix of every run, with one `DeleteRange`, and the bytes removed
//! are the difference of two `cum_bytes` (record.rs) — no per-message deletes, no scans.
//! Uniform TTLs give one run per queue; a message expiring earlier than the run before it
//! starts a new run. Past `MAX_RUNS` runs a queue stops splitting: the message joins the
//! last run with its eviction clamped to the run's (it is still never *read* after its own
//! expiry, and the compaction filter reclaims its space; only `stats()` counts it until the
//! run lets it go).
//!
//! Invariants:
//! 1. runs are ordered, disjoint, and `runs[i].end <= runs[i+1].start`; the last run ends
//!    at or before `tail`;
//! 2. live count of the queue = Σ (end − start), live bytes = Σ (end_cum − start_cum);
//! 3. every offset below `acked_next` is outside every run;
//! 4. within a run, `evict_at` of stored records never decreases with the offset.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::keys;

pub(crate) const MAX_RUNS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub start: u64,
    pub end: u64,
    pub start_cum: u64,
    pub end_cum: u64,
    /// Enqueue time of the record at `start`.
    pub start_enqueued: u64,
    /// Eviction time of the record at `start` (the earliest in the run).
    pub start_evict: u64,
    /// Eviction time of the last record (the latest in the run).
    pub max_evict: u64,
}

impl Run {
    pub fn count(&self) -> u64 {
        self.end - self.start
    }
    pub fn bytes(&self) -> u64 {
        self.end_cum - self.start_cum
    }
    pub fn encode(&self) -> Vec<u8> {
        keys::u64s([self.end, self.start_cum, self.end_cum, self.start_enqueued, self.start_evict, self.max_evict])
    }
    pub fn decode(start: u64, v: &[u8]) -> Option<Run> {
        let [end, start_cum, end_cum, start_enqueued, start_evict, max_evict] = keys::parse_u64s(v)?;
        let run = Run { start, end, start_cum, end_cum, start_enqueued, start_evict, max_evict };
        (end > start && end_cum >= start_cum).then_some(run)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Queue {
    pub id: u32,
    pub name: Arc<str>,
    /// Next offset to assign.
    pub tail: u64,
    /// `cum_bytes` the next record gets.
    pub tail_cum: u64,
    /// Everything below this offset is acknowledged.
    pub acked_next: u64,
    /// Acked records below this offset are deleted on disk (in memory only: after a
    /// restart the first reclaim covers everything from 0).
    pub reclaimed_next: u64,
    pub runs: VecDeque<Run>,
}

/// Published view of a queue for readers and `stats()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    /// Live (stored, unacknowledged, not yet removed) messages.
    pub count: u64,
    /// Live bytes (keys and values as stored).
    pub bytes: u64,
    /// Lowest live offset (== tail when empty).
    pub head: u64,
    /// Next offset to be assigned.
    pub tail: u64,
    /// Highest acknowledged offset, if any.
    pub acked_up_to: Option<u64>,
    /// Enqueue time (ms since epoch) of the oldest live message.
    pub oldest_enqueued_at: Option<u64>,
}

impl Queue {
    pub fn new(id: u32, name: Arc<str>) -> Queue {
        Queue { id, name, tail: 0, tail_cum: 0, acked_next: 0, reclaimed_next: 0, runs: VecDeque::new() }
    }

    pub fn live_bytes(&self) -> u64 {
        self.runs.iter().map(Run::bytes).sum()
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            name: self.name.to_string(),
            count: self.runs.iter().map(Run::count).sum(),
            bytes: self.live_bytes(),
            head: self.runs.front().map_or(self.tail, |r| r.start),
            tail: self.tail,
            acked_up_to: self.acked_next.checked_sub(1),
            oldest_enqueued_at: self.runs.front().map(|r| r.start_enqueued),
        }
    }

    pub fn encode_counters(&self) -> Vec<u8> {
        keys::u64s([self.tail, self.tail_cum, self.acked_next])
    }

    /// Where a new record with eviction time `evict` goes: `(evict to store, starts a new run)`.
    pub fn place(&self, evict: u64) -> (u64, bool) {
        match self.runs.back() {
            Some(last) if last.end == self.tail => {
                if evict >= last.max_evict {
                    (evict, false)
                } else if self.runs.len() < MAX_RUNS {
                    (evict, true)
                } else {
                    (last.max_evict, false)
                }
            }
            _ => (evict, true),
        }
    }

    /// Records the append of one record of `size` bytes at `self.tail`.
    pub fn push(&mut self, size: u64, enqueued: u64, evict: u64, new_run: bool) {
        let (offset, cum) = (self.tail, self.tail_cum);
        self.tail += 1;
        self.tail_cum += size;
        if !new_run {
            if let Some(last) = self.runs.back_mut() {
                last.end = self.tail;
                last.end_cum = self.tail_cum;
                last.max_evict = last.max_evict.max(evict);
                return;
            }
        }
        self.runs.push_back(Run {
            start: offset,
            end: self.tail,
            start_cum: cum,
            end_cum: self.tail_cum,
            start_enqueued: enqueued,
            start_evict: evict,
            max_evict: evict,
        });
    }

    /// Earliest eviction time among live records.
    pub fn next_evict(&self) -> Option<u64> {
        self.runs.iter().map(|r| r.start_evict).min()
    }
}
