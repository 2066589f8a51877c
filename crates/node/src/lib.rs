//! napi-rs binding of `edgehub-store`: converts types and schedules work, nothing else.
//!
//! Transfer formats between this binding and `ts/store/native.ts` (little-endian, not
//! stored anywhere):
//! - append batch: `edgehub_store::MessageBatch`'s packed layout, copied once
//! - read result, per message: offset f64 | enqueued_at f64 | expires_at f64 (-1 = never) |
//!   props_len u32 | body_len u32 | property block | body
//!
//! Errors reach JS as `Error` objects whose `code` is the store's stable code (`STORE_FULL`,
//! `INVALID_ARGUMENT`, …, `docs/errors.md`) and whose `message` is the text alone: napi's
//! `napi_create_error` takes the code, so nothing is parsed out of a message.
//! `ts/store/binding.d.ts` is what `napi build --dts` generates from this crate.

mod completion;
mod error;
mod tasks;

use std::sync::Arc;

use edgehub_store::{Durability, Limits, MessageBatch, Options, ReadLimits, Store, WhenFull};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::completion::Completions;
use crate::error::{coded, invalid};
use crate::tasks::{CloseTask, KvGetTask, KvScanTask, OpenTask, ReadTask};

/// When an append resolves: after the WAL is fsynced, or after the WAL write without fsync.
#[napi(string_enum = "kebab-case")]
pub enum NativeDurability {
    Fsync,
    Wal,
}

/// What an append over the quota does: fail with `STORE_FULL`, or evict the oldest messages.
#[napi(string_enum = "kebab-case")]
pub enum NativeWhenFull {
    Reject,
    DropOldest,
}

impl From<NativeWhenFull> for WhenFull {
    fn from(w: NativeWhenFull) -> WhenFull {
        match w {
            NativeWhenFull::Reject => WhenFull::Reject,
            NativeWhenFull::DropOldest => WhenFull::DropOldest,
        }
    }
}

#[napi(object)]
pub struct NativeOptions {
    pub durability: NativeDurability,
    pub default_ttl_secs: i64,
    pub max_size_bytes: i64,
    pub when_full: NativeWhenFull,
}

#[napi(object)]
pub struct NativeQueueStats {
    pub name: String,
    pub count: i64,
    pub bytes: i64,
    pub head: i64,
    pub tail: i64,
    pub acked_up_to: Option<i64>,
    pub oldest_enqueued_at: Option<i64>,
}

#[napi(object)]
pub struct NativeStats {
    pub queues: Vec<NativeQueueStats>,
    pub count: i64,
    pub bytes: i64,
    pub max_size_bytes: i64,
    pub expired: i64,
    pub dropped: i64,
}

#[napi(object)]
pub struct NativeKvPut {
    pub ns: String,
    pub key: String,
    pub value: Buffer,
}

#[napi(object)]
pub struct NativeKvEntry {
    pub key: String,
    pub value: Buffer,
}

/// Handle of an open store.
#[napi]
pub struct NativeStore {
    store: Arc<Store>,
    completions: Arc<Completions>,
}

impl Drop for NativeStore {
    fn drop(&mut self) {
        self.completions.release();
    }
}

fn size_arg(v: i64) -> Result<u64, &'static str> {
    u64::try_from(v).map_err(|_| invalid(format!("maxSizeBytes must be positive, got {v}")))
}

/// Opens the store at `path` on a worker thread.
#[napi]
pub fn open_store(path: String, options: NativeOptions) -> Result<AsyncTask<OpenTask>, &'static str> {
    let durability = match options.durability {
        NativeDurability::Fsync => Durability::Fsync,
        NativeDurability::Wal => Durability::Wal,
    };
    let options = Options {
        durability,
        default_ttl_secs: options.default_ttl_secs,
        max_size_bytes: size_arg(options.max_size_bytes)?,
        when_full: options.when_full.into(),
    };
    Ok(AsyncTask::new(OpenTask { path, options }))
}

fn offset_arg(v: i64, what: &str) -> Result<u64, &'static str> {
    u64::try_from(v).map_err(|_| invalid(format!("{what} must be a non-negative integer, got {v}")))
}

fn native_queue(q: edgehub_store::QueueStats) -> NativeQueueStats {
    let n = |x: u64| x as i64;
    NativeQueueStats {
        name: q.name,
        count: n(q.count),
        bytes: n(q.bytes),
        head: n(q.head),
        tail: n(q.tail),
        acked_up_to: q.acked_up_to.map(n),
        oldest_enqueued_at: q.oldest_enqueued_at.map(n),
    }
}

/// A packed append batch of `count` messages, checked.
fn batch_arg(batch: &[u8], count: u32) -> Result<MessageBatch, &'static str> {
    MessageBatch::from_packed(batch.to_vec(), count as usize).map_err(coded)
}

