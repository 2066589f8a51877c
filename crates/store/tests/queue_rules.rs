//! Offsets, order, atomic multi-queue appends, acks and reopen.
mod common;
use common::*;
use edgehub_store::{decode_properties, Durability, Options};

#[test]
fn offsets_start_at_zero_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), Options::default());
        assert_eq!(s.append(&["q"], vec![msg("a"), msg("b")]).unwrap(), vec![0..2]);
        assert_eq!(s.append(&["q"], vec![msg("c")]).unwrap(), vec![2..3]);
        assert_eq!(s.append(&["other"], vec![msg("x")]).unwrap(), vec![0..1]);
        s.ack("q", 2).unwrap();
        s.close().unwrap();
    }
    let s = open(dir.path(), Options::default());
    // Acked everything: offsets are still never reused.
    assert_eq!(s.append(&["q"], vec![msg("d")]).unwrap(), vec![3..4]);
    assert_eq!(bodies(&s, "q", 0), vec![(3, "d".into())]);
    assert_eq!(bodies(&s, "other", 0), vec![(0, "x".into())]);
}

#[test]
fn read_returns_offset_order_from_limit_and_properties() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options::default());
    let msgs: Vec<_> = (0..50).map(|i| msg_props(&format!("m{i}"), &[("i", &i.to_string()), ("$.mid", "x")])).collect();
    s.append(&["q"], msgs).unwrap();
    let got = s.read("q", 10, 5).unwrap();
    assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![10, 11, 12, 13, 14]);
    assert_eq!(got[0].body, b"m10");
    assert_eq!(got[0].properties, vec![("i".to_string(), "10".to_string()), ("$.mid".to_string(), "x".to_string())]);
    assert!(got[0].expires_at.unwrap() > got[0].enqueued_at);
    assert!(s.read("q", 50, 10).unwrap().is_empty());
    assert!(s.read("missing", 0, 10).unwrap().is_empty());
    assert!(s.read("q", 0, 0).unwrap().is_empty());
    let _ = decode_properties(&[]).unwrap();
}

#[test]
fn multi_queue_append_is_one_atomic_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options::default());
    s.append(&["a"], vec![msg("pre")]).unwrap();
    let offs = s.append(&["a", "b", "c"], vec![msg("1"), msg("2")]).unwrap();
    assert_eq!(offs, vec![1..3, 0..2, 0..2]);
    for q in ["b", "c"] {
        assert_eq!(bodies(&s, q, 0), vec![(0, "1".into()), (1, "2".into())]);
    }
    let st = s.stats().unwrap();
    assert_eq!(st.count, 7);
    assert_eq!(st.queues.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);
}

#[test]
fn parts_of_one_append_are_stored_all_or_none_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options { max_size_bytes: 4096, ..Options::default() });
    s.append(&["a"], vec![msg("pre")]).unwrap();
    // Two variants of one message (other properties, other TTL), and a queue named by two parts.
    let offs = s
        .append_parts(
            &[
                (&["a", "new"], vec![msg_props("m", &[("$.in", "x")])]),
                (&["new", "b"], vec![msg_ttl("m", 60), msg_ttl("n", 60)]),
            ],
            &[("twins", "dev", b"v1")],
        )
        .unwrap();
    assert_eq!(s.kv_get("twins", "dev").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(offs, vec![vec![1..2, 0..1], vec![1..3, 0..2]]);
    assert_eq!(bodies(&s, "new", 0), vec![(0, "m".into()), (1, "m".into()), (2, "n".into())]);
    assert_eq!(s.read("new", 0, 1).unwrap()[0].properties, vec![("$.in".to_string(), "x".to_string())]);
    let before = s.stats().unwrap();
    // The second part does not fit: neither is stored, and no queue is created.
    let big = "x".repeat(3900);
    let err = s
        .append_parts(&[(&["a", "c"], vec![msg("small")]), (&["d"], vec![msg(&big)])], &[("twins", "dev", b"v2")])
        .unwrap_err();
    assert_eq!(err.code(), "STORE_FULL");
    assert_eq!(s.kv_get("twins", "dev").unwrap(), Some(b"v1".to_vec()));
    let after = s.stats().unwrap();
    assert_eq!(after, before);
    assert!(bodies(&s, "c", 0).is_empty());
    // A queue named twice in one part is refused before anything is written.
    let err = s.append_parts(&[(&["a"], vec![msg("1")]), (&["b", "b"], vec![msg("2")])], &[]).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    assert_eq!(s.stats().unwrap(), before);
    // New queues keep their ids across a reopen.
    s.close().unwrap();
    let s = open(dir.path(), Options::default());
    assert_eq!(bodies(&s, "b", 0), vec![(0, "m".into()), (1, "n".into())]);
    assert_eq!(s.append(&["new"], vec![msg("after")]).unwrap(), vec![3..4]);
}

