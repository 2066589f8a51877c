//! The writer thread: the only mutator of the store.
//!
//! Commands queue on a channel; the writer takes every command waiting (up to a cap),
//! applies them to one `WriteBatch` and a copy of the touched queue states, writes the
//! batch with one WAL sync (group commit), and only then publishes the new state and
//! answers the callers. A failed write answers every caller in the batch with the error
//! and publishes nothing, so memory never runs ahead of disk.
//!
//! Between batches it sweeps expired run prefixes (queue.rs) as they come due.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rocksdb::{WriteBatch, WriteOptions, DB};

use crate::batch::MessageBatch;
use crate::error::{Error, Result};
use crate::keys;
use crate::options::{self, Durability, Limits, Options, WhenFull};
use crate::queue::{Queue, MAX_RUNS};
use crate::record::{self, Header};

mod removal;
use crate::state::State;

/// Completion callback of an asynchronous operation, called once from the writer thread.
pub type Reply<T> = Box<dyn FnOnce(Result<T>) + Send>;

/// Messages for some queues (each gets them all), one part of an append.
pub(crate) struct Part {
    pub queues: Vec<Arc<str>>,
    pub messages: MessageBatch,
}

pub(crate) enum Command {
    /// Parts applied in order, then the KV puts, all in one write: none is stored unless
    /// all are.
    Append {
        parts: Vec<Part>,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        reply: Reply<Vec<Vec<Range<u64>>>>,
    },
    Ack {
        queue: Arc<str>,
        offset: u64,
        reply: Reply<()>,
    },
    KvPut {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: Reply<()>,
    },
    KvDelete {
        key: Vec<u8>,
        reply: Reply<()>,
    },
    /// New limits for what follows in the command order (appends after it see them).
    Configure {
        limits: Limits,
        reply: Reply<()>,
    },
    Close {
        reply: Reply<()>,
    },
}

const MAX_BATCH_COMMANDS: usize = 4096;
const MAX_BATCH_BYTES: usize = 32 << 20;
const IDLE_WAKE: Duration = Duration::from_secs(1);
const RECLAIM_EVERY: Duration = Duration::from_millis(500);

type Done = Box<dyn FnOnce(Option<&Error>) + Send>;

/** Answers `reply` with `value` once the batch is written, or with the write's error. */
fn answer<T: Send + 'static>(reply: Reply<T>, value: T) -> Done {
    Box::new(move |e| reply(e.map_or(Ok(value), |e| Err(e.clone()))))
}

/// Changes of one batch, published only after the batch is on disk.
struct Batch {
    wb: WriteBatch,
    overlay: HashMap<u32, Queue>,
    names: Vec<(Arc<str>, u32)>,
    next_qid: u32,
    expired: u64,
    dropped: u64,
    live_bytes: u64,
    globals_dirty: bool,
    done: Vec<Done>,
    sync: bool,
}

fn cf<'a>(db: &'a DB, path: &std::path::Path, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| Error::Corrupt { path: path.to_path_buf(), reason: format!("column family {name} missing") })
}

pub(crate) struct Writer {
    pub db: Arc<DB>,
    pub path: PathBuf,
    pub opts: Options,
    pub state: Arc<RwLock<State>>,
    pub rx: Receiver<Command>,
    sweep_not_before: u64,
    last_reclaim: std::time::Instant,
    scratch: Vec<u8>,
}

