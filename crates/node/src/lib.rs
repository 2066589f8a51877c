//! napi-rs binding of `edgehub-store`: converts types and schedules work, nothing else.
//!
//! Transfer formats between this binding and `ts/store/native.ts` (little-endian, not
//! stored anywhere):
//! - append batch: `edgehub_store::MessageBatch`'s packed layout, copied once
//! - read result, per message: offset f64 | enqueued_at f64 | expires_at f64 (-1 = never) |
//!   props_len u32 | body_len u32 | property block | body
//!
//! Errors reject with a message `CODE: text`; the TypeScript facade turns the prefix into
//! `err.code`.

use std::sync::Arc;

use edgehub_store::{Durability, Limits, MessageBatch, Options, ReadLimits, Store, WhenFull};
use napi::bindgen_prelude::*;
use napi_derive::napi;

fn to_napi(e: edgehub_store::Error) -> Error {
    Error::new(Status::GenericFailure, format!("{}: {}", e.code(), e))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(Status::InvalidArg, format!("INVALID_ARGUMENT: {}", msg.into()))
}

#[napi(object)]
pub struct NativeOptions {
    pub durability: String,
    pub default_ttl_secs: i64,
    pub max_size_bytes: i64,
    pub when_full: String,
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
}

pub struct OpenTask {
    path: String,
    options: Options,
}

impl Task for OpenTask {
    type Output = Store;
    type JsValue = NativeStore;
    fn compute(&mut self) -> Result<Store> {
        Store::open(&self.path, self.options.clone()).map_err(to_napi)
    }
    fn resolve(&mut self, _env: Env, store: Store) -> Result<NativeStore> {
        Ok(NativeStore { store: Arc::new(store) })
    }
}

fn when_full_arg(s: &str) -> Result<WhenFull> {
    match s {
        "reject" => Ok(WhenFull::Reject),
        "drop-oldest" => Ok(WhenFull::DropOldest),
        other => Err(invalid(format!("whenFull must be \"reject\" or \"drop-oldest\", got {other:?}"))),
    }
}

/// Opens the store at `path` on a worker thread.
#[napi]
pub fn open_store(path: String, options: NativeOptions) -> Result<AsyncTask<OpenTask>> {
    let durability = match options.durability.as_str() {
        "fsync" => Durability::Fsync,
        "wal" => Durability::Wal,
        other => return Err(invalid(format!("durability must be \"fsync\" or \"wal\", got {other:?}"))),
    };
    let when_full = when_full_arg(&options.when_full)?;
    let max_size_bytes = u64::try_from(options.max_size_bytes).map_err(|_| invalid("maxSizeBytes must be positive"))?;
    let options = Options { durability, default_ttl_secs: options.default_ttl_secs, max_size_bytes, when_full };
    Ok(AsyncTask::new(OpenTask { path, options }))
}

fn offset_arg(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| invalid(format!("{what} must be a non-negative integer, got {v}")))
}

pub struct ReadTask {
    store: Arc<Store>,
    queue: String,
    from: u64,
    limits: ReadLimits,
}

impl Task for ReadTask {
    type Output = Vec<u8>;
    type JsValue = Buffer;
    fn compute(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.store
            .read_with(&self.queue, self.from, self.limits, |m| {
                out.extend_from_slice(&(m.offset as f64).to_le_bytes());
                out.extend_from_slice(&(m.enqueued_at as f64).to_le_bytes());
                out.extend_from_slice(&m.expires_at.map_or(-1.0, |t| t as f64).to_le_bytes());
                out.extend_from_slice(&(m.properties.len() as u32).to_le_bytes());
                out.extend_from_slice(&(m.body.len() as u32).to_le_bytes());
                out.extend_from_slice(m.properties);
                out.extend_from_slice(m.body);
            })
            .map_err(to_napi)?;
        Ok(out)
    }
    fn resolve(&mut self, _env: Env, out: Vec<u8>) -> Result<Buffer> {
        Ok(out.into())
    }
}

pub struct KvGetTask {
    store: Arc<Store>,
    ns: String,
    key: String,
}

impl Task for KvGetTask {
    type Output = Option<Vec<u8>>;
    type JsValue = Option<Buffer>;
    fn compute(&mut self) -> Result<Option<Vec<u8>>> {
        self.store.kv_get(&self.ns, &self.key).map_err(to_napi)
    }
    fn resolve(&mut self, _env: Env, out: Option<Vec<u8>>) -> Result<Option<Buffer>> {
        Ok(out.map(Buffer::from))
    }
}

pub struct KvScanTask {
    store: Arc<Store>,
    ns: String,
    prefix: String,
}

impl Task for KvScanTask {
    type Output = Vec<(String, Vec<u8>)>;
    type JsValue = Vec<NativeKvEntry>;
    fn compute(&mut self) -> Result<Self::Output> {
        self.store.kv_scan(&self.ns, &self.prefix).map_err(to_napi)
    }
    fn resolve(&mut self, _env: Env, out: Self::Output) -> Result<Vec<NativeKvEntry>> {
        Ok(out.into_iter().map(|(key, value)| NativeKvEntry { key, value: value.into() }).collect())
    }
}

