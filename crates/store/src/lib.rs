//! edgehub-store: a durable log of named queues on RocksDB.
//!
//! Upstream-bound messages are appended to queues (one per endpoint), kept under a TTL
//! and a byte quota, read back in offset order and acknowledged by prefix. A small
//! key-value space keeps the hub's durable state beside them. The on-disk format is in
//! `docs/storage-format.md`.
//!
//! Invariants (numbered as in the format document):
//! 1. offsets of a queue start at 0, grow by one per message, and are never reused;
//! 2. an append is answered only after its batch is written to the WAL (and, under `Fsync`, synced);
//! 3. an acked offset is never readable again; a read never returns an expired message;
//! 4. the counters (per-queue runs, live bytes) equal the sum of live records and are
//!    written in the same batch as the records they count.

mod batch;
mod error;
mod keys;
mod options;
mod queue;
mod record;
mod state;
mod store;
mod writer;

pub use batch::MessageBatch;
pub use error::{Error, Result};
pub use options::{Durability, Limits, Options, WhenFull};
pub use queue::QueueStats;
pub use record::{decode_properties, encode_properties, visit_properties, NEVER};
pub use store::{Message, MessageRef, NewMessage, ReadLimits, Stats, Store};
pub use writer::Reply;
