//! Bad input and abuse (protocol.md §6): protocol errors answer once and close,
//! never crash the gateway, and other clients keep being served.

mod common;

use common::{Gateway, GatewayConfig, TestDb};

#[test]
fn protocol_errors_answer_and_close() {
    let db = TestDb::new();
    let gw = Gateway::with_server(&db, "max_args = 4\nmax_bulk_len = 1000000");
    let mut bystander = gw.client();
    let cases: [(&[u8], &str); 12] = [
        (b"*0\r\n", "empty multibulk"),
        (b"*-1\r\n", "invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*99999999999999999999\r\n", "invalid multibulk length"),
        (b"*5\r\n", "too many arguments"),
        // Before AUTH, redis-server's limits: 10 arguments of 16 KiB.
        (b"*11\r\n", "unauthenticated multibulk length"),
        (b"*1\r\n$16385\r\n", "unauthenticated bulk length"),
        (b"*1\r\n$1000001\r\n", "unauthenticated bulk length"),
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*1\r\n:5\r\n", "expected '$', got ':'"),
        (b"*1\r\n$4\r\nPINGxx", "missing CRLF after bulk data"),
        (b"echo \"unterminated\r\n", "unbalanced quotes in request"),
    ];
    for (input, what) in cases {
        let mut c = gw.client();
        c.send(input);
        assert_eq!(
            c.read_reply(),
            format!("-ERR Protocol error: {what}\r\n"),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        c.expect_closed();
    }
    // Once authenticated, the configured limits alone.
    let mut c = gw.publisher(&common::seed_dsn("pub"));
    c.send(b"*1\r\n$1000001\r\n");
    assert_eq!(
        c.read_reply(),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    c.expect_closed();
    // An inline line longer than 64 KiB without a newline.
    let mut c = gw.client();
    c.send(&vec![b'a'; 70 * 1024]);
    assert_eq!(
        c.read_reply(),
        "-ERR Protocol error: too big inline request\r\n"
    );
    c.expect_closed();

    assert_eq!(bystander.call(&["PING"]), "+PONG\r\n");
    assert_eq!(gw.client().call(&["PING"]), "+PONG\r\n");
}

#[test]
fn connections_past_max_connections_are_refused() {
    let db = TestDb::new();
    let gw = GatewayConfig {
        server: "max_connections = 2",
        shards: 2,
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut first = gw.client();
    let mut second = gw.client();
    assert_eq!(first.call(&["PING"]), "+PONG\r\n");
    assert_eq!(second.call(&["PING"]), "+PONG\r\n");
    let mut third = gw.client();
    assert_eq!(third.read_reply(), "-ERR max number of clients reached\r\n");
    third.expect_closed();
    // A slot frees when a client leaves.
    assert_eq!(first.call(&["QUIT"]), "+OK\r\n");
    first.expect_closed();
    gw.client_with_a_slot(&["PING"], "+PONG\r\n");
}

#[test]
fn an_idle_half_sent_command_is_closed_at_auth_timeout() {
    let db = TestDb::new();
    let gw = Gateway::with_server(&db, "auth_timeout = \"300ms\"");
    let mut c = gw.client();
    c.send(b"*2\r\n$4\r\nAUTH\r\n$10\r\nabc");
    assert_eq!(c.read_reply(), "-ERR auth timeout\r\n");
    c.expect_closed();
}
