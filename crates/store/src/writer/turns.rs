//! Who runs the writer, and when: its thread, which waits for commands or the next sweep,
//! or (under `Durability::Wal`) a caller that finds nothing ahead of it (see writer.rs for
//! the invariants). Also the thread's housekeeping and the batch a stalled inline write
//! leaves for it.

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use rocksdb::WriteBatch;

use super::{Command, Done, Writer, MAX_BATCH_BYTES, MAX_BATCH_COMMANDS, RECLAIM_EVERY};
use crate::error::{Error, Result};
use crate::keys;
use crate::options::Durability;

/// Replies of committed batches, to run once the lock is released.
pub(crate) struct Settled(Vec<(Done, Option<Error>)>);

impl Settled {
    pub(crate) fn run(self) {
        for (done, e) in self.0 {
            done(e.as_ref());
        }
    }
}

/// The writer's state, shared by its thread and inline callers behind one lock.
pub(crate) type Core = Arc<Mutex<Option<Writer>>>;

fn lock(core: &Mutex<Option<Writer>>) -> MutexGuard<'_, Option<Writer>> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer thread: waits for commands or the next sweep, then takes the lock.
pub(crate) fn run(core: Core, rx: Receiver<Command>) {
    let mut ready = Select::new();
    ready.recv(&rx);
    loop {
        let wait = match lock(&core).as_ref() {
            Some(w) => w.until_next_sweep(),
            None => return,
        };
        let woken = ready.ready_timeout(wait).is_ok();
        let mut guard = lock(&core);
        let Some(w) = guard.as_mut() else { return };
        w.write_parked();
        let open = !woken || w.take(&rx);
        if open {
            w.maintain();
        }
        let settled = w.settled();
        if !open {
            // Releases the database handle for `Store::close`.
            guard.take();
        }
        drop(guard);
        settled.run();
        if !open {
            return;
        }
    }
}

/// Runs `cmd` on the caller's thread when the lock is free and nothing is queued or parked
/// ahead of it; gives `cmd` back otherwise. Returns whether the write met a stall and was
/// parked (the caller must then wake the thread with `Command::Resume`), and the replies,
/// for the caller to run once it holds no lock.
pub(crate) fn run_inline(
    core: &Mutex<Option<Writer>>,
    queue: &Sender<Command>,
    cmd: Command,
) -> std::result::Result<(bool, Settled), Command> {
    let mut guard = match core.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return Err(cmd),
    };
    let Some(w) = guard.as_mut() else { return Err(cmd) };
    if !queue.is_empty() || w.parked.is_some() {
        return Err(cmd);
    }
    let mut batch = w.begin(false);
    batch.inline = true;
    w.apply(&mut batch, cmd);
    w.commit(batch);
    Ok((w.parked.is_some(), w.settled()))
}

impl Writer {
    fn settled(&mut self) -> Settled {
        Settled(std::mem::take(&mut self.settled))
    }

    /// Takes the commands waiting (up to the caps) into one batch and commits it. False once
    /// the store is closing or its handle is gone.
    fn take(&mut self, rx: &Receiver<Command>) -> bool {
        let first = match rx.try_recv() {
            Ok(c) => c,
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
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
                next = rx.try_recv().ok();
            }
        }
        self.commit(batch);
        match close {
            Some(reply) => {
                self.reclaim();
                let flushed = self.shutdown_flush();
                self.settled.push((Box::new(move |_| reply(flushed)), None));
                false
            }
            None => true,
        }
    }

    /// Sweeps what has come due and reclaims acknowledged ranges every `RECLAIM_EVERY`.
    fn maintain(&mut self) {
        if self.until_next_sweep().is_zero() {
            self.sweep();
        }
        if self.last_reclaim.elapsed() >= RECLAIM_EVERY {
            self.reclaim();
        }
    }

    /// Writes the batch an inline caller parked on a write stall, waiting as RocksDB asks.
    fn write_parked(&mut self) {
        if let Some((mut b, bytes)) = self.parked.take() {
            b.wb = WriteBatch::from_data(&bytes);
            b.inline = false;
            self.commit(b);
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
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use crate::{Durability, MessageBatch, Options, Store};

    fn one(body: &str) -> MessageBatch {
        let mut b = MessageBatch::new();
        b.push(&[], body.as_bytes(), None).expect("message fits");
        b
    }

    #[test]
    fn wal_appends_run_inline_and_a_stalled_one_is_written_by_the_thread_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = Options { durability: Durability::Wal, ..Options::default() };
        let s = Store::open(dir.path(), opts.clone()).expect("opens");
        let (tx, rx) = mpsc::channel();
        let send = |body: &'static str| {
            let tx = tx.clone();
            s.append_with(
                vec!["q".into()],
                one(body),
                Box::new(move |r| {
                    let on = std::thread::current().name().map(str::to_string);
                    tx.send((body, r.map(|o| o[0].start).map_err(|e| e.to_string()), on)).expect("test listens");
                }),
            );
        };
        let caller = std::thread::current().name().map(str::to_string);
        let writer = Some("edgehub-store-writer".to_string());

        send("a");
        assert_eq!(rx.recv().expect("reply"), ("a", Ok(0), caller.clone()), "answered inline, before returning");

        // "b" meets a stall and is parked; "c", issued while it is, queues behind it; both
        // are written by the thread, in order. "d" stalls again and is parked in turn.
        s.inject_stalls(2);
        send("b");
        send("c");
        assert_eq!(rx.recv().expect("reply"), ("b", Ok(1), writer.clone()));
        assert_eq!(rx.recv().expect("reply"), ("c", Ok(2), writer.clone()));
        send("d");
        assert_eq!(rx.recv().expect("reply"), ("d", Ok(3), writer));
        assert_eq!(s.inject_stalls(0), 0, "both stalls were met");
        send("e");
        assert_eq!(rx.recv().expect("reply"), ("e", Ok(4), caller), "inline again once nothing is parked");

        s.close().expect("closes");
        let s = Store::open(dir.path(), opts).expect("reopens");
        let mut bodies = Vec::new();
        s.read_with("q", 0, crate::ReadLimits { limit: 10, max_bytes: 1 << 20 }, |m| {
            bodies.push((m.offset, String::from_utf8_lossy(m.body).into_owned()))
        })
        .expect("reads");
        let want: Vec<(u64, String)> =
            ["a", "b", "c", "d", "e"].iter().zip(0..).map(|(b, i)| (i, b.to_string())).collect();
        assert_eq!(bodies, want);
    }
}
