//! Start-up failures are clear and non-zero (config.md, protocol.md §6).

mod common;

use common::{run_gateway_to_exit, GatewayConfig, TestDb};

#[test]
fn unknown_keys_and_bad_values_stop_the_start() {
    let db = TestDb::new();
    let good = GatewayConfig::new(&db).toml();
    let (status, out) =
        run_gateway_to_exit(&good.replace("[server]", "[server]\nmax_conections = 5"));
    assert!(!status.success());
    assert!(out.contains("max_conections"), "{out}");
    let (status, out) =
        run_gateway_to_exit(&good.replace("[server]", "[server]\nauth_timeout = \"soon\""));
    assert!(!status.success());
    assert!(out.contains("auth_timeout"), "{out}");
}

#[test]
fn unreachable_mysql_stops_the_start_with_a_clear_message() {
    let db = TestDb::new();
    let toml = GatewayConfig::new(&db)
        .toml()
        .replace(&db.url(), "mysql://root:topsecret@127.0.0.1:1/databus_db");
    let (status, out) = run_gateway_to_exit(&toml);
    assert!(!status.success());
    assert!(
        out.contains("cannot load auth data from MySQL at mysql://root:***@127.0.0.1:1/databus_db"),
        "{out}"
    );
    assert!(!out.contains("topsecret"), "{out}");
}

#[test]
fn too_low_memlock_limit_stops_the_start_with_what_to_do() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("databus.toml");
    std::fs::write(&path, GatewayConfig::new(&db).toml()).unwrap();
    // `ulimit -l` without -S/-H lowers both limits, so the gateway cannot raise
    // the soft one itself.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -l 256 && exec '{}' --config '{}'",
            env!("CARGO_BIN_EXE_databus"),
            path.display()
        ))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("RLIMIT_MEMLOCK is 256 KiB, but io_uring (glommio) needs at least 512 KiB"),
        "{text}"
    );
    assert!(text.contains("ulimit -l"), "{text}");
}

/// Too few descriptors for max_connections and max_subscribers: the start is
/// refused, saying what to change, rather than a gateway that goes silent
/// once they run out. With enough, the soft limit is raised as needed.
#[test]
fn too_low_descriptor_limit_stops_the_start_with_what_to_do() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("databus.toml");
    let config = GatewayConfig {
        server: "max_connections = 10000\nmax_subscribers = 500",
        ..GatewayConfig::new(&db)
    };
    std::fs::write(&path, config.toml()).unwrap();
    let run = |limits: &str| {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{limits} && exec timeout 10 '{}' --config '{}'",
                env!("CARGO_BIN_EXE_databus"),
                path.display()
            ))
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run("ulimit -n 1024");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("RLIMIT_NOFILE allows 1024 descriptors, but server.max_connections (10000)"),
        "{text}"
    );
    assert!(text.contains("ulimit -Hn"), "{text}");
    // A soft limit below the need and a hard one above (this test process's
    // own hard limit, or 16,384: the defaults need about 15,300): raised, and
    // it starts (timeout ends it).
    let out =
        run("ulimit -Hn $(( $(ulimit -Hn) > 16384 ? $(ulimit -Hn) : 16384 )) && ulimit -Sn 1024");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("raised RLIMIT_NOFILE"), "{text}");
    assert!(text.contains("databus ready on"), "{text}");
}
