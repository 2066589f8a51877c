//! Store options as the caller gives them, and the RocksDB tuning derived from them.

use std::ffi::CStr;

use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType};

use crate::{keys, record};

/// When an append resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the WAL holding the append is fsynced (the default).
    Fsync,
    /// After the batch is written to the WAL file (in the OS page cache), without fsync: it
    /// survives a killed process but not a power loss or kernel crash. IoT Edge's own default.
    Wal,
}

/// What an append does when the quota would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Fail the whole append with `STORE_FULL`; nothing is written.
    Reject,
    /// Evict the oldest messages (counted as dropped) to make room.
    DropOldest,
}

/// Options of `Store::open`.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    /// Time to live of a message without its own TTL; -1 = never expire.
    pub default_ttl_secs: i64,
    /// Quota of live message bytes (keys and values as stored).
    pub max_size_bytes: u64,
    pub when_full: WhenFull,
}

/// The limits that may change while the store is open (`Store::configure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to live of a message appended from now on without its own TTL; -1 = never.
    pub default_ttl_secs: i64,
    pub max_size_bytes: u64,
    pub when_full: WhenFull,
}

impl Limits {
    /// Checks the values as callers give them.
    pub(crate) fn check(&self) -> Result<(), String> {
        check_ttl(self.default_ttl_secs, "defaultTtlSecs")?;
        if self.max_size_bytes == 0 {
            return Err("maxSizeBytes must be positive".into());
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Fsync,
            default_ttl_secs: 7200,
            max_size_bytes: 10 << 30,
            when_full: WhenFull::Reject,
        }
    }
}

/// Checks a TTL as callers give it: -1 (never) or a positive number of seconds.
pub(crate) fn check_ttl(ttl: i64, what: &str) -> Result<(), String> {
    if ttl == -1 || (ttl > 0 && ttl <= i64::from(u32::MAX)) {
        Ok(())
    } else {
        Err(format!("{what} must be -1 (never expire) or 1..=4294967295 seconds, got {ttl}"))
    }
}

/// Expiry time for a message enqueued at `now_ms` with `ttl` seconds (-1 = never).
pub(crate) fn expiry(now_ms: u64, ttl: i64) -> u64 {
    if ttl < 0 {
        record::NEVER
    } else {
        now_ms.saturating_add((ttl as u64).saturating_mul(1000))
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// RocksDB options: small memory footprint for edge boards, paranoid checks so corruption
/// fails `open` instead of being papered over.
pub(crate) fn db_options() -> rocksdb::Options {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_paranoid_checks(true);
    o.set_max_open_files(256);
    o.set_keep_log_file_num(3);
    o.set_max_background_jobs(2);
    o.set_bytes_per_sync(1 << 20);
    o.set_max_total_wal_size(64 << 20);
    // One cap on memtable memory across column families keeps RSS bounded on edge boards.
    o.set_db_write_buffer_size(24 << 20);
    // Opening must not cost more with a large backlog: no per-SST statistics pass.
    o.set_skip_stats_update_on_db_open(true);
    o
}

/// Reclaims records whose own TTL passed while their run is still live (clamped runs,
/// or the gap between expiry and the next sweep). Counters are not touched here: the
/// sweep accounts for them when their run prefix is deleted (queue.rs). One filter per
/// compaction, so each reads the clock once and runs on one thread.
struct TtlFilterFactory;

struct TtlFilter {
    now: u64,
}

impl CompactionFilter for TtlFilter {
    fn filter(&mut self, _level: u32, _key: &[u8], value: &[u8]) -> Decision {
        match record::decode_header(value) {
            Some((h, _)) if h.expires_at <= self.now => Decision::Remove,
            _ => Decision::Keep,
        }
    }

    fn name(&self) -> &CStr {
        c"edgehub-ttl"
    }
}

impl CompactionFilterFactory for TtlFilterFactory {
    type Filter = TtlFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> TtlFilter {
        TtlFilter { now: now_ms() }
    }

    fn name(&self) -> &CStr {
        c"edgehub-ttl-factory"
    }
}

pub(crate) fn column_families() -> Vec<ColumnFamilyDescriptor> {
    let cache = Cache::new_lru_cache(8 << 20);
    let table = |bloom: bool| {
        let mut t = BlockBasedOptions::default();
        t.set_block_cache(&cache);
        t.set_cache_index_and_filter_blocks(true);
        t.set_pin_l0_filter_and_index_blocks_in_cache(true);
        if bloom {
            t.set_bloom_filter(10.0, false);
        }
        t
    };
    let base = |bloom: bool, write_buffer: usize| {
        let mut o = rocksdb::Options::default();
        o.set_block_based_table_factory(&table(bloom));
        o.set_write_buffer_size(write_buffer);
        o.set_max_write_buffer_number(2);
        o.set_compression_type(DBCompressionType::Lz4);
        o.set_bottommost_compression_type(DBCompressionType::Zstd);
        o
    };
    let mut msgs = base(false, 8 << 20);
    // Messages acked while online die young, in L0/L1: compressing them only burns CPU.
    // Backlogs that outlive an outage sink lower and are compressed there.
    msgs.set_compression_per_level(&[
        DBCompressionType::None,
        DBCompressionType::None,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Zstd,
    ]);
    msgs.set_compaction_filter_factory(TtlFilterFactory);
    vec![
        ColumnFamilyDescriptor::new(keys::CF_MSGS, msgs),
        ColumnFamilyDescriptor::new(keys::CF_META, base(true, 2 << 20)),
        ColumnFamilyDescriptor::new(keys::CF_KV, base(true, 2 << 20)),
    ]
}
