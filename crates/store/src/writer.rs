//! The writer: the only mutator of the store.
//!
//! Commands queue on a channel; whoever holds the writer's lock takes every command waiting
//! (up to a cap), applies them to one `WriteBatch` and a copy of the touched queue states,
//! writes the batch with one WAL sync (group commit), and only then publishes the new state
//! and answers the callers. A failed write answers every caller in the batch with the error
//! and publishes nothing, so memory never runs ahead of disk.
//!
//! Usually the lock holder is the writer thread. Under `Durability::Wal` a caller that finds
//! the lock free and the channel empty runs its command on its own thread instead: the
//! write needs no fsync, and skipping the two thread hand-offs (a futex wake to the writer,
//! a wake back to the caller) is most of an append's CPU at one in flight.
//!
//! Invariants:
//! - Commands are applied in the order they were submitted: only a lock holder takes from
//!   the channel (the thread waits for readiness, then locks, then receives), and a caller
//!   runs inline only when, holding the lock, it sees nothing queued and nothing parked.
//! - An inline write never waits on RocksDB: it is written with `no_slowdown`; when RocksDB
//!   asks writers to slow down, the batch is parked and the thread writes it before
//!   anything else, so the caller's thread (Node's event loop) is never put to sleep.
//! - Replies run after the lock is released, in commit order.
//!
//! Between batches the thread sweeps expired run prefixes (queue.rs) as they come due.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rocksdb::{ErrorKind, WriteBatch, WriteOptions, DB};

use crate::batch::MessageBatch;
use crate::error::{Error, Result};
use crate::keys;
use crate::options::{Limits, Options};
use crate::queue::Queue;

mod append;
mod removal;
mod turns;
use crate::state::State;
pub(crate) use turns::{run, run_inline, Core};

/// Completion callback of an asynchronous operation, called once, on the writer thread or
/// (inline, under `Durability::Wal`) on the caller's.
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
    /// Wakes the thread to write a batch an inline caller parked.
    Resume,
    Close {
        reply: Reply<()>,
    },
}

impl Command {
    /// Answers the command's caller with `e` without running it.
    pub(crate) fn refuse(self, e: Error) {
        match self {
            Command::Append { reply, .. } => reply(Err(e)),
            Command::Ack { reply, .. }
            | Command::KvPut { reply, .. }
            | Command::KvDelete { reply, .. }
            | Command::Configure { reply, .. }
            | Command::Close { reply } => reply(Err(e)),
            Command::Resume => {}
        }
    }
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

/** Answers `reply` with `e`, in its turn among the batch's replies. */
fn refusal<T: Send + 'static>(reply: Reply<T>, e: Error) -> Done {
    Box::new(move |_| reply(Err(e)))
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
    /// Written inline: refuse to wait on a write stall (park instead).
    inline: bool,
}

fn cf<'a>(db: &'a DB, path: &std::path::Path, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| Error::Corrupt { path: path.to_path_buf(), reason: format!("column family {name} missing") })
}

/// How a batch's write went.
enum Written {
    Yes,
    /// An inline write met a write stall: nothing was written; the bytes are for the thread.
    Stalled(Vec<u8>),
    Failed(Error),
}

pub(crate) struct Writer {
    pub db: Arc<DB>,
    pub path: PathBuf,
    pub opts: Options,
    pub state: Arc<RwLock<State>>,
    sweep_not_before: u64,
    last_reclaim: std::time::Instant,
    scratch: Vec<u8>,
    /// A batch written inline that met a write stall, with its write's bytes: written by
    /// the thread before anything else.
    parked: Option<(Batch, Vec<u8>)>,
    settled: Vec<(Done, Option<Error>)>,
    /// Test hook: this many inline writes meet a simulated write stall.
    #[cfg(test)]
    pub(crate) stalls: usize,
}

impl Writer {
    pub fn new(db: Arc<DB>, path: PathBuf, opts: Options, state: Arc<RwLock<State>>) -> Writer {
        Writer {
            db,
            path,
            opts,
            state,
            sweep_not_before: 0,
            last_reclaim: std::time::Instant::now(),
            scratch: Vec::new(),
            parked: None,
            settled: Vec::new(),
            #[cfg(test)]
            stalls: 0,
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        cf(&self.db, &self.path, name)
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
            inline: false,
        }
    }

