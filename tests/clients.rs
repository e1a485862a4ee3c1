//! Real Redis clients in their default settings: redis-cli (the seed's
//! walkthrough), redis-py and the `redis` crate. Records are read back from Kafka.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{create_topic, dsn, read_topic, Gateway, TestDb};

fn values(topic: &str, count: usize) -> Vec<String> {
    read_topic(topic, 1, count)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
        .collect()
}

#[test]
fn redis_cli_runs_the_seed_walkthrough() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = Gateway::start(&db);
    let mut cli = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &gw.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli is installed (scripts/setup.sh)");
    // As typed at the redis-cli prompt in the seed's walkthrough.
    let script = format!("auth {}\nping\nset x '\"xx\"'\n", dsn(&topic, "pub"));
    cli.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "OK\nPONG\nOK\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = read_topic(&topic, 1, 1);
    assert_eq!(records[0].key.as_deref(), Some(&b"x"[..]));
    assert_eq!(records[0].value.as_deref(), Some(&b"\"xx\""[..]));
}

#[test]
fn redis_cli_with_dash_a_and_user() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = Gateway::start(&db);
    let port = gw.addr.port().to_string();
    let full = dsn(&topic, "pub");
    let (user, rest) = full.split_once(':').unwrap();
    for args in [
        vec!["-a", full.as_str()],
        vec!["--user", user, "--pass", rest],
    ] {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "--no-auth-warning"])
            .args(&args)
            .args(["set", "k", "\"v\""])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n", "{args:?}");
    }
    assert_eq!(values(&topic, 2), ["\"v\"", "\"v\""]);
}

#[test]
fn redis_py_in_its_default_settings() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = Gateway::start(&db);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/redis_py_publish.py"
    );
    let out = Command::new("python3")
        .args([script, &gw.addr.port().to_string(), &dsn(&topic, "pub")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ping True\nset True\nset True\nset True\nauth invalid key, secret, group or topic\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        values(&topic, 3),
        ["\"from-password\"", "\"from-username\"", "\"from-resp2\""]
    );
}

#[test]
fn the_redis_crate_in_its_default_settings() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = Gateway::start(&db);
    let full = dsn(&topic, "pub");
    let (user, rest) = full.split_once(':').unwrap();
    let connect = |username: Option<&str>, password: &str| {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp("127.0.0.1".into(), gw.addr.port()),
            redis: redis::RedisConnectionInfo {
                username: username.map(Into::into),
                password: Some(password.into()),
                ..Default::default()
            },
        };
        redis::Client::open(info).unwrap().get_connection()
    };
    let mut conn = connect(None, &full).unwrap();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let () = redis::cmd("SET")
        .arg("rs")
        .arg("\"one\"")
        .query(&mut conn)
        .unwrap();
    let mut conn = connect(Some(user), rest).unwrap();
    let () = redis::cmd("SET")
        .arg("rs")
        .arg("\"two\"")
        .query(&mut conn)
        .unwrap();
    let err = connect(None, &full.replace("app_secret1", "nope"))
        .err()
        .unwrap();
    // Before the gateway answered commands pipelined behind a failed AUTH, this
    // was "unexpected end of file".
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
    assert_eq!(values(&topic, 2), ["\"one\"", "\"two\""]);
}
