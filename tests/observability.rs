//! What an operator sees: `/metrics`, `/healthz`, `/readyz`, `INFO`, and logs
//! (JSON lines, never a secret).

mod common;

use std::process::Command;

use common::{create_topic, dsn, group_of, http_get, read_topic, Gateway, GatewayConfig, TestDb};

/// The value of the sample `name` (labels included, exactly as exposed).
fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        Some(value.parse().unwrap())
    })
}

fn metrics_gateway(db: &TestDb, consumer: &str) -> Gateway {
    GatewayConfig {
        metrics_addr: "127.0.0.1:0",
        consumer,
        ..GatewayConfig::new(db)
    }
    .start()
}

#[test]
fn metrics_count_what_clients_do() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = metrics_gateway(
        &db,
        "session_timeout = \"6s\"\npoll_timeout = \"3s\"\nbatch_window = \"10ms\"",
    );

    let mut sub = gw.subscriber(&dsn(&topic, "sub"));
    // Joins the group and takes the (empty) partition, so it reads what follows.
    assert_eq!(sub.mget("json").len(), 0);
    let mut publisher = gw.publisher(&dsn(&topic, "pub"));
    for i in 0..3 {
        assert_eq!(publisher.call(&["SET", "k", &format!("{i}")]), "+OK\r\n");
    }
    assert_eq!(
        publisher.call(&["FLUSHALL"]),
        "-ERR unknown command 'FLUSHALL'\r\n"
    );
    let mut delivered = Vec::new();
    while delivered.len() < 3 {
        delivered.extend(sub.mget("json"));
    }
    assert_eq!(sub.call(&["SET", "0", "2"]), "+OK\r\n");
    let mut intruder = gw.client();
    assert_eq!(
        intruder.call(&[
            "AUTH",
            &format!("app_key1:wrong@{}/topic={topic}&role=pub", group_of(&topic))
        ]),
        "-WRONGPASS invalid key, secret, group or topic\r\n"
    );
    intruder.expect_closed();

    let (status, text) = http_get(gw.metrics_addr(), "/metrics");
    assert_eq!(status, 200);
    let value = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("{name} in:\n{text}"));
    assert_eq!(
        value(r#"databus_commands_total{command="set",outcome="ok"}"#),
        4.0
    );
    assert_eq!(
        value(r#"databus_commands_total{command="other",outcome="error"}"#),
        1.0
    );
    assert_eq!(value(r#"databus_auth_total{outcome="ok"}"#), 2.0);
    assert_eq!(value(r#"databus_auth_total{outcome="wrong_secret"}"#), 1.0);
    assert_eq!(value(r#"databus_connections{role="pub"}"#), 1.0);
    assert_eq!(value(r#"databus_connections{role="sub"}"#), 1.0);
    assert_eq!(value(r#"databus_connections{role="none"}"#), 0.0);
    assert_eq!(value("databus_produce_duration_seconds_count"), 3.0);
    assert_eq!(
        value(r#"databus_produce_duration_seconds_bucket{le="+Inf"}"#),
        3.0
    );
    assert_eq!(value("databus_produce_errors_total"), 0.0);
    assert_eq!(value("databus_messages_delivered_total"), 3.0);
    assert_eq!(value("databus_commits_applied_total"), 1.0);
    assert_eq!(value("databus_consumer_members"), 1.0);
    assert_eq!(value(r#"databus_auth_refresh_total{outcome="ok"}"#), 1.0);
    assert!(value("databus_net_input_bytes_total") > 0.0);
    assert!(value("databus_net_output_bytes_total") > 0.0);
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn healthz_and_readyz_tell_the_truth() {
    let db = TestDb::new();
    let gw = metrics_gateway(&db, "session_timeout = \"6s\"");
    let addr = gw.metrics_addr();
    assert_eq!(http_get(addr, "/healthz"), (200, "ok\n".to_owned()));
    let (status, body) = http_get(addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["clusters"], serde_json::json!({"cluster1": true}));
    assert_eq!(ready["auth_refresh_failures"], 0);
    assert!(ready["auth_snapshot_age_seconds"].as_f64().unwrap() < 60.0);
    assert_eq!(http_get(addr, "/nope").0, 404);

    // A cluster nobody answers for makes the gateway unready.
    let gw = GatewayConfig {
        metrics_addr: "127.0.0.1:0",
        extra: "[clusters.cluster2]\nbrokers = \"127.0.0.1:1\"\n",
        ..GatewayConfig::new(&db)
    }
    .start();
    let (status, body) = http_get(gw.metrics_addr(), "/readyz");
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false);
    assert_eq!(
        ready["clusters"],
        serde_json::json!({"cluster1": true, "cluster2": false})
    );
}

#[test]
fn info_is_laid_out_as_redis_does() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = Gateway::start(&db);

    let mut anonymous = gw.client();
    assert_eq!(
        anonymous.call(&["INFO"]),
        "-NOAUTH Authentication required.\r\n"
    );

    let mut publisher = gw.publisher(&dsn(&topic, "pub"));
    assert_eq!(publisher.call(&["SET", "k", "1"]), "+OK\r\n");
    let port = gw.addr.port().to_string();
    let info = |sections: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "--no-auth-warning"])
            .args(["-a", &dsn(&topic, "pub"), "INFO"])
            .args(sections)
            .output()
            .expect("redis-cli is installed (scripts/setup.sh)");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let all = info(&[]);
    let headers: Vec<&str> = all.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headers,
        [
            "# Server",
            "# Clients",
            "# Stats",
            "# Kafka",
            "# Consumers",
            "# Quota"
        ],
        "{all}"
    );
    // The app's own caps (none) and connections.
    assert_eq!(
        info(&["quota"]),
        "# Quota\r\nquota_records_per_sec:0\r\nquota_bytes_per_sec:0\r\nquota_connections:0\r\n\
         app_connections:2\r\napp_throttled_seconds:0.000\r\n"
    );
    let field = |text: &str, name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} in:\n{text}"))
            .trim_end()
            .to_owned()
    };
    assert_eq!(field(&all, "redis_mode"), "standalone");
    assert_eq!(field(&all, "tcp_port"), port);
    // The publisher above and redis-cli's own connection.
    assert_eq!(field(&all, "pub_clients"), "2");
    assert_eq!(field(&all, "produced_messages"), "1");
    assert_eq!(field(&all, "clusters"), "cluster1");
    assert_eq!(field(&all, "auth_refresh_failures"), "0");

    let kafka = info(&["kafka"]);
    assert!(kafka.starts_with("# Kafka\r\n"), "{kafka:?}");
    assert!(!kafka.contains("# Server"), "{kafka}");
    // redis-cli prints an empty bulk string as nothing at all.
    assert_eq!(info(&["nosuchsection"]), "", "an unknown section is empty");
    read_topic(&topic, 1, 1);
}

/// Secrets that must never appear in a log line, whatever happens to them.
const SECRETS: [&str; 3] = ["app_secret1", "S3cret-typo-7f2a", "S3cret-malformed-9c1e"];

#[test]
fn json_logs_never_carry_a_secret() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    // A grant for a topic that does not exist makes produces fail.
    db.grant_topic("no_such_topic_for_logs", 3);
    let gw = GatewayConfig {
        refresh_interval: "300ms",
        server: "produce_timeout = \"1s\"",
        extra: "[log]\nformat = \"json\"\n",
        ..GatewayConfig::new(&db)
    }
    .start();

    // Failed AUTHs: wrong secret, and a malformed string holding a secret.
    for dsn in [
        format!(
            "app_key1:{}@{}/topic={topic}&role=pub",
            SECRETS[1],
            group_of(&topic)
        ),
        format!("app_key1:{}@nowhere", SECRETS[2]),
    ] {
        let mut c = gw.client();
        let reply = c.call(&["AUTH", &dsn]);
        assert!(reply.starts_with('-'), "{reply}");
    }
    // A produce that fails.
    let mut failing = gw.publisher(&dsn("no_such_topic_for_logs", "pub"));
    let reply = failing.call(&["SET", "k", "v"]);
    assert!(reply.starts_with("-ERR kafka: "), "{reply}");
    // A grant revoked under a live connection.
    let mut revoked = gw.publisher(&dsn(&topic, "pub"));
    db.exec("UPDATE app SET app_secret = 'rotated' WHERE id = 1");
    assert_eq!(revoked.read_reply(), "-ERR credentials revoked\r\n");
    gw.wait_for_log("closing connection: credentials revoked")
        .expect("the revocation is logged");

    let log = gw.log();
    let mut lines = 0;
    for line in log.lines() {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["message"].is_string(),
            "{line}"
        );
        for secret in SECRETS {
            assert!(!line.contains(secret), "secret {secret} logged: {line}");
        }
        lines += 1;
    }
    assert!(lines >= 5, "the failures above were logged:\n{log}");
    assert!(log.contains("auth failed"), "{log}");
}

/// The Grafana dashboard in config/ queries only metrics the gateway
/// exports: every `databus_*` name in its expressions is a sample name on
/// /metrics, and every panel has a query.
#[test]
fn every_metric_the_dashboard_queries_exists() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../config/grafana-dashboard.json")).unwrap();
    let mut queried = std::collections::BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("databus_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    let db = TestDb::new();
    let gw = metrics_gateway(&db, "session_timeout = \"6s\"");
    // A produce and an AUTH, so that every family has samples.
    let mut p = gw.publisher(&common::seed_dsn("pub"));
    assert_eq!(p.call(&["PING"]), "+PONG\r\n");
    let (status, exposition) = http_get(gw.metrics_addr(), "/metrics");
    assert_eq!(status, 200);
    // Sample names, and the families declared (a family with no sample
    // yet, such as consumer lag with no subscriber or the quota families
    // with no capped app, is still there; a counter's samples are its name
    // and `_total`).
    let exported: std::collections::BTreeSet<String> = exposition
        .lines()
        .flat_map(|line| match line.strip_prefix("# TYPE ") {
            Some(declared) => match declared.split_once(' ') {
                Some((name, "counter")) => vec![name.to_owned(), format!("{name}_total")],
                Some((name, _)) => vec![name.to_owned()],
                None => vec![],
            },
            None if line.starts_with('#') => vec![],
            None => line
                .split(['{', ' '])
                .next()
                .map(str::to_owned)
                .into_iter()
                .collect(),
        })
        .collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n{exposition}"
    );
}