impl Writer {
    pub fn new(db: Arc<DB>, path: PathBuf, opts: Options, state: Arc<RwLock<State>>, rx: Receiver<Command>) -> Writer {
        Writer {
            db,
            path,
            opts,
            state,
            rx,
            sweep_not_before: 0,
            last_reclaim: std::time::Instant::now(),
            scratch: Vec::new(),
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        cf(&self.db, &self.path, name)
    }

    pub fn run(mut self) {
        loop {
            let wait = self.until_next_sweep();
            let first = match self.rx.recv_timeout(wait) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => {
                    self.sweep();
                    if self.last_reclaim.elapsed() >= RECLAIM_EVERY {
                        self.reclaim();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = self.begin(self.opts.durability == Durability::Fsync);
            let mut next = Some(first);
            let mut close = None;
            let mut taken = 0;
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Close { reply } => {
                        close = Some(reply);
                        break;
                    }
                    cmd => self.apply(&mut batch, cmd),
                }
                taken += 1;
                if taken < MAX_BATCH_COMMANDS && batch.wb.size_in_bytes() < MAX_BATCH_BYTES {
                    next = self.rx.try_recv().ok();
                }
            }
            self.commit(batch);
            if let Some(reply) = close {
                self.reclaim();
                reply(self.shutdown_flush());
                return;
            }
            if self.until_next_sweep().is_zero() {
                self.sweep();
            }
            if self.last_reclaim.elapsed() >= RECLAIM_EVERY {
                self.reclaim();
            }
        }
    }

    /// Syncs the WAL and flushes memtables so the next open has nothing to replay.
    fn shutdown_flush(&self) -> Result<()> {
        let err = |e| Error::from_db(&self.path, e);
        self.db.flush_wal(true).map_err(err)?;
        for name in [keys::CF_MSGS, keys::CF_META, keys::CF_KV] {
            self.db.flush_cf(self.cf(name)?).map_err(err)?;
        }
        Ok(())
    }

    fn begin(&self, sync: bool) -> Batch {
        let s = self.read_state();
        Batch {
            wb: WriteBatch::default(),
            overlay: HashMap::new(),
            names: Vec::new(),
            next_qid: s.next_qid,
            expired: s.expired,
            dropped: s.dropped,
            live_bytes: s.live_bytes,
            globals_dirty: false,
            done: Vec::new(),
            sync,
        }
    }

    /// Writes the batch and publishes its state, then answers its callers.
    fn commit(&mut self, mut b: Batch) {
        if b.wb.is_empty() {
            b.done.into_iter().for_each(|d| d(None));
            return;
        }
        let result = (|| {
            if b.globals_dirty {
                let g = State { next_qid: b.next_qid, expired: b.expired, dropped: b.dropped, ..State::default() };
                b.wb.put_cf(self.cf(keys::CF_META)?, keys::META_GLOBAL, g.encode_global());
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(b.sync);
            self.db.write_opt(std::mem::take(&mut b.wb), &wo).map_err(|e| Error::from_db(&self.path, e))
        })();
        match result {
            Ok(()) => {
                {
                    let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
                    for (name, qid) in b.names {
                        s.by_name.insert(name, qid);
                    }
                    s.queues.extend(b.overlay);
                    (s.next_qid, s.expired, s.dropped, s.live_bytes) = (b.next_qid, b.expired, b.dropped, b.live_bytes);
                }
                b.done.into_iter().for_each(|d| d(None));
            }
            Err(e) => b.done.into_iter().for_each(|d| d(Some(&e))),
        }
    }

    /// Commits what the batch holds so far and starts a new one, so that searches on
    /// disk see every record the next command may touch.
    fn flush(&mut self, b: &mut Batch) {
        let sync = b.sync;
        let full = std::mem::replace(b, self.begin(sync));
        self.commit(full);
        *b = self.begin(sync);
    }

    fn apply(&mut self, b: &mut Batch, cmd: Command) {
        match cmd {
            Command::Append { parts, puts, reply } => match self.append(b, &parts, puts) {
                Ok(offsets) => b.done.push(answer(reply, offsets)),
                Err(e) => reply(Err(e)),
            },
            Command::Ack { queue, offset, reply } => match self.ack(b, &queue, offset) {
                Ok(()) => b.done.push(answer(reply, ())),
                Err(e) => reply(Err(e)),
            },
            Command::KvPut { key, value, reply } => match self.cf(keys::CF_KV) {
                Ok(cf) => {
                    b.wb.put_cf(cf, key, value);
                    b.done.push(answer(reply, ()));
                }
                Err(e) => reply(Err(e)),
            },
            Command::KvDelete { key, reply } => match self.cf(keys::CF_KV) {
                Ok(cf) => {
                    b.wb.delete_cf(cf, key);
                    b.done.push(answer(reply, ()));
                }
                Err(e) => reply(Err(e)),
            },
            Command::Configure { limits, reply } => {
                self.opts.default_ttl_secs = limits.default_ttl_secs;
                self.opts.max_size_bytes = limits.max_size_bytes;
                self.opts.when_full = limits.when_full;
                b.done.push(answer(reply, ()));
            }
            Command::Close { reply } => reply(Ok(())),
        }
    }

    fn qid(&self, b: &Batch, name: &str) -> Option<u32> {
        b.names
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, id)| *id)
            .or_else(|| self.read_state().by_name.get(name).copied())
    }

    /// The batch's copy of queue `qid`, taken from the published state on first touch.
    /// Borrows only `overlay`, so the caller can keep writing to `wb`.
    fn queue<'b>(&self, overlay: &'b mut HashMap<u32, Queue>, qid: u32) -> Result<&'b mut Queue> {
        match overlay.entry(qid) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let q = self.read_state().queues.get(&qid).cloned();
                let q = q.ok_or_else(|| Error::Corrupt {
                    path: self.path.clone(),
                    reason: format!("queue id {qid} has no state"),
                })?;
                Ok(e.insert(q))
            }
        }
    }

    /// Applies `parts` in order, then `puts` (KV keys and values). Every fallible step (quota, queue ids, queue state) comes
    /// before the first write to the batch, so a refused append leaves nothing behind in it
    /// (the batch is shared with other callers) and the parts are stored all or none.
    fn append(&mut self, b: &mut Batch, parts: &[Part], puts: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<Vec<Range<u64>>>> {
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

    fn ack(&mut self, b: &mut Batch, name: &str, offset: u64) -> Result<()> {
        let Some(qid) = self.qid(b, name) else {
            return Err(Error::InvalidOffset { queue: name.to_owned(), offset, tail: 0 });
        };
        if b.overlay.get(&qid).is_some_and(|q| self.read_state().queues.get(&qid).is_none_or(|p| p.tail != q.tail)) {
            self.flush(b);
        }
        let q = self.queue(&mut b.overlay, qid)?;
        if offset >= q.tail {
            return Err(Error::InvalidOffset { queue: name.to_owned(), offset, tail: q.tail });
        }
        let end = offset + 1;
        if end <= q.acked_next {
            return Ok(());
        }
        q.acked_next = end;
        let counters = q.encode_counters();

        b.wb.put_cf(self.cf(keys::CF_META)?, keys::queue(qid), counters);
        // The acked records themselves are deleted later, in bulk (`reclaim`): a range
        // tombstone per ack would pile up in the memtable and slow every iterator.
        while let Some(&front) = self.queue(&mut b.overlay, qid)?.runs.front() {
            if front.start >= end {
                break;
            }
            let split = if front.end <= end {
                None
            } else {
                match self.record_at(qid, end)? {
                    Some(h) => Some((end, h)),
                    None => self.seek_first(qid, end, front.end)?,
                }
            };
            let (_, _, gone) = self.cut_front(b, qid, 0, split, false)?;
            // Records between the ack and the split point were reclaimed by the
            // compaction filter after their own TTL: count them as expired.
            b.expired += gone;
            b.globals_dirty |= gone > 0;
        }
        Ok(())
    }
}