    /// Writes the batch and publishes its state, then queues its callers' replies. False
    /// when the write failed (an inline batch parked on a stall is not a failure).
    fn commit(&mut self, mut b: Batch) -> bool {
        if b.wb.is_empty() {
            self.settled.extend(b.done.drain(..).map(|d| (d, None)));
            return true;
        }
        match self.write(&mut b) {
            Written::Yes => {
                {
                    let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
                    for (name, qid) in b.names {
                        s.by_name.insert(name, qid);
                    }
                    s.queues.extend(b.overlay);
                    (s.next_qid, s.expired, s.dropped, s.live_bytes) = (b.next_qid, b.expired, b.dropped, b.live_bytes);
                }
                self.settled.extend(b.done.into_iter().map(|d| (d, None)));
                true
            }
            Written::Stalled(bytes) => {
                self.parked = Some((b, bytes));
                true
            }
            Written::Failed(e) => {
                self.settled.extend(b.done.into_iter().map(|d| (d, Some(e.clone()))));
                false
            }
        }
    }

    /// Writes the batch's `WriteBatch` (taking it), with the global record when dirty.
    fn write(&mut self, b: &mut Batch) -> Written {
        if b.globals_dirty {
            let g = State { next_qid: b.next_qid, expired: b.expired, dropped: b.dropped, ..State::default() };
            match self.cf(keys::CF_META) {
                Ok(cf) => b.wb.put_cf(cf, keys::META_GLOBAL, g.encode_global()),
                Err(e) => return Written::Failed(e),
            }
            // Written from here on, parked or not.
            b.globals_dirty = false;
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(b.sync);
        wo.set_no_slowdown(b.inline);
        // The copy costs a memcpy of the batch; without it a stalled write's batch is gone.
        let bytes = b.inline.then(|| b.wb.data().to_vec());
        #[cfg(test)]
        if b.inline && self.stalls > 0 {
            self.stalls -= 1;
            return bytes.map_or(Written::Failed(Error::Closed), Written::Stalled);
        }
        match self.db.write_opt(std::mem::take(&mut b.wb), &wo) {
            Ok(()) => Written::Yes,
            Err(e) => match bytes {
                Some(bytes) if e.kind() == ErrorKind::Incomplete => Written::Stalled(bytes),
                _ => Written::Failed(Error::from_db(&self.path, e)),
            },
        }
    }

    /// Commits what the batch holds so far and starts a new one, so that searches on
    /// disk see every record the next command may touch. Both are written by waiting out
    /// a stall, even inline: what follows reads the first one from disk.
    fn flush(&mut self, b: &mut Batch) {
        let sync = b.sync;
        let mut full = std::mem::replace(b, self.begin(sync));
        full.inline = false;
        self.commit(full);
        *b = self.begin(sync);
    }

    fn apply(&mut self, b: &mut Batch, cmd: Command) {
        match cmd {
            Command::Append { parts, puts, reply } => match self.append(b, &parts, puts) {
                Ok(offsets) => b.done.push(answer(reply, offsets)),
                Err(e) => b.done.push(refusal(reply, e)),
            },
            Command::Ack { queue, offset, reply } => match self.ack(b, &queue, offset) {
                Ok(()) => b.done.push(answer(reply, ())),
                Err(e) => b.done.push(refusal(reply, e)),
            },
            Command::KvPut { key, value, reply } => match self.cf(keys::CF_KV) {
                Ok(cf) => {
                    b.wb.put_cf(cf, key, value);
                    b.done.push(answer(reply, ()));
                }
                Err(e) => b.done.push(refusal(reply, e)),
            },
            Command::KvDelete { key, reply } => match self.cf(keys::CF_KV) {
                Ok(cf) => {
                    b.wb.delete_cf(cf, key);
                    b.done.push(answer(reply, ()));
                }
                Err(e) => b.done.push(refusal(reply, e)),
            },
            Command::Configure { limits, reply } => {
                self.opts.default_ttl_secs = limits.default_ttl_secs;
                self.opts.max_size_bytes = limits.max_size_bytes;
                self.opts.when_full = limits.when_full;
                b.done.push(answer(reply, ()));
            }
            Command::Resume => {}
            Command::Close { reply } => b.done.push(answer(reply, ())),
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
}
