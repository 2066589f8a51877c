//! An ack that fails writes nothing: its batch is shared with other callers' appends and
//! acks, so a failure after its counters were staged would commit a partly applied ack.
mod common;
use common::*;
use edgehub_store::{Options, Store};

fn raw_db(dir: &std::path::Path) -> rocksdb::DB {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(false);
    rocksdb::DB::open_cf(&o, dir, ["msgs", "meta", "kv"]).unwrap()
}

/// A store whose queue `q` holds `a`, `b`, `c` in one run, with the record at offset 1
/// damaged on disk: acking offset 0 must read it (the first record kept) and fails.
fn damaged_second_record() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), Options::default());
        s.append(&["q"], vec![msg("a"), msg("b"), msg("c")]).unwrap();
        s.close().unwrap();
    }
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("msgs").unwrap();
        let key: Vec<u8> = db.iterator_cf(cf, rocksdb::IteratorMode::Start).nth(1).unwrap().unwrap().0.to_vec();
        assert_eq!(&key[4..], &1u64.to_be_bytes(), "second record is offset 1");
        db.put_cf(cf, key, b"\x07junk").unwrap();
    }
    dir
}

#[test]
fn failed_ack_leaves_the_queue_as_it_was() {
    let dir = damaged_second_record();
    let s = open(dir.path(), Options::default());
    let before = s.stats().unwrap();
    assert_eq!(s.ack("q", 0).unwrap_err().code(), "STORE_CORRUPT");
    // Other callers' writes share the ack's batch: they commit, the ack's do not.
    s.append(&["other"], vec![msg("x")]).unwrap();
    let q = |st: &edgehub_store::Stats| st.queues.iter().find(|q| q.name == "q").cloned().unwrap();
    assert_eq!(q(&s.stats().unwrap()), q(&before), "published state unchanged");
    assert_eq!(s.read("q", 0, 1).unwrap()[0].body, b"a", "offset 0 is still readable");
    s.close().unwrap();
    let s = open(dir.path(), Options::default());
    assert_eq!(q(&s.stats().unwrap()), q(&before), "state on disk unchanged");
    assert_eq!(s.read("q", 0, 1).unwrap()[0].body, b"a");
}

#[test]
fn failed_ack_in_a_batch_with_appends_commits_only_the_appends() {
    let dir = damaged_second_record();
    let s = Store::open(dir.path(), Options::default()).unwrap();
    // Queued back to back: the writer takes them into one batch (or consecutive ones; the
    // outcome must be the same).
    let (tx, rx) = std::sync::mpsc::channel::<(&str, bool)>();
    for i in 0..3 {
        let (t1, t2) = (tx.clone(), tx.clone());
        let mut b = edgehub_store::MessageBatch::new();
        b.push(&[], format!("o{i}").as_bytes(), None).unwrap();
        s.append_with(
            vec!["other".into()],
            b,
            Box::new(move |r| {
                let _ = t1.send(("append", r.is_ok()));
            }),
        );
        if i == 1 {
            s.ack_with(
                "q",
                0,
                Box::new(move |r| {
                    let _ = t2.send(("ack", r.is_ok()));
                }),
            );
        }
    }
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.iter().filter(|(k, ok)| *k == "append" && *ok).count(), 3);
    assert!(results.contains(&("ack", false)), "{results:?}");
    s.close().unwrap();
    let s = open(dir.path(), Options::default());
    let st = s.stats().unwrap();
    let q = st.queues.iter().find(|q| q.name == "q").unwrap();
    assert_eq!((q.count, q.head, q.acked_up_to), (3, 0, None));
    assert_eq!(bodies(&s, "other", 0).len(), 3);
}
