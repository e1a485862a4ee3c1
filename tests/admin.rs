//! `databus admin` against the stack's MariaDB, with a gateway reading what it
//! writes: apps added with a secret shown once and stored hashed, rotated and
//! disabled; grants added, listed and removed; each refusal's exact reason;
//! and running connections following at the next refresh.

mod common;

use common::*;
use serde_json::json;

/// A gateway that looks at MySQL twice a second, so that changes show soon.
fn gateway(db: &TestDb) -> Gateway {
    GatewayConfig {
        refresh_interval: "500ms",
        ..GatewayConfig::new(db)
    }
    .start()
}

fn secret_of(run: AdminRun) -> String {
    let out = run.json();
    out["secret"].as_str().expect("a secret").to_owned()
}

#[test]
fn apps_and_grants_made_with_admin_authenticate_and_publish() {
    let db = TestDb::new();
    let topic = create_topic(1);
    let group = group_of(&topic);
    let secret = secret_of(admin(&db, &["--json", "apps", "add", "orders"]));
    assert_eq!(secret.len(), 64, "{secret}");
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    let granted = admin(&db, &["grants", "add", "orders", &group, &topic, "both"]).ok();
    assert!(
        granted.starts_with("granted (id ")
            && granted.ends_with(&format!(
                "app \"orders\" group \"{group}\" topic \"{topic}\" both\n"
            )),
        "{granted}"
    );
    // Only the hash is stored.
    let apps = admin(&db, &["--json", "apps", "list"]).json();
    assert_eq!(
        apps,
        json!([
            {"id": 1, "key": "app_key1", "cluster": "cluster1", "secret": "plaintext",
             "disabled": false, "grants": 1,
             "quota": {"records_per_sec": 0, "bytes_per_sec": 0, "connections": 0}},
            {"id": 2, "key": "orders", "cluster": "cluster1", "secret": "hashed",
             "disabled": false, "grants": 1,
             "quota": {"records_per_sec": 0, "bytes_per_sec": 0, "connections": 0}},
        ])
    );
    let grants = admin(&db, &["--json", "grants", "list", "orders"]).json();
    assert_eq!(
        grants[0]["key"]
            .as_str()
            .zip(grants[0]["operation"].as_str()),
        Some(("orders", "both"))
    );
    assert_eq!(grants.as_array().map(Vec::len), Some(1));

    let gateway = gateway(&db);
    let mut publisher = gateway.client();
    publisher.auth_ok(&format!("orders:{secret}@{group}/topic={topic}&role=pub"));
    assert_eq!(publisher.call(&["SET", "k", "made by admin"]), "+OK\r\n");
    let records = read_topic_to_end(&topic, 1);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"made by admin"[..]));
}

#[test]
fn rotate_remove_and_disable_close_running_connections_at_the_next_refresh() {
    let db = TestDb::new();
    let topic = create_topic(1);
    let group = group_of(&topic);
    let old = secret_of(admin(&db, &["--json", "apps", "add", "rotating"]));
    admin(&db, &["grants", "add", "rotating", &group, &topic, "pub"]).ok();
    let gateway = gateway(&db);
    let dsn = |secret: &str| format!("rotating:{secret}@{group}/topic={topic}&role=pub");
    let mut before = gateway.client();
    before.auth_ok(&dsn(&old));

    let rotated = admin(&db, &["apps", "rotate", "rotating"]).ok();
    let lines: Vec<&str> = rotated.lines().collect();
    assert_eq!(lines.len(), 3, "{rotated}");
    assert_eq!(
        lines[0],
        "app \"rotating\" (id 2, cluster cluster1): new secret"
    );
    assert_eq!(lines[2], "Shown once: only its hash is stored.");
    let new = lines[1].to_owned();
    assert_ne!(new, old);
    // The refresh closes the connection made with the old secret, and the
    // old secret no longer authenticates.
    assert_eq!(before.read_reply(), "-ERR credentials revoked\r\n");
    before.expect_closed();
    let mut refused = gateway.client();
    assert_eq!(
        refused.call(&["AUTH", &dsn(&old)]),
        "-WRONGPASS invalid key, secret, group or topic\r\n"
    );
    let mut current = gateway.client();
    current.auth_ok(&dsn(&new));

    admin(&db, &["grants", "remove", "rotating", &group, &topic]).ok();
    assert_eq!(current.read_reply(), "-ERR credentials revoked\r\n");
    admin(&db, &["grants", "add", "rotating", &group, &topic, "pub"]).ok();
    gateway.wait_for_metric("databus_auth_grants", &[], |n| n == 2.0);
    let mut last = gateway.client();
    last.auth_ok(&dsn(&new));
    assert_eq!(
        admin(&db, &["apps", "disable", "rotating"]).ok(),
        "app \"rotating\" disabled: its connections close at the next refresh\n"
    );
    assert_eq!(last.read_reply(), "-ERR credentials revoked\r\n");
    assert_eq!(
        admin(&db, &["grants", "list", "rotating"]).refused(),
        "databus admin: no app \"rotating\" (or it is disabled)"
    );
}

#[test]
fn each_refusal_says_why_and_changes_nothing() {
    let db = TestDb::new();
    admin(&db, &["apps", "add", "other"]).ok();
    // The seed's app_key1 has group_name1 on test156.
    let cases: [(&[&str], &str); 9] = [
        (&["apps", "add", "other"], "app \"other\" already exists"),
        (
            &["apps", "add", "x", "--cluster", "nope"],
            "cluster \"nope\" is not in the configuration's [clusters] (known: cluster1)",
        ),
        (
            &["apps", "add", "a:b"],
            "app key \"a:b\" must be 1 to 45 of A-Z a-z 0-9 . _ -",
        ),
        (
            &["apps", "rotate", "ghost"],
            "no app \"ghost\" (or it is disabled)",
        ),
        (
            &["grants", "add", "ghost", "g", "t", "pub"],
            "no app \"ghost\" (or it is disabled)",
        ),
        (
            &["grants", "add", "app_key1", "group_name1", "test156", "pub"],
            "cannot grant group \"group_name1\" topic \"test156\" to app \"app_key1\": \
          already granted (operation both): remove it first to change it",
        ),
        (
            &["grants", "add", "other", "group_name1", "t2", "sub"],
            "cannot grant group \"group_name1\" topic \"t2\" to app \"other\": \
          the group is already granted to app \"app_key1\"",
        ),
        (
            &["grants", "add", "other", "group_name1-eu", "t2", "sub"],
            "cannot grant group \"group_name1-eu\" topic \"t2\" to app \"other\": \
          a subscriber of group \"group_name1\" (app \"app_key1\") with color \"eu\" \
          would join this group",
        ),
        (
            &["grants", "remove", "other", "g", "t"],
            "app \"other\" has no grant of group \"g\" for topic \"t\"",
        ),
    ];
    for (args, why) in cases {
        assert_eq!(
            admin(&db, args).refused(),
            format!("databus admin: {why}"),
            "{args:?}"
        );
    }
    let grants = admin(&db, &["--json", "grants", "list"]).json();
    assert_eq!(grants.as_array().map(Vec::len), Some(1), "{grants}");
    let apps = admin(&db, &["--json", "apps", "list"]).json();
    assert_eq!(apps.as_array().map(Vec::len), Some(2), "{apps}");
    // Usage mistakes exit 2, with the usage.
    let usage = admin(&db, &["apps", "launch"]);
    assert_eq!(usage.code, 2);
    assert!(usage
        .stderr
        .starts_with("databus admin: unknown action \"apps launch\"\nusage: "));
}
