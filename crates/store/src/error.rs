//! Errors of the store. Every variant has a stable code (`Error::code`) that crosses into
//! JavaScript as `err.code`; a code is never reused for another meaning.

use std::path::PathBuf;

/// What went wrong in a store operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The store was closed; open it again to continue.
    #[error("the store is closed; open it again to use it")]
    Closed,
    /// An append would push live bytes past `maxSizeBytes` and the policy is `reject`.
    #[error("store is full: {live} live bytes + {incoming} incoming exceed the quota of {max} bytes; ack or let messages expire, or raise maxSizeBytes")]
    Full { live: u64, incoming: u64, max: u64 },
    /// A caller passed something the store cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An ack named an offset that was never assigned in that queue.
    #[error("offset {offset} is past the tail of queue {queue:?} (next offset is {tail})")]
    InvalidOffset { queue: String, offset: u64, tail: u64 },
    /// The files at `path` are not a readable edgehub store.
    #[error("store at {path} is corrupt or not an edgehub store: {reason}; restore it from a backup or move it aside")]
    Corrupt { path: PathBuf, reason: String },
    /// The store was written by a newer format than this build reads.
    #[error("store at {path} has format version {found}, this build reads up to {supported}; upgrade edgehub")]
    UnsupportedFormat { path: PathBuf, found: u32, supported: u32 },
    /// Another process (or handle) holds the store open.
    #[error("store at {path} is locked by another process or handle; close it first")]
    Locked { path: PathBuf },
    /// The disk refused a write or a read (full disk, permissions, I/O error).
    #[error("I/O error in store at {path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

impl Error {
    /// Stable code of this error, as documented in `docs/errors.md`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Closed => "STORE_CLOSED",
            Error::Full { .. } => "STORE_FULL",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::InvalidOffset { .. } => "INVALID_OFFSET",
            Error::Corrupt { .. } => "STORE_CORRUPT",
            Error::UnsupportedFormat { .. } => "STORE_FORMAT_UNSUPPORTED",
            Error::Locked { .. } => "STORE_LOCKED",
            Error::Io { .. } => "STORE_IO",
        }
    }

    /// Every code this crate can produce, for the catalogue test.
    pub const CODES: &'static [&'static str] = &[
        "STORE_CLOSED",
        "STORE_FULL",
        "INVALID_ARGUMENT",
        "INVALID_OFFSET",
        "STORE_CORRUPT",
        "STORE_FORMAT_UNSUPPORTED",
        "STORE_LOCKED",
        "STORE_IO",
    ];

    /// Classifies a RocksDB error raised while touching the store at `path`.
    pub(crate) fn from_db(path: &std::path::Path, source: rocksdb::Error) -> Error {
        use rocksdb::ErrorKind;
        let path = path.to_path_buf();
        match source.kind() {
            ErrorKind::Corruption => Error::Corrupt { path, reason: source.into_string() },
            ErrorKind::IOError if is_lock_error(&source) => Error::Locked { path },
            _ => Error::Io { path, detail: source.into_string() },
        }
    }
}

fn is_lock_error(e: &rocksdb::Error) -> bool {
    let s = e.as_ref();
    s.contains("lock") && (s.contains("LOCK") || s.contains("Resource temporarily unavailable"))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