#[napi]
impl NativeStore {
    /// Appends the `count` messages of `batch` to every queue; resolves to the first offset
    /// assigned in each queue (the rest follow consecutively).
    #[napi]
    pub fn append<'env>(
        &self,
        env: &'env Env,
        queues: Vec<String>,
        batch: &[u8],
        count: u32,
    ) -> Result<PromiseRaw<'env, Vec<i64>>, &'static str> {
        let messages = batch_arg(batch, count)?;
        let store = self.store.clone();
        self.completions.promise(
            env,
            move |reply| store.append_with(queues, messages, reply),
            |offsets: Vec<std::ops::Range<u64>>| offsets.iter().map(|o| o.start as i64).collect::<Vec<i64>>(),
        )
    }

    /// Appends several parts and puts KV entries in one write, all or none: part `i` is the
    /// `counts[i]` messages of `batches[i]`, for every queue of `queues[i]`. Resolves, per
    /// part, to the first offset assigned in each of its queues.
    #[napi]
    pub fn append_parts<'env>(
        &self,
        env: &'env Env,
        queues: Vec<Vec<String>>,
        batches: Vec<Buffer>,
        counts: Vec<u32>,
        puts: Vec<NativeKvPut>,
    ) -> Result<PromiseRaw<'env, Vec<Vec<i64>>>, &'static str> {
        if queues.len() != batches.len() || queues.len() != counts.len() {
            return Err(invalid("queues, batches and counts must have one entry per part"));
        }
        let mut parts = Vec::with_capacity(queues.len());
        for ((q, batch), count) in queues.into_iter().zip(batches).zip(counts) {
            parts.push((q, batch_arg(&batch, count)?));
        }
        let puts = puts.into_iter().map(|p| (p.ns, p.key, p.value.to_vec())).collect();
        let store = self.store.clone();
        self.completions.promise(
            env,
            move |reply| store.append_parts_with(parts, puts, reply),
            |parts: Vec<Vec<std::ops::Range<u64>>>| {
                parts.iter().map(|p| p.iter().map(|o| o.start as i64).collect::<Vec<i64>>()).collect::<Vec<_>>()
            },
        )
    }

    /// Changes the default TTL, the quota and the policy when full for later appends.
    #[napi]
    pub fn configure<'env>(
        &self,
        env: &'env Env,
        default_ttl_secs: i64,
        max_size_bytes: i64,
        when_full: NativeWhenFull,
    ) -> Result<PromiseRaw<'env, ()>, &'static str> {
        let limits =
            Limits { default_ttl_secs, max_size_bytes: size_arg(max_size_bytes)?, when_full: when_full.into() };
        let store = self.store.clone();
        self.completions.promise(env, move |reply| store.configure_with(limits, reply), |()| ())
    }

    /// Acknowledges every message of `queue` up to and including `offset`.
    #[napi]
    pub fn ack<'env>(&self, env: &'env Env, queue: String, offset: i64) -> Result<PromiseRaw<'env, ()>, &'static str> {
        let offset = offset_arg(offset, "offset")?;
        let store = self.store.clone();
        self.completions.promise(env, move |reply| store.ack_with(&queue, offset, reply), |()| ())
    }

    /// Live messages of `queue` from `from`, packed as the module header describes.
    #[napi]
    pub fn read(
        &self,
        queue: String,
        from: i64,
        limit: u32,
        max_bytes: u32,
    ) -> Result<AsyncTask<ReadTask>, &'static str> {
        let from = offset_arg(from, "from")?;
        let limits = ReadLimits { limit: limit as usize, max_bytes: max_bytes as usize };
        Ok(AsyncTask::new(ReadTask { store: self.store.clone(), queue, from, limits }))
    }

    /// Per-queue figures and totals, from memory.
    #[napi]
    pub fn stats(&self) -> Result<NativeStats, &'static str> {
        let s = self.store.stats().map_err(coded)?;
        let n = |x: u64| x as i64;
        Ok(NativeStats {
            queues: s.queues.into_iter().map(native_queue).collect(),
            count: n(s.count),
            bytes: n(s.bytes),
            max_size_bytes: n(s.max_size_bytes),
            expired: n(s.expired),
            dropped: n(s.dropped),
        })
    }

    /// One queue's figures, from memory; null for a queue the store does not know.
    #[napi]
    pub fn queue_stats(&self, name: String) -> Result<Option<NativeQueueStats>, &'static str> {
        Ok(self.store.queue_stats(&name).map_err(coded)?.map(native_queue))
    }

    #[napi]
    pub fn kv_put<'env>(
        &self,
        env: &'env Env,
        ns: String,
        key: String,
        value: &[u8],
    ) -> Result<PromiseRaw<'env, ()>, &'static str> {
        let (store, value) = (self.store.clone(), value.to_vec());
        self.completions.promise(env, move |reply| store.kv_put_with(&ns, &key, value, reply), |()| ())
    }

    #[napi]
    pub fn kv_delete<'env>(
        &self,
        env: &'env Env,
        ns: String,
        key: String,
    ) -> Result<PromiseRaw<'env, ()>, &'static str> {
        let store = self.store.clone();
        self.completions.promise(env, move |reply| store.kv_delete_with(&ns, &key, reply), |()| ())
    }

    #[napi]
    pub fn kv_get(&self, ns: String, key: String) -> AsyncTask<KvGetTask> {
        AsyncTask::new(KvGetTask { store: self.store.clone(), ns, key })
    }

    #[napi]
    pub fn kv_scan(&self, ns: String, prefix: String) -> AsyncTask<KvScanTask> {
        AsyncTask::new(KvScanTask { store: self.store.clone(), ns, prefix })
    }

    /// Finishes pending writes and releases the database; safe to call twice.
    #[napi]
    pub fn close(&self) -> AsyncTask<CloseTask> {
        AsyncTask::new(CloseTask { store: self.store.clone() })
    }
}
