//! Connections served in-process: the real reader, outbox and writer over a
//! loopback socket, with fake session handles (no broker, no database). Each
//! test runs on a glommio executor of its own, as a shard would.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::connection;
use super::shard::ShardContext;
use crate::clients::Clients;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::session::fakes::{self, FakeBackend, Shared};

const PUB: &str = "app1:secret1@group1/topic=topic1&role=pub";

/// The longest any test waits for a reply or a close; generous for a loaded
/// machine, since everything here answers in microseconds.
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    world: Shared,
    metrics: Metrics,
}

/// Serves one connection with `[server]` set by `server_toml` and runs
/// `client` against it; returns what the fakes saw.
fn serve_one<F, Fut>(server_toml: &str, client: F) -> Setup
where
    F: FnOnce(TcpStream) -> Fut,
    Fut: Future<Output = ()>,
{
    let config = Config::parse(&format!(
        "[auth]\nmysql_url = \"mysql://root@127.0.0.1:1/db\"\n\
         [server]\n{server_toml}\n\
         [clusters.c1]\nbrokers = \"127.0.0.1:1\"\n"
    ))
    .expect("a valid test config");
    let world = Shared::default();
    let metrics = Metrics::new(1);
    let clients = Arc::new(Clients::new(10));
    let sessions = fakes::handles(&world, metrics.for_shard(0), Arc::clone(&clients));
    let shard = Rc::new(ShardContext::<FakeBackend> {
        index: 0,
        server: config.server.clone(),
        sessions: Rc::new(sessions),
        clients,
        shutdown: tokio::sync::watch::channel(false).1,
    });
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("a glommio executor (io_uring, RLIMIT_MEMLOCK >= 512 KiB)")
        .run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = glommio::spawn_local(async move {
                let stream = listener.accept().await.unwrap();
                let peer = stream.peer_addr().unwrap();
                connection::serve(stream, peer, shard).await;
            });
            let stream = TcpStream::connect(addr).await.unwrap();
            bounded(client(stream)).await;
            bounded(server).await;
        });
    Setup { world, metrics }
}

async fn bounded<T>(work: impl Future<Output = T>) -> T {
    futures_lite::future::or(work, async {
        glommio::timer::sleep(WAIT).await;
        panic!("not done within {WAIT:?}");
    })
    .await
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Everything the gateway writes until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until exactly `expected.len()` bytes came, and checks them.
async fn expect(stream: &mut TcpStream, expected: &str) {
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[test]
fn a_pipeline_is_answered_in_order_and_produced() {
    let mut wire = b"PING\r\n".to_vec();
    for args in [
        &["AUTH", PUB][..],
        &["SET", "k1", "v1"],
        &["ECHO", "between"],
        &["SET", "k2", "v2"],
        &["QUIT"],
    ] {
        wire.extend_from_slice(&encode(args));
    }
    let sent = wire.len() as u64;
    let seen = serve_one("", |mut c| async move {
        c.write_all(&wire).await.unwrap();
        assert_eq!(
            read_to_close(&mut c).await,
            "+PONG\r\n+OK\r\n+OK\r\n$7\r\nbetween\r\n+OK\r\n+OK\r\n"
        );
    });
    let world = seen.world.borrow();
    let values: Vec<&[u8]> = world.produced.iter().map(|r| &r.value[..]).collect();
    assert_eq!(values, [&b"v1"[..], b"v2"]);
    let t = seen.metrics.totals();
    assert_eq!(t.commands_processed(), 6);
    assert_eq!(t.bytes_in, sent);
}

#[test]
fn an_argument_over_max_bulk_len_is_a_protocol_error_that_closes() {
    serve_one(
        "max_bulk_len = 1024\nmax_value_bytes = 1024",
        |mut c| async move {
            c.write_all(b"*2\r\n$4\r\nECHO\r\n$1025\r\n").await.unwrap();
            assert_eq!(
                read_to_close(&mut c).await,
                "-ERR Protocol error: invalid bulk length\r\n"
            );
        },
    );
}

#[test]
fn too_many_arguments_are_a_protocol_error_that_closes() {
    serve_one("max_args = 4", |mut c| async move {
        c.write_all(b"*5\r\n").await.unwrap();
        assert_eq!(
            read_to_close(&mut c).await,
            "-ERR Protocol error: too many arguments\r\n"
        );
    });
}

#[test]
fn what_was_pipelined_behind_a_failed_auth_is_refused_then_closed() {
    let mut wire = encode(&["AUTH", "app1:wrong@group1/topic=topic1&role=pub"]);
    wire.extend_from_slice(&encode(&["PING"]));
    wire.extend_from_slice(&encode(&["SET", "k", "v"]));
    let seen = serve_one("", |mut c| async move {
        c.write_all(&wire).await.unwrap();
        assert_eq!(
            read_to_close(&mut c).await,
            "-WRONGPASS invalid key, secret, group or topic\r\n\
             -NOAUTH Authentication required.\r\n\
             -NOAUTH Authentication required.\r\n"
        );
    });
    assert!(seen.world.borrow().produced.is_empty());
}

#[test]
fn the_auth_timeout_holds_from_connect() {
    serve_one("auth_timeout = \"200ms\"", |mut c| async move {
        c.write_all(b"PING\r\n").await.unwrap();
        expect(&mut c, "+PONG\r\n").await;
        assert_eq!(read_to_close(&mut c).await, "-ERR auth timeout\r\n");
    });
}

#[test]
fn a_client_that_reads_nothing_stops_being_read_at_max_pipeline() {
    // 2,000 PINGs sent at once; the gateway answers at most max_pipeline (4)
    // before the writer must hand replies to the socket. The client reads
    // them all in the end: credits slow the reader, they lose nothing.
    let mut wire = Vec::new();
    for _ in 0..2_000 {
        wire.extend_from_slice(b"PING\r\n");
    }
    wire.extend_from_slice(b"QUIT\r\n");
    serve_one("max_pipeline = 4", |mut c| async move {
        c.write_all(&wire).await.unwrap();
        let replies = read_to_close(&mut c).await;
        assert_eq!(replies.len(), 2_000 * "+PONG\r\n".len() + "+OK\r\n".len());
        assert!(replies.ends_with("+PONG\r\n+OK\r\n"));
    });
}

#[test]
fn a_client_that_authenticated_is_not_held_to_the_auth_timeout() {
    // AUTH, then 32 MB of ECHO replies (more than loopback socket buffers
    // hold) the client does not read for longer than auth_timeout: the
    // gateway waits on the client (write side full), and must judge it by
    // the idle timeout now, not the auth timeout.
    const ECHOES: usize = 2_000;
    let payload = "e".repeat(16 * 1024);
    let mut wire = encode(&["AUTH", PUB]);
    for _ in 0..ECHOES {
        wire.extend_from_slice(&encode(&["ECHO", &payload]));
    }
    wire.extend_from_slice(&encode(&["QUIT"]));
    serve_one("auth_timeout = \"200ms\"", |c| async move {
        let (mut reader, mut writer) = futures_lite::io::split(c);
        let write = async { writer.write_all(&wire).await.unwrap() };
        let read = async {
            // The scenario itself: a client busy elsewhere for a second.
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), got) = futures_lite::future::zip(write, read).await;
        let echo = format!("${}\r\n{payload}\r\n", payload.len());
        assert_eq!(
            got.len(),
            5 + ECHOES * echo.len() + 5,
            "every reply, then +OK"
        );
        assert!(got.starts_with(b"+OK\r\n$16384\r\n"));
        assert!(got.ends_with(b"\r\n+OK\r\n"));
    });
}
