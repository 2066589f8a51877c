//! One channel per store that carries the writer's answers back to the JS thread.
//!
//! napi-rs's deferred creates a threadsafe function (an async handle, a cleanup hook, a
//! close on the next loop turn) for every promise; at one message in flight that was a
//! large share of an append's cost. Here a store owns one threadsafe function for its
//! life. A completion is pushed on a queue; only the push that finds the queue empty wakes
//! the JS thread, whose one dispatch settles everything queued, in order. An answer given
//! on the JS thread itself (a `Durability::Wal` write run inline, a refused argument) is
//! settled before the native call returns, with no wake at all.
//!
//! Invariants:
//! - Promises settle in the order their answers were pushed (one FIFO queue, drained whole).
//! - A push that finds the queue empty signals, and every drain empties it: no answer waits
//!   for a wake that never comes.
//! - The threadsafe function is called only under the read lock of `tsfn` and only while it
//!   is `Some`; Node's finalizer and our release clear it under the write lock, so a writer
//!   thread never calls a function Node has freed.
//! - It keeps the event loop alive only while an answer is owed (`pending` > 0), as the
//!   per-promise functions did: checked at the end of each call and each dispatch, so an
//!   answer settled within its own call (inline) costs no ref/unref pair.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use napi::bindgen_prelude::*;
use napi::sys;

use crate::error::{coded, Coded};

/// Builds the value (or the error) a promise settles with; runs on the JS thread.
type Settle = Box<dyn FnOnce(sys::napi_env) -> std::result::Result<sys::napi_value, sys::napi_value> + Send>;

struct Completion {
    deferred: Deferred,
    settle: Settle,
}

/// A `napi_deferred`: an opaque handle, only ever used on the JS thread.
struct Deferred(sys::napi_deferred);
// SAFETY: the pointer is carried by the writer thread but dereferenced (resolved) only on
// the JS thread, in `Completions::drain`.
unsafe impl Send for Deferred {}

struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: napi's threadsafe functions are made to be called from any thread; the RwLock
// around it orders calls before its release.
unsafe impl Send for Tsfn {}
unsafe impl Sync for Tsfn {}

thread_local! {
    /// Set while a binding call on the JS thread runs a store operation: answers pushed
    /// then are drained by that call, so they need no wake.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
}

pub(crate) struct Completions {
    queue: Mutex<Vec<Completion>>,
    tsfn: RwLock<Option<Tsfn>>,
    /// Promises created and not yet settled; JS thread only.
    pending: AtomicUsize,
    /// Whether the function holds the event loop; JS thread only.
    holding: AtomicBool,
}

fn status(s: sys::napi_status, what: &str) -> std::result::Result<(), Coded> {
    if s == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::new("STORE_IO", format!("native call failed: {what} (napi status {s})")))
    }
}

impl Completions {
    /// Creates the store's channel; on the JS thread.
    pub(crate) fn new(env: &Env) -> std::result::Result<Arc<Completions>, Coded> {
        let c = Arc::new(Completions {
            queue: Mutex::new(Vec::new()),
            tsfn: RwLock::new(None),
            pending: 0.into(),
            holding: false.into(),
        });
        let raw = env.raw();
        let mut name = ptr::null_mut();
        let label = "edgehub-store";
        status(
            unsafe { sys::napi_create_string_utf8(raw, label.as_ptr().cast(), label.len() as isize, &mut name) },
            "napi_create_string_utf8",
        )?;
        // Node holds one reference to `c` for the function's life, given back in `finalize`.
        let context = Arc::into_raw(c.clone()) as *mut c_void;
        let mut tsfn = ptr::null_mut();
        let created = unsafe {
            sys::napi_create_threadsafe_function(
                raw,
                ptr::null_mut(),
                ptr::null_mut(),
                name,
                0,
                1,
                context,
                Some(finalize),
                context,
                Some(dispatch),
                &mut tsfn,
            )
        };
        if let Err(e) = status(created, "napi_create_threadsafe_function") {
            drop(unsafe { Arc::from_raw(context as *const Completions) });
            return Err(e);
        }
        // Idle until a promise is owed.
        unsafe { sys::napi_unref_threadsafe_function(raw, tsfn) };
        *c.tsfn.write().unwrap_or_else(|e| e.into_inner()) = Some(Tsfn(tsfn));
        Ok(c)
    }

