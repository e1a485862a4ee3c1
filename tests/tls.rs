//! TLS for clients (`[server.tls]`): redis-cli `--tls` and redis-py
//! `ssl=True` publish through the TLS listener while the plaintext one keeps
//! serving; records are read back from Kafka.

mod common;

use std::path::Path;
use std::process::Command;

use common::{create_topic, dsn, read_topic, run_gateway_to_exit, Gateway, GatewayConfig, TestDb};

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files in `dir`.
fn certificate(dir: &Path) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

fn tls_gateway(db: &TestDb, cert: &str, key: &str) -> Gateway {
    GatewayConfig {
        extra: &format!(
            "[server.tls]\naddr = \"127.0.0.1:0\"\ncert = \"{cert}\"\nkey = \"{key}\"\n"
        ),
        ..GatewayConfig::new(db)
    }
    .start()
}

#[test]
fn redis_cli_and_redis_py_publish_over_tls_beside_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = tls_gateway(&db, &cert, &key);
    let tls_port = gw.tls_addr().port().to_string();

    let out = Command::new("redis-cli")
        .args([
            "--tls",
            "--cacert",
            &cert,
            "-h",
            "127.0.0.1",
            "-p",
            &tls_port,
        ])
        .args(["--no-auth-warning", "-a", &dsn(&topic, "pub")])
        .args(["SET", "cli", "\"over tls\""])
        .output()
        .expect("redis-cli is installed (scripts/setup.sh)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "OK\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let script = "import sys, redis\n\
        r = redis.Redis(host='127.0.0.1', port=int(sys.argv[1]), password=sys.argv[2],\n\
                        ssl=True, ssl_ca_certs=sys.argv[3])\n\
        print(r.set('py', '\"py over tls\"'))\n";
    let out = Command::new("python3")
        .args(["-c", script, &tls_port, &dsn(&topic, "pub"), &cert])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "True\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The plaintext listener serves at the same time.
    let mut plain = gw.publisher(&dsn(&topic, "pub"));
    assert_eq!(plain.call(&["SET", "plain", "\"plain\""]), "+OK\r\n");

    let mut values: Vec<(Vec<u8>, Vec<u8>)> = read_topic(&topic, 1, 3)
        .into_iter()
        .map(|r| (r.key.unwrap(), r.value.unwrap()))
        .collect();
    values.sort();
    assert_eq!(
        values,
        [
            (b"cli".to_vec(), b"\"over tls\"".to_vec()),
            (b"plain".to_vec(), b"\"plain\"".to_vec()),
            (b"py".to_vec(), b"\"py over tls\"".to_vec()),
        ]
    );
}

#[test]
fn plaintext_on_the_tls_port_is_closed_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let db = TestDb::new();
    let gw = tls_gateway(&db, &cert, &key);
    let mut c = common::Client::connect(gw.tls_addr());
    // Not a TLS ClientHello: the handshake fails and the connection closes;
    // no RESP reply ever comes from the TLS port in the clear.
    c.send(b"PING\r\n");
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c.stream, &mut rest);
    // At most a TLS alert record (content type 21) before the close.
    assert!(rest.is_empty() || rest[0] == 21, "{rest:?}");
}

#[test]
fn a_bad_key_file_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(dir.path());
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a key").unwrap();
    let db = TestDb::new();
    let toml = GatewayConfig {
        extra: &format!(
            "[server.tls]\naddr = \"127.0.0.1:0\"\ncert = \"{cert}\"\nkey = \"{}\"\n",
            bogus.display()
        ),
        ..GatewayConfig::new(&db)
    }
    .toml();
    let (status, output) = run_gateway_to_exit(&toml);
    assert!(!status.success());
    assert!(output.contains("server.tls.key"), "{output}");
    assert!(output.contains("bogus.pem"), "{output}");
}
