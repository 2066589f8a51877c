//! The store handle: open, the operations, close.
//!
//! Mutations go to the writer (writer.rs) and complete through a callback once durable: on
//! the writer thread, or under `Durability::Wal` on the caller's own thread when nothing is
//! ahead of them. Reads run on the caller's thread against RocksDB directly and never wait
//! for the writer.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use rocksdb::DB;

use crate::batch::MessageBatch;
use crate::error::{Error, Result};
use crate::options::{self, Durability, Limits, Options};
use crate::queue::QueueStats;
use crate::state::State;
use crate::writer::{self, Command, Core, Part, Reply, Writer};

mod kv;
mod read;

/// A message to append.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    /// Encoded property block (`encode_properties`); empty for none.
    pub properties: Vec<u8>,
    pub body: Vec<u8>,
    /// Own time to live in seconds (-1 = never); `None` takes the store default.
    pub ttl_secs: Option<i64>,
}

/// A stored message as `read` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub offset: u64,
    pub enqueued_at: u64,
    /// `None` when the message never expires.
    pub expires_at: Option<u64>,
    pub properties: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A stored message borrowed from the read iterator (`Store::read_with`).
pub struct MessageRef<'a> {
    pub offset: u64,
    pub enqueued_at: u64,
    pub expires_at: Option<u64>,
    /// Encoded property block (`visit_properties` decodes it).
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

/// Totals and per-queue figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub queues: Vec<QueueStats>,
    pub count: u64,
    pub bytes: u64,
    pub max_size_bytes: u64,
    pub expired: u64,
    pub dropped: u64,
}

/// Limits of one `read`.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub limit: usize,
    /// Stop before a message that would push the bodies and properties past this many
    /// bytes (the first message is always returned).
    pub max_bytes: usize,
}

/// A durable set of named queues plus a small key-value space. `Send + Sync`.
pub struct Store {
    path: PathBuf,
    db: RwLock<Option<Arc<DB>>>,
    state: Arc<RwLock<State>>,
    tx: Mutex<Option<Sender<Command>>>,
    core: Core,
    /// `Durability::Wal`: commands may run on the caller's thread (writer.rs).
    inline: bool,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// As opened, with the limits of the last `configure`.
    options: RwLock<Options>,
}