    /// A promise settled through this channel: `start` runs the store operation with a
    /// reply that pushes the answer. Answers given during `start` on this thread settle
    /// before this returns.
    pub(crate) fn promise<'env, T, J>(
        self: &Arc<Self>,
        env: &'env Env,
        start: impl FnOnce(Box<dyn FnOnce(edgehub_store::Result<T>) + Send>),
        to_value: fn(T) -> J,
    ) -> std::result::Result<PromiseRaw<'env, J>, Coded>
    where
        T: Send + 'static,
        J: ToNapiValue + 'static,
    {
        let raw = env.raw();
        let (mut deferred, mut promise) = (ptr::null_mut(), ptr::null_mut());
        status(unsafe { sys::napi_create_promise(raw, &mut deferred, &mut promise) }, "napi_create_promise")?;
        self.pending.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let deferred = Deferred(deferred);
        let reply = Box::new(move |r: edgehub_store::Result<T>| {
            let settle: Settle = Box::new(move |env| match r {
                Ok(v) => unsafe { J::to_napi_value(env, to_value(v)) }
                    .map_err(|e| unsafe { JsError::from(e).into_value(env) }),
                Err(e) => Err(unsafe { JsError::from(coded(e)).into_value(env) }),
            });
            me.push(Completion { deferred, settle });
        });
        let outer = IN_CALL.with(|c| c.replace(true));
        start(reply);
        IN_CALL.with(|c| c.set(outer));
        if !outer {
            self.drain(raw);
            self.hold(raw);
        }
        Ok(PromiseRaw::new(raw, promise))
    }

    fn with_tsfn(&self, f: impl FnOnce(sys::napi_threadsafe_function) -> sys::napi_status) {
        if let Some(t) = self.tsfn.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(t.0);
        }
    }

    fn push(&self, c: Completion) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.push(c);
            q.len() == 1
        };
        if was_empty && !IN_CALL.with(Cell::get) {
            self.with_tsfn(|f| unsafe {
                sys::napi_call_threadsafe_function(f, ptr::null_mut(), sys::ThreadsafeFunctionCallMode::nonblocking)
            });
        }
    }

    /// Settles every queued answer, in order; on the JS thread.
    fn drain(&self, env: sys::napi_env) {
        let done = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        if done.is_empty() {
            return;
        }
        self.pending.fetch_sub(done.len(), Ordering::Relaxed);
        for c in done {
            unsafe {
                match (c.settle)(env) {
                    Ok(v) => sys::napi_resolve_deferred(env, c.deferred.0, v),
                    Err(e) => sys::napi_reject_deferred(env, c.deferred.0, e),
                };
            }
        }
    }

    /// Holds the event loop while an answer is owed, and only then; on the JS thread.
    fn hold(&self, env: sys::napi_env) {
        let owed = self.pending.load(Ordering::Relaxed) > 0;
        if self.holding.swap(owed, Ordering::Relaxed) == owed {
            return;
        }
        self.with_tsfn(|f| unsafe {
            if owed {
                sys::napi_ref_threadsafe_function(env, f)
            } else {
                sys::napi_unref_threadsafe_function(env, f)
            }
        });
    }

    /// Gives the function back to Node (the store's handle is gone); on the JS thread.
    pub(crate) fn release(&self) {
        if let Some(t) = self.tsfn.write().unwrap_or_else(|e| e.into_inner()).take() {
            unsafe { sys::napi_release_threadsafe_function(t.0, sys::ThreadsafeFunctionReleaseMode::release) };
        }
    }
}

unsafe extern "C" fn dispatch(env: sys::napi_env, _js: sys::napi_value, context: *mut c_void, _data: *mut c_void) {
    // A null env: Node is tearing the environment down and no promise can settle.
    if env.is_null() || context.is_null() {
        return;
    }
    let c = unsafe { &*(context as *const Completions) };
    c.drain(env);
    c.hold(env);
}

unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    let c = unsafe { Arc::from_raw(data as *const Completions) };
    c.tsfn.write().unwrap_or_else(|e| e.into_inner()).take();
}
