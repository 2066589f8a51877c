//! Work run on a worker thread (libuv's pool), settled on the JS thread.

use std::sync::Arc;

use edgehub_store::{Options, ReadLimits, Store};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::completion::Completions;
use crate::error::{answer, to_js, Answer};
use crate::{NativeKvEntry, NativeStore};

pub struct OpenTask {
    pub(crate) path: String,
    pub(crate) options: Options,
}

#[napi]
impl Task for OpenTask {
    type Output = Answer<Store>;
    type JsValue = NativeStore;
    fn compute(&mut self) -> Result<Self::Output> {
        Ok(Store::open(&self.path, self.options.clone()))
    }
    fn resolve(&mut self, env: Env, out: Self::Output) -> Result<NativeStore> {
        let store = answer(&env, out, Arc::new)?;
        let completions = Completions::new(&env).map_err(|e| to_js(&env, e))?;
        Ok(NativeStore { store, completions })
    }
}

pub struct ReadTask {
    pub(crate) store: Arc<Store>,
    pub(crate) queue: String,
    pub(crate) from: u64,
    pub(crate) limits: ReadLimits,
}

#[napi]
impl Task for ReadTask {
    type Output = Answer<Vec<u8>>;
    type JsValue = Buffer;
    fn compute(&mut self) -> Result<Self::Output> {
        let mut out = Vec::new();
        let read = self.store.read_with(&self.queue, self.from, self.limits, |m| {
            out.extend_from_slice(&(m.offset as f64).to_le_bytes());
            out.extend_from_slice(&(m.enqueued_at as f64).to_le_bytes());
            out.extend_from_slice(&m.expires_at.map_or(-1.0, |t| t as f64).to_le_bytes());
            out.extend_from_slice(&(m.properties.len() as u32).to_le_bytes());
            out.extend_from_slice(&(m.body.len() as u32).to_le_bytes());
            out.extend_from_slice(m.properties);
            out.extend_from_slice(m.body);
        });
        Ok(read.map(|_| out))
    }
    fn resolve(&mut self, env: Env, out: Self::Output) -> Result<Buffer> {
        answer(&env, out, Buffer::from)
    }
}

pub struct KvGetTask {
    pub(crate) store: Arc<Store>,
    pub(crate) ns: String,
    pub(crate) key: String,
}

#[napi]
impl Task for KvGetTask {
    type Output = Answer<Option<Vec<u8>>>;
    type JsValue = Option<Buffer>;
    fn compute(&mut self) -> Result<Self::Output> {
        Ok(self.store.kv_get(&self.ns, &self.key))
    }
    fn resolve(&mut self, env: Env, out: Self::Output) -> Result<Option<Buffer>> {
        answer(&env, out, |v| v.map(Buffer::from))
    }
}

pub struct KvScanTask {
    pub(crate) store: Arc<Store>,
    pub(crate) ns: String,
    pub(crate) prefix: String,
}

#[napi]
impl Task for KvScanTask {
    type Output = Answer<Vec<(String, Vec<u8>)>>;
    type JsValue = Vec<NativeKvEntry>;
    fn compute(&mut self) -> Result<Self::Output> {
        Ok(self.store.kv_scan(&self.ns, &self.prefix))
    }
    fn resolve(&mut self, env: Env, out: Self::Output) -> Result<Vec<NativeKvEntry>> {
        answer(&env, out, |entries| {
            entries.into_iter().map(|(key, value)| NativeKvEntry { key, value: value.into() }).collect()
        })
    }
}

pub struct CloseTask {
    pub(crate) store: Arc<Store>,
}

#[napi]
impl Task for CloseTask {
    type Output = Answer<()>;
    type JsValue = ();
    fn compute(&mut self) -> Result<Self::Output> {
        Ok(self.store.close())
    }
    fn resolve(&mut self, env: Env, out: Self::Output) -> Result<()> {
        answer(&env, out, |()| ())
    }
}
