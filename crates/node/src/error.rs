//! Errors as JS gets them: an `Error` whose `code` is the store's stable code.

use napi::bindgen_prelude::*;

/// An error for JS with a stable code: `napi_create_error` sets `err.code` to the status string.
pub(crate) type Coded = Error<&'static str>;

pub(crate) fn coded(e: edgehub_store::Error) -> Coded {
    Error::new(e.code(), e.to_string())
}

pub(crate) fn invalid(msg: impl Into<String>) -> Coded {
    Error::new("INVALID_ARGUMENT", msg.into())
}

/// `e` as the JS error object `Task`s and promises settle with; built on the JS thread
/// because the error type they take carries a napi status, not our code.
pub(crate) fn to_js(env: &Env, e: Coded) -> Error {
    Error::from(JsError::from(e).into_unknown(*env))
}

/// What a worker-thread task computes: the store's answer, turned into JS on the JS thread.
pub(crate) type Answer<T> = std::result::Result<T, edgehub_store::Error>;

/// Settles a task with `out`, or with `out`'s error as a coded JS error.
pub(crate) fn answer<T, J>(env: &Env, out: Answer<T>, to_value: impl FnOnce(T) -> J) -> Result<J> {
    out.map(to_value).map_err(|e| to_js(env, coded(e)))
}