#[test]
fn acks_consume_prefixes_persist_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), Options::default());
        s.append(&["q"], (0..10).map(|i| msg(&i.to_string())).collect()).unwrap();
        s.ack("q", 3).unwrap();
        s.ack("q", 1).unwrap(); // below the ack point: no-op
        assert_eq!(bodies(&s, "q", 0).first().map(|m| m.0), Some(4));
        let st = s.stats().unwrap();
        assert_eq!((st.queues[0].count, st.queues[0].head, st.queues[0].acked_up_to), (6, 4, Some(3)));
    }
    let s = open(dir.path(), Options::default());
    let q = s.stats().unwrap().queues[0].clone();
    assert_eq!(q.acked_up_to, Some(3));
    let resumed = bodies(&s, "q", q.acked_up_to.unwrap() + 1);
    assert_eq!(resumed.iter().map(|m| m.0).collect::<Vec<_>>(), (4..10).collect::<Vec<_>>());
    // Reading from below the ack point never returns acked messages.
    assert_eq!(bodies(&s, "q", 0), resumed);
    s.ack("q", 9).unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes), (0, 0));
}

#[test]
fn bad_input_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options::default());
    let code = |r: edgehub_store::Result<_>| r.map(|_: Vec<std::ops::Range<u64>>| ()).unwrap_err().code();
    assert_eq!(code(s.append(&[""], vec![msg("a")])), "INVALID_ARGUMENT");
    assert_eq!(code(s.append(&[], vec![msg("a")])), "INVALID_ARGUMENT");
    assert_eq!(code(s.append(&["a", "a"], vec![msg("a")])), "INVALID_ARGUMENT");
    assert_eq!(code(s.append(&["a"], vec![msg_ttl("a", 0)])), "INVALID_ARGUMENT");
    assert_eq!(code(s.append(&["a"], vec![msg_ttl("a", -5)])), "INVALID_ARGUMENT");
    let mut bad = msg("a");
    bad.properties = vec![1, 9, b'x'];
    assert_eq!(code(s.append(&["a"], vec![bad])), "INVALID_ARGUMENT");
    s.append(&["a"], vec![msg("a")]).unwrap();
    assert_eq!(s.ack("a", 1).unwrap_err().code(), "INVALID_OFFSET");
    assert_eq!(s.ack("nope", 0).unwrap_err().code(), "INVALID_OFFSET");
    assert_eq!(s.ack("", 0).unwrap_err().code(), "INVALID_ARGUMENT");
    assert!(Store::open(dir.path().join("x"), Options { default_ttl_secs: 0, ..Options::default() }).is_err());
    s.close().unwrap();
    s.close().unwrap();
    assert_eq!(code(s.append(&["a"], vec![msg("a")])), "STORE_CLOSED");
    assert_eq!(s.read("a", 0, 1).unwrap_err().code(), "STORE_CLOSED");
    assert_eq!(s.ack("a", 0).unwrap_err().code(), "STORE_CLOSED");
    assert_eq!(s.stats().unwrap_err().code(), "STORE_CLOSED");
    assert_eq!(s.kv_get("n", "k").unwrap_err().code(), "STORE_CLOSED");
}

use edgehub_store::Store;

#[test]
fn kv_put_get_delete_scan() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), Options::default());
        s.kv_put("twin", "dev1", b"{}".to_vec()).unwrap();
        s.kv_put("twin", "dev2", b"[]".to_vec()).unwrap();
        s.kv_put("twin", "other", b"o".to_vec()).unwrap();
        s.kv_put("twinx", "dev3", b"no".to_vec()).unwrap();
        s.kv_delete("twin", "dev2").unwrap();
        s.kv_delete("twin", "absent").unwrap();
    }
    let s = open(dir.path(), Options::default());
    assert_eq!(s.kv_get("twin", "dev1").unwrap(), Some(b"{}".to_vec()));
    assert_eq!(s.kv_get("twin", "dev2").unwrap(), None);
    assert_eq!(s.kv_scan("twin", "dev").unwrap(), vec![("dev1".to_string(), b"{}".to_vec())]);
    assert_eq!(s.kv_scan("twin", "").unwrap().len(), 2);
    assert_eq!(s.kv_get("", "k").unwrap_err().code(), "INVALID_ARGUMENT");
    assert_eq!(s.kv_get("a\0b", "k").unwrap_err().code(), "INVALID_ARGUMENT");
}

