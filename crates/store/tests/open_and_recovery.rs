//! Opening: backlog counters, corruption, locking, format versions.
mod common;
use common::*;
use edgehub_store::{Options, Store};

#[test]
fn reopen_with_backlog_restores_counters_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let s = open(dir.path(), Options::default());
        for chunk in 0..20 {
            s.append(&["up", "side"], (0..500).map(|i| msg(&format!("{chunk}-{i}"))).collect()).unwrap();
        }
        s.ack("side", 4_999).unwrap();
        s.stats().unwrap()
    };
    let s = open(dir.path(), Options::default());
    assert_eq!(s.stats().unwrap(), before);
    assert_eq!(s.read("up", 9_999, 10).unwrap()[0].body, b"19-499");
    assert_eq!(s.read("side", 0, 1).unwrap()[0].offset, 5_000);
}

fn expect_corrupt(dir: &std::path::Path) {
    let err = Store::open(dir, Options::default()).err().expect("open must fail");
    assert_eq!(err.code(), "STORE_CORRUPT", "{err}");
    assert!(err.to_string().contains(&dir.display().to_string()), "names the path: {err}");
}

fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options::default());
    s.append(&["q"], vec![msg("a")]).unwrap();
    s.close().unwrap();
    dir
}

#[test]
fn garbage_current_file_fails_open_naming_the_path() {
    let dir = populated();
    std::fs::write(dir.path().join("CURRENT"), b"\x00garbage").unwrap();
    expect_corrupt(dir.path());
}

#[test]
fn damaged_manifest_fails_open() {
    let dir = populated();
    let manifest = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
        .unwrap();
    let len = std::fs::metadata(manifest.path()).unwrap().len() as usize;
    std::fs::write(manifest.path(), vec![0xA5u8; len]).unwrap();
    expect_corrupt(dir.path());
}

#[test]
fn lost_current_file_is_not_silently_replaced_by_an_empty_store() {
    let dir = populated();
    std::fs::remove_file(dir.path().join("CURRENT")).unwrap();
    expect_corrupt(dir.path());
}

#[test]
fn second_open_of_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path(), Options::default());
    let err = Store::open(dir.path(), Options::default()).err().expect("locked");
    assert_eq!(err.code(), "STORE_LOCKED", "{err}");
}

fn raw_db(dir: &std::path::Path) -> rocksdb::DB {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(false);
    rocksdb::DB::open_cf(&o, dir, ["msgs", "meta", "kv"]).unwrap()
}

#[test]
fn newer_format_version_is_refused() {
    let dir = populated();
    {
        let db = raw_db(dir.path());
        db.put_cf(db.cf_handle("meta").unwrap(), b"v", 9u32.to_be_bytes()).unwrap();
    }
    let err = Store::open(dir.path(), Options::default()).err().expect("refused");
    assert_eq!(err.code(), "STORE_FORMAT_UNSUPPORTED", "{err}");
}

#[test]
fn damaged_record_is_reported_on_read_not_returned() {
    let dir = populated();
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("msgs").unwrap();
        let key: Vec<u8> = db.iterator_cf(cf, rocksdb::IteratorMode::Start).next().unwrap().unwrap().0.to_vec();
        db.put_cf(cf, key, b"\x07junk").unwrap();
    }
    let s = open(dir.path(), Options::default());
    assert_eq!(s.read("q", 0, 10).unwrap_err().code(), "STORE_CORRUPT");
}

#[test]
fn damaged_metadata_fails_open() {
    let dir = populated();
    {
        let db = raw_db(dir.path());
        db.put_cf(db.cf_handle("meta").unwrap(), b"g", b"short").unwrap();
    }
    expect_corrupt(dir.path());
}

#[test]
fn acked_records_are_deleted_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), Options::default());
        s.append(&["q"], (0..1000).map(|i| msg(&i.to_string())).collect()).unwrap();
        for o in (99..1000).step_by(100) {
            s.ack("q", o).unwrap();
        }
        s.append(&["q"], vec![msg("left")]).unwrap();
        s.close().unwrap();
    }
    let db = raw_db(dir.path());
    let left: Vec<Vec<u8>> = db
        .iterator_cf(db.cf_handle("msgs").unwrap(), rocksdb::IteratorMode::Start)
        .map(|kv| kv.unwrap().0.to_vec())
        .collect();
    assert_eq!(left.len(), 1, "only the unacked record is still stored");
}
