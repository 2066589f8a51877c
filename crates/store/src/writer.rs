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
use crate::options::{Durability, Limits, Options};
use crate::queue::Queue;

mod append;
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
}