#[test]
fn concurrent_appends_are_group_committed_in_order_per_caller() {
    concurrent_appends_in_order(Durability::Fsync);
}

/// Under `wal` some callers run inline and the rest queue for the thread: still one order.
#[test]
fn concurrent_wal_appends_inline_or_queued_keep_one_order() {
    concurrent_appends_in_order(Durability::Wal);
}

fn concurrent_appends_in_order(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open(dir.path(), Options { durability, ..Options::default() }));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut last = None;
                for i in 0..200 {
                    let off = s.append(&["q", &format!("t{t}")], vec![msg(&format!("{t}-{i}"))]).unwrap();
                    assert!(last.is_none_or(|l| off[0].start > l));
                    last = Some(off[0].start);
                    assert_eq!(off[1].start, i);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let all = bodies(&s, "q", 0);
    assert_eq!(all.len(), 1600);
    assert!(all.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    for t in 0..8 {
        let mine: Vec<_> =
            all.iter().filter(|(_, b)| b.starts_with(&format!("{t}-"))).map(|(_, b)| b.clone()).collect();
        assert_eq!(mine, (0..200).map(|i| format!("{t}-{i}")).collect::<Vec<_>>());
    }
}

#[test]
fn appends_and_acks_of_one_queue_in_one_batch_keep_counters_exact() {
    appends_and_acks_keep_counters_exact(Durability::Fsync);
}

#[test]
fn wal_appends_and_acks_inline_keep_counters_exact() {
    appends_and_acks_keep_counters_exact(Durability::Wal);
}

fn appends_and_acks_keep_counters_exact(durability: Durability) {
    use edgehub_store::MessageBatch;
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options { durability, ..Options::default() });
    s.append(&["q"], (0..100).map(|i| msg(&format!("m{i}"))).collect()).unwrap();
    // Appends and acks issued without waiting land in the same writer batches: acks of
    // committed offsets, of offsets appended in that very batch, and repeated ones.
    let (tx, rx) = mpsc::channel::<Result<(), String>>();
    let mut issued = 0;
    for i in 0..300u64 {
        let mut batch = MessageBatch::new();
        batch.push(&[], format!("n{i}").as_bytes(), None).unwrap();
        let t = tx.clone();
        s.append_with(
            vec!["q".into()],
            batch,
            Box::new(move |r| t.send(r.map(|_| ()).map_err(|e| e.to_string())).unwrap()),
        );
        let t = tx.clone();
        let upto = if i % 7 == 0 { 100 + i } else { i / 2 + 40 };
        s.ack_with("q", upto, Box::new(move |r| t.send(r.map_err(|e| e.to_string())).unwrap()));
        issued += 2;
    }
    for _ in 0..issued {
        rx.recv().unwrap().unwrap();
    }
    let check = |s: &edgehub_store::Store| {
        let st = s.stats().unwrap();
        let q = &st.queues[0];
        let live = bodies(s, "q", 0);
        assert_eq!(q.tail, 400);
        assert_eq!(live.first().map(|(o, _)| *o), Some(q.acked_up_to.map_or(0, |a| a + 1)));
        assert_eq!(live.len() as u64, q.count);
        assert_eq!(q.count, q.tail - live[0].0);
        assert_eq!(st.count, q.count);
        // Live bytes: key, header, property-length varint and body of each live record.
        assert_eq!(q.bytes, live.iter().map(|(_, b)| (12 + 26 + 1 + b.len()) as u64).sum::<u64>());
        st
    };
    let before = check(&s);
    assert_eq!(before.queues[0].acked_up_to, Some(100 + 294));
    s.close().unwrap();
    let s = open(dir.path(), Options::default());
    assert_eq!(check(&s), before);
}

#[test]
fn one_queue_figures_are_that_queue_of_stats() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options::default());
    s.append(&["a"], vec![msg("1"), msg("2")]).unwrap();
    s.append(&["b"], vec![msg("3")]).unwrap();
    s.ack("a", 0).unwrap();
    let all = s.stats().unwrap();
    for name in ["a", "b"] {
        assert_eq!(s.queue_stats(name).unwrap().as_ref(), all.queues.iter().find(|q| q.name == name));
    }
    assert_eq!(s.queue_stats("never").unwrap(), None);
    s.close().unwrap();
    assert_eq!(s.queue_stats("a").unwrap_err().code(), "STORE_CLOSED");
}