pub struct CloseTask {
    store: Arc<Store>,
}

impl Task for CloseTask {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> Result<()> {
        self.store.close().map_err(to_napi)
    }
    fn resolve(&mut self, _env: Env, _out: ()) -> Result<()> {
        Ok(())
    }
}

/// Promise settled from the writer thread once the store answers.
fn settle<'env, T, J>(
    env: &'env Env,
    start: impl FnOnce(Box<dyn FnOnce(edgehub_store::Result<T>) + Send>),
    to_js: fn(T) -> J,
) -> Result<Object<'env>>
where
    T: Send + 'static,
    J: ToNapiValue + 'static,
{
    let (deferred, promise) = env.create_deferred::<J, Box<dyn FnOnce(Env) -> Result<J>>>()?;
    start(Box::new(move |r| match r {
        Ok(v) => deferred.resolve(Box::new(move |_| Ok(to_js(v)))),
        Err(e) => deferred.reject(to_napi(e)),
    }));
    Ok(promise)
}

#[napi]
impl NativeStore {
    /// Appends the `count` messages of `batch` to every queue; resolves to the first offset
    /// assigned in each queue (the rest follow consecutively).
    #[napi]
    pub fn append<'env>(&self, env: &'env Env, queues: Vec<String>, batch: &[u8], count: u32) -> Result<Object<'env>> {
        let messages = MessageBatch::from_packed(batch.to_vec(), count as usize).map_err(to_napi)?;
        let store = self.store.clone();
        settle(
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
    ) -> Result<Object<'env>> {
        if queues.len() != batches.len() || queues.len() != counts.len() {
            return Err(invalid("queues, batches and counts must have one entry per part"));
        }
        let mut parts = Vec::with_capacity(queues.len());
        for ((q, batch), count) in queues.into_iter().zip(batches).zip(counts) {
            parts.push((q, MessageBatch::from_packed(batch.to_vec(), count as usize).map_err(to_napi)?));
        }
        let puts = puts.into_iter().map(|p| (p.ns, p.key, p.value.to_vec())).collect();
        let store = self.store.clone();
        settle(
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
        when_full: String,
    ) -> Result<Object<'env>> {
        let limits = Limits {
            default_ttl_secs,
            max_size_bytes: u64::try_from(max_size_bytes).map_err(|_| invalid("maxSizeBytes must be positive"))?,
            when_full: when_full_arg(&when_full)?,
        };
        let store = self.store.clone();
        settle(env, move |reply| store.configure_with(limits, reply), |()| ())
    }

    #[napi]
    pub fn ack<'env>(&self, env: &'env Env, queue: String, offset: i64) -> Result<Object<'env>> {
        let offset = offset_arg(offset, "offset")?;
        let store = self.store.clone();
        settle(env, move |reply| store.ack_with(&queue, offset, reply), |()| ())
    }

    #[napi]
    pub fn read(&self, queue: String, from: i64, limit: u32, max_bytes: u32) -> Result<AsyncTask<ReadTask>> {
        let from = offset_arg(from, "from")?;
        let limits = ReadLimits { limit: limit as usize, max_bytes: max_bytes as usize };
        Ok(AsyncTask::new(ReadTask { store: self.store.clone(), queue, from, limits }))
    }

    #[napi]
    pub fn stats(&self) -> Result<NativeStats> {
        let s = self.store.stats().map_err(to_napi)?;
        let n = |x: u64| x as i64;
        Ok(NativeStats {
            queues: s
                .queues
                .into_iter()
                .map(|q| NativeQueueStats {
                    name: q.name,
                    count: n(q.count),
                    bytes: n(q.bytes),
                    head: n(q.head),
                    tail: n(q.tail),
                    acked_up_to: q.acked_up_to.map(n),
                    oldest_enqueued_at: q.oldest_enqueued_at.map(n),
                })
                .collect(),
            count: n(s.count),
            bytes: n(s.bytes),
            max_size_bytes: n(s.max_size_bytes),
            expired: n(s.expired),
            dropped: n(s.dropped),
        })
    }

    #[napi]
    pub fn kv_put<'env>(&self, env: &'env Env, ns: String, key: String, value: &[u8]) -> Result<Object<'env>> {
        let (store, value) = (self.store.clone(), value.to_vec());
        settle(env, move |reply| store.kv_put_with(&ns, &key, value, reply), |()| ())
    }

    #[napi]
    pub fn kv_delete<'env>(&self, env: &'env Env, ns: String, key: String) -> Result<Object<'env>> {
        let store = self.store.clone();
        settle(env, move |reply| store.kv_delete_with(&ns, &key, reply), |()| ())
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
