//! Faults of the gateway process itself (issue #5, item 6): a SIGKILL while
//! clients pipeline SETs loses no SET that was answered `+OK`, and a new
//! gateway on the same database and topic carries on.
//!
//! Faults of the services (broker, MySQL) stop what every other test shares, so
//! they live in `scripts/chaos.sh`, with a stack of their own.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Condvar, Mutex};

use common::{dsn, encode, read_topic_until, Gateway, TestDb, WAIT};

/// Publisher connections pipelining at the same time.
const CONNS: usize = 4;
/// SETs each connection sends: far more than are acknowledged before the kill
/// (which comes after [`KILL_AFTER`] acknowledgements), so it lands mid-stream.
const PER_CONN: usize = 50_000;
const KILL_AFTER: usize = 20_000;
const PARTITIONS: i32 = 3;

/// Acknowledgements seen so far, by connection, and their total.
#[derive(Default)]
struct Acks {
    per_conn: Vec<usize>,
    total: usize,
}

#[test]
fn sigkill_loses_no_acknowledged_set_and_a_restart_carries_on() {
    let db = TestDb::new();
    let topic = common::create_topic(PARTITIONS);
    db.grant_topic(&topic, 2);
    let mut gw = Gateway::start(&db);

    let acks = Arc::new((
        Mutex::new(Acks {
            per_conn: vec![0; CONNS],
            total: 0,
        }),
        Condvar::new(),
    ));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    // All connections authenticate first, so that they pipeline side by side.
    let clients: Vec<_> = (0..CONNS)
        .map(|_| gw.publisher(&dsn(&topic, "pub")))
        .collect();
    for (conn, c) in clients.into_iter().enumerate() {
        let mut stream = c.stream.try_clone().unwrap();
        // The writer only stops when the socket fails (the gateway died):
        // a full pipeline just blocks it, as it would block a real client.
        writers.push(std::thread::spawn(move || {
            let mut batch = Vec::new();
            for i in 0..PER_CONN {
                batch.extend(encode(&[
                    b"SET",
                    format!("k{}", i % 10).as_bytes(),
                    format!("c{conn}-{i}").as_bytes(),
                ]));
                if batch.len() >= 16 * 1024 || i == PER_CONN - 1 {
                    if stream.write_all(&batch).is_err() {
                        return;
                    }
                    batch.clear();
                }
            }
        }));
        // Replies come in command order, so the n-th `+OK` acknowledges SET n.
        let acks = Arc::clone(&acks);
        let mut reader = BufReader::new(c.stream.try_clone().unwrap());
        readers.push(std::thread::spawn(move || {
            let _keep_open = c;
            let mut other = None;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(n) if n > 0 && line == "+OK\r\n" => {
                        let (lock, changed) = &*acks;
                        let mut acks = lock.lock().unwrap();
                        acks.per_conn[conn] += 1;
                        acks.total += 1;
                        changed.notify_all();
                    }
                    // EOF or reset: the gateway is gone. A partial line is no
                    // acknowledgement.
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        other = Some(line);
                        break;
                    }
                }
            }
            other
        }));
    }

    // Kill once the traffic is well under way.
    {
        let (lock, changed) = &*acks;
        let (acks, timeout) = changed
            .wait_timeout_while(lock.lock().unwrap(), WAIT, |a| a.total < KILL_AFTER)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} SETs acknowledged",
            acks.total
        );
    }
    gw.kill();
    for reader in readers {
        let other = reader.join().unwrap();
        assert_eq!(other, None, "a reply other than +OK before the kill");
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let acked: Vec<usize> = acks.0.lock().unwrap().per_conn.clone();
    assert!(
        acked.iter().any(|&n| n < PER_CONN),
        "the kill came after every SET was answered: {acked:?}"
    );

    // Every acknowledged SET is in Kafka, value by value.
    let mut missing: HashSet<String> = acked
        .iter()
        .enumerate()
        .flat_map(|(conn, &n)| (0..n).map(move |i| format!("c{conn}-{i}")))
        .collect();
    let acknowledged = missing.len();
    read_all_of(&topic, &mut missing);
    assert!(missing.is_empty());

    // A new gateway on the same database and topic: publishing carries on.
    let gw = Gateway::start(&db);
    let mut c = gw.publisher(&dsn(&topic, "pub"));
    const AFTER: usize = 1_000;
    let mut batch = Vec::new();
    for i in 0..AFTER {
        batch.extend(encode(&[b"SET", b"k", format!("after-{i}").as_bytes()]));
    }
    c.send(&batch);
    for i in 0..AFTER {
        assert_eq!(c.read_reply(), "+OK\r\n", "SET after-{i}");
    }
    let mut missing: HashSet<String> = (0..AFTER).map(|i| format!("after-{i}")).collect();
    read_all_of(&topic, &mut missing);
    assert!(missing.is_empty());
    eprintln!(
        "SIGKILL after {acknowledged} acknowledged SETs ({acked:?} per connection): all in Kafka"
    );
}

/// Reads `topic` from the beginning until every value in `missing` was seen
/// (removing them), and checks that no value is there twice.
fn read_all_of(topic: &str, missing: &mut HashSet<String>) {
    let mut seen: HashMap<String, (i32, i64)> = HashMap::new();
    let mut checked = 0;
    read_topic_until(topic, PARTITIONS, |records| {
        for r in &records[checked..] {
            let value = String::from_utf8(r.value.clone().unwrap()).unwrap();
            missing.remove(&value);
            if let Some(first) = seen.insert(value.clone(), (r.partition, r.offset)) {
                panic!(
                    "{value} twice: at {first:?} and {:?}",
                    (r.partition, r.offset)
                );
            }
        }
        checked = records.len();
        missing.is_empty()
    });
}