const MAX_NAME: usize = 1024;

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(Error::InvalidArgument(format!("{what} must be 1..={MAX_NAME} bytes, got {}", s.len())));
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store in directory `path`.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        options::check_ttl(options.default_ttl_secs, "defaultTtlSecs").map_err(Error::InvalidArgument)?;
        if options.max_size_bytes == 0 {
            return Err(Error::InvalidArgument("maxSizeBytes must be positive".into()));
        }
        let io = |e: std::io::Error| Error::Io { path: path.clone(), detail: e.to_string() };
        std::fs::create_dir_all(&path).map_err(io)?;
        guard_lost_current(&path)?;
        let db = DB::open_cf_descriptors(&options::db_options(), &path, options::column_families())
            .map_err(|e| Error::from_db(&path, e))?;
        let state = State::load(&db, &path)?;
        let db = Arc::new(db);
        let state = Arc::new(RwLock::new(state));
        let (tx, rx) = crossbeam_channel::unbounded();
        let core: Core =
            Arc::new(Mutex::new(Some(Writer::new(db.clone(), path.clone(), options.clone(), state.clone()))));
        let thread_core = core.clone();
        let handle = std::thread::Builder::new()
            .name("edgehub-store-writer".into())
            .spawn(move || writer::run(thread_core, rx))
            .map_err(io)?;
        Ok(Store {
            path,
            db: RwLock::new(Some(db)),
            state,
            tx: Mutex::new(Some(tx)),
            inline: options.durability == Durability::Wal,
            core,
            writer: Mutex::new(Some(handle)),
            options: RwLock::new(options),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> Options {
        self.options.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the TTL given to messages without their own, the quota and the policy when
    /// full, for every append after this one. A lower quota than what is stored refuses (or
    /// evicts, under drop-oldest) appends until enough is acknowledged or expired.
    pub fn configure_with(&self, limits: Limits, done: Reply<()>) {
        if let Err(e) = limits.check() {
            return done(Err(Error::InvalidArgument(e)));
        }
        {
            let mut o = self.options.write().unwrap_or_else(|e| e.into_inner());
            o.default_ttl_secs = limits.default_ttl_secs;
            o.max_size_bytes = limits.max_size_bytes;
            o.when_full = limits.when_full;
        }
        self.submit(Command::Configure { limits, reply: done });
    }

    /// Blocking `configure_with`.
    pub fn configure(&self, limits: Limits) -> Result<()> {
        wait(|reply| self.configure_with(limits, reply))
    }

    /// Runs `cmd` inline when it can (writer.rs), else queues it for the writer thread; a
    /// closed store refuses it.
    fn submit(&self, cmd: Command) {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else {
            drop(guard);
            return cmd.refuse(Error::Closed);
        };
        let cmd = if self.inline {
            match writer::run_inline(&self.core, tx, cmd) {
                Ok((parked, settled)) => {
                    if parked {
                        // The thread lives while `tx` does: this cannot fail.
                        let _ = tx.send(Command::Resume);
                    }
                    // Replies may call the store again: no lock is held while they run.
                    drop(guard);
                    return settled.run();
                }
                Err(cmd) => cmd,
            }
        } else {
            cmd
        };
        if let Err(e) = tx.send(cmd) {
            drop(guard);
            e.0.refuse(Error::Closed);
        }
    }

    /// Test hook: the next `n` inline writes meet a simulated write stall. Returns how many
    /// of the previous setting were left.
    #[cfg(test)]
    pub(crate) fn inject_stalls(&self, n: usize) -> usize {
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        core.as_mut().map_or(0, |w| std::mem::replace(&mut w.stalls, n))
    }

    fn db(&self) -> Result<Arc<DB>> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::Closed)
    }

    /// Appends the batch to every queue in `queues` atomically; `done` gets the offsets
    /// assigned in each queue (consecutive) once the write holding them is durable.
    pub fn append_with(&self, queues: Vec<String>, messages: MessageBatch, done: Reply<Vec<Range<u64>>>) {
        self.append_parts_with(
            vec![(queues, messages)],
            Vec::new(),
            Box::new(move |r| done(r.map(|mut parts| parts.pop().unwrap_or_default()))),
        );
    }

    /// Appends each part's batch to each of its queues, the parts in order, and puts the
    /// KV entries `puts` (namespace, key, value), all in one write: either everything is
    /// stored or nothing is (a message that goes to several queues with different
    /// properties or TTLs is one part per variant; state kept beside messages, such as a
    /// twin beside its pending patches, is a put). A queue may be named by several parts,
    /// not twice in one. `done` gets, per part, the offsets assigned in each of its queues.
    pub fn append_parts_with(
        &self,
        parts: Vec<(Vec<String>, MessageBatch)>,
        puts: Vec<(String, String, Vec<u8>)>,
        done: Reply<Vec<Vec<Range<u64>>>>,
    ) {
        let checked = (|| {
            if parts.is_empty() {
                return Err(Error::InvalidArgument("at least one part is required".into()));
            }
            let mut kv = Vec::with_capacity(puts.len());
            for (ns, key, value) in puts {
                kv.push((Self::kv_key(&ns, &key)?, value));
            }
            let mut checked = Vec::with_capacity(parts.len());
            for (queues, messages) in parts {
                if queues.is_empty() {
                    return Err(Error::InvalidArgument("at least one queue is required".into()));
                }
                let mut names: Vec<Arc<str>> = Vec::with_capacity(queues.len());
                for q in queues {
                    check_name("queue name", &q)?;
                    if names.iter().any(|n| **n == *q) {
                        return Err(Error::InvalidArgument(format!("queue {q:?} is named twice")));
                    }
                    names.push(q.into());
                }
                checked.push(Part { queues: names, messages });
            }
            Ok((checked, kv))
        })();
        match checked {
            Ok((parts, puts)) => {
                self.submit(Command::Append { parts, puts, reply: done });
            }
            Err(e) => done(Err(e)),
        }
    }

    /// Blocking `append_parts_with`, from owned messages.
    pub fn append_parts(
        &self,
        parts: &[(&[&str], Vec<NewMessage>)],
        puts: &[(&str, &str, &[u8])],
    ) -> Result<Vec<Vec<Range<u64>>>> {
        let mut packed = Vec::with_capacity(parts.len());
        for (queues, messages) in parts {
            packed.push((queues.iter().map(|q| q.to_string()).collect(), pack(messages)?));
        }
        let puts = puts.iter().map(|(ns, k, v)| (ns.to_string(), k.to_string(), v.to_vec())).collect();
        wait(|reply| self.append_parts_with(packed, puts, reply))
    }

    /// Blocking `append_with`, from owned messages.
    pub fn append(&self, queues: &[&str], messages: Vec<NewMessage>) -> Result<Vec<Range<u64>>> {
        let batch = pack(&messages)?;
        wait(|reply| self.append_with(queues.iter().map(|q| q.to_string()).collect(), batch, reply))
    }

    /// Acknowledges every message of `queue` up to and including `offset`.
    pub fn ack_with(&self, queue: &str, offset: u64, done: Reply<()>) {
        if let Err(e) = check_name("queue name", queue) {
            return done(Err(e));
        }
        self.submit(Command::Ack { queue: queue.into(), offset, reply: done });
    }

    /// Blocking `ack_with`.
    pub fn ack(&self, queue: &str, offset: u64) -> Result<()> {
        wait(|reply| self.ack_with(queue, offset, reply))
    }

    /// Finishes queued writes, syncs the WAL and releases the database. Safe to call
    /// twice; later operations fail with `STORE_CLOSED`.
    pub fn close(&self) -> Result<()> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(tx) = tx else { return Ok(()) };
        let (rtx, rrx) = mpsc::channel();
        // Through the thread, never inline: closing waits for the flush and ends the thread.
        let sent = tx.send(Command::Close { reply: Box::new(move |r| drop(rtx.send(r))) }).is_ok();
        drop(tx);
        let flushed = if sent { rrx.recv().unwrap_or(Ok(())) } else { Ok(()) };
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut db) = db {
            // Readers hold clones for the length of one read; wait them out so the
            // database (and its lock file) is released when close returns.
            loop {
                match Arc::try_unwrap(db) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) => {
                        db = still;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        }
        flushed
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Refuses to create a fresh database over the files of one whose CURRENT is gone.
fn guard_lost_current(path: &Path) -> Result<()> {
    if path.join("CURRENT").exists() {
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::Io { path: path.to_path_buf(), detail: e.to_string() })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("MANIFEST-") || name.ends_with(".sst") || name.ends_with(".log") && name != "LOG" {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!("{name} present but CURRENT is missing"),
            });
        }
    }
    Ok(())
}

fn wait<T: Send + 'static>(start: impl FnOnce(Reply<T>)) -> Result<T> {
    let (tx, rx) = mpsc::channel();
    start(Box::new(move |r| drop(tx.send(r))));
    rx.recv().unwrap_or(Err(Error::Closed))
}

fn pack(messages: &[NewMessage]) -> Result<MessageBatch> {
    let mut batch = MessageBatch::new();
    for m in messages {
        batch.push(&m.properties, &m.body, m.ttl_secs)?;
    }
    Ok(batch)
}
