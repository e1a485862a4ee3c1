//! Auth data refreshes from MySQL while connections are live (protocol.md §3).

mod common;

use common::{create_topic, dsn, read_topic, seed_dsn, Gateway, GatewayConfig, TestDb};

const REFRESHES: &str = "databus_auth_refresh_total";

/// Waits until the gateway finished two more refreshes than it had when called
/// (as /metrics counts them): the first may have started before the caller's
/// change was committed.
fn two_refreshes_after(gw: &Gateway) {
    let done = gw.metric(REFRESHES, &[("outcome", "ok")]);
    gw.wait_for_metric(REFRESHES, &[("outcome", "ok")], |n| n >= done + 2.0);
}

#[test]
fn new_apps_are_accepted_after_a_refresh_and_revoked_ones_closed() {
    let db = TestDb::new();
    for (id, key) in [(2, "deleted"), (3, "rekeyed"), (4, "demoted")] {
        db.add_app(id, key, "s", "cluster1");
        db.add_grant(id, "g", 3, "t");
    }
    let gw = GatewayConfig {
        refresh_interval: "200ms",
        ..GatewayConfig::new(&db)
    }
    .start();

    let mut newcomer = gw.client();
    assert_eq!(
        newcomer.call(&["AUTH", "fresh:s@g/topic=t&role=pub"]),
        "-WRONGPASS invalid key, secret, group or topic\r\n"
    );
    let mut deleted = gw.publisher("deleted:s@g/topic=t&role=pub");
    let mut rekeyed = gw.publisher("rekeyed:s@g/topic=t&role=pub");
    let mut demoted = gw.publisher("demoted:s@g/topic=t&role=pub");
    let mut untouched = gw.publisher(&seed_dsn("pub"));

    db.add_app(5, "fresh", "s", "cluster1");
    db.add_grant(5, "g", 2, "t");
    db.exec(
        "UPDATE auth SET deleted_at = 1700000000 WHERE app_id = 2;
         UPDATE app SET app_secret = 'new' WHERE id = 3;
         UPDATE auth SET operation = 1 WHERE app_id = 4;",
    );
    two_refreshes_after(&gw);

    gw.publisher("fresh:s@g/topic=t&role=pub");
    for c in [&mut deleted, &mut rekeyed, &mut demoted] {
        assert_eq!(c.read_reply(), "-ERR credentials revoked\r\n");
        c.expect_closed();
    }
    assert_eq!(untouched.call(&["PING"]), "+PONG\r\n");
}

/// protocol.md §3: an app moved to another cluster. Both clusters name the
/// stack's one broker, but with different partitioners, so where a record
/// lands tells which cluster's producer wrote it: the publisher's records go
/// through cluster1 (FNV-1a, the spec's placement vectors) before the move and
/// through cluster2 (murmur2) after it, on the same connection.
#[test]
fn moving_an_app_switches_publishers_and_closes_subscribers() {
    const KEYS: [&str; 6] = ["", "x", "aaaa", "user:42", "order-1001", "hello"];
    const FNV1A: [i32; 6] = [0, 1, 1, 2, 0, 0];
    // The Java client's default placement (Utils.murmur2, positive % 3).
    const MURMUR2: [i32; 6] = [0, 1, 2, 1, 0, 0];
    let db = TestDb::new();
    let topic = create_topic(3);
    db.grant_topic(&topic, 3);
    let brokers = common::brokers();
    let gw = GatewayConfig {
        refresh_interval: "200ms",
        extra: &format!(
            "[clusters.cluster2]\nbrokers = \"{brokers}\"\npartitioner = \"murmur2_random\"\n"
        ),
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut publisher = gw.publisher(&dsn(&topic, "pub"));
    let mut subscriber = gw.subscriber(&dsn(&topic, "sub"));
    for key in KEYS {
        assert_eq!(publisher.call(&["SET", key, "before"]), "+OK\r\n");
    }
    db.exec("UPDATE app SET cluster = 'cluster2' WHERE id = 1");
    assert_eq!(
        subscriber.read_reply(),
        "-ERR cluster changed, reconnect\r\n"
    );
    subscriber.expect_closed();
    // The same refresh reached the publisher's connection (one shard: its task
    // ran while the subscriber's error travelled to the test).
    for key in KEYS {
        assert_eq!(publisher.call(&["SET", key, "after"]), "+OK\r\n");
    }
    let records = read_topic(&topic, 3, 2 * KEYS.len());
    let placed = |value: &[u8]| -> Vec<i32> {
        KEYS.iter()
            .map(|key| {
                records
                    .iter()
                    .find(|r| {
                        r.key.as_deref() == Some(key.as_bytes())
                            && r.value.as_deref() == Some(value)
                    })
                    .unwrap_or_else(|| panic!("no {key:?} = {value:?}"))
                    .partition
            })
            .collect()
    };
    assert_eq!(placed(b"before"), FNV1A, "cluster1's producer (FNV-1a)");
    assert_eq!(placed(b"after"), MURMUR2, "cluster2's producer (murmur2)");
    assert_ne!(
        FNV1A, MURMUR2,
        "the two placements tell the producers apart"
    );
}

#[test]
fn a_failed_refresh_keeps_the_last_good_snapshot() {
    let db = TestDb::new();
    let gw = GatewayConfig {
        refresh_interval: "200ms",
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut live = gw.publisher(&seed_dsn("pub"));
    // Break the next refreshes: the table it reads is gone.
    db.exec("RENAME TABLE auth TO auth_away");
    gw.wait_for_metric(REFRESHES, &[("outcome", "error")], |n| n >= 1.0);
    assert_eq!(live.call(&["PING"]), "+PONG\r\n");
    gw.publisher(&seed_dsn("pub"));
    db.exec("RENAME TABLE auth_away TO auth");
    two_refreshes_after(&gw);
}
