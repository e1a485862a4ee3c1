//! Sessions driven in-process with fake handles: no broker, no database, no
//! socket. Each test sends parsed commands and checks the exact RESP bytes
//! of the replies, what reached the fake producer or member, and the counters.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::fakes::{
    self, app, fake_record, grant, snapshot, FakeBackend, FakeBatch, Shared, MAX_AUTH_FAILURES,
};
use super::{Handles, Reply, Session, Step, Then};
use crate::auth::snapshot::{OP_PUBLISH, OP_SUBSCRIBE};
use crate::clients::Clients;
use crate::command::CommandKind;
use crate::message::{Encoding, Fetched};
use crate::metrics::{AuthOutcome, Metrics};
use crate::resp::Command;

const PUB: &str = "app1:secret1@group1/topic=topic1&role=pub";
const SUB: &str = "app1:secret1@group1/topic=topic1&role=sub";

struct Fixture {
    world: Shared,
    handles: Rc<Handles<FakeBackend>>,
    metrics: Metrics,
}

impl Fixture {
    fn new() -> Fixture {
        let world = Shared::default();
        let metrics = Metrics::new(1);
        let clients = Arc::new(Clients::new(100));
        let handles = Rc::new(fakes::handles(&world, metrics.for_shard(0), clients));
        Fixture {
            world,
            handles,
            metrics,
        }
    }

    fn session(&self) -> Session<FakeBackend> {
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        Session::new(Rc::clone(&self.handles), peer, 0)
    }

    fn authenticated(&self, dsn: &str) -> Session<FakeBackend> {
        let mut s = self.session();
        assert_eq!(call(&mut s, &["AUTH", dsn]), "+OK\r\n");
        s
    }
}

fn command(args: &[&str]) -> Command {
    let mut wire = BytesMut::new();
    wire.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        wire.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    let mut parser = crate::resp::Parser::new(crate::resp::Limits::default());
    parser.parse(&mut wire).unwrap().unwrap()
}

/// Runs a command; returns the whole step, its reply resolved.
fn step(session: &mut Session<FakeBackend>, args: &[&str]) -> (String, Then) {
    let Step { reply, then } = session.handle(command(args));
    let reply = resolve(reply);
    let mut out = BytesMut::new();
    reply.encode(&mut out, session.resp3());
    (String::from_utf8_lossy(&out).into_owned(), then)
}

/// Runs a command that leaves the connection open; returns its reply.
fn call(session: &mut Session<FakeBackend>, args: &[&str]) -> String {
    let (reply, then) = step(session, args);
    assert_eq!(then, Then::Continue, "{args:?} -> {reply}");
    reply
}

/// Awaits a deferred reply. The fakes answer at once, so this never waits
/// (a produce's timer, glommio's, is tested on an executor of its own).
fn resolve(reply: Reply) -> Reply {
    match reply {
        Reply::Deferred(work) => futures_lite::future::block_on(work),
        ready => ready,
    }
}

#[test]
fn setup_chatter_is_answered_before_auth() {
    let f = Fixture::new();
    let mut s = f.session();
    assert_eq!(call(&mut s, &["PING"]), "+PONG\r\n");
    assert_eq!(call(&mut s, &["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(call(&mut s, &["ECHO", "x"]), "$1\r\nx\r\n");
    assert_eq!(call(&mut s, &["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        call(&mut s, &["SELECT", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(call(&mut s, &["COMMAND", "COUNT"]), ":0\r\n");
    assert_eq!(call(&mut s, &["COMMAND", "DOCS"]), "*0\r\n");
    assert_eq!(call(&mut s, &["CLIENT", "SETNAME", "w1"]), "+OK\r\n");
    assert_eq!(call(&mut s, &["CLIENT", "GETNAME"]), "$2\r\nw1\r\n");
    assert_eq!(call(&mut s, &["CLIENT", "ID"]), format!(":{}\r\n", s.id()));
    assert_eq!(
        call(&mut s, &["CLIENT", "SETINFO", "lib-name", "x"]),
        "+OK\r\n"
    );
    for denied in [
        &["SET", "k", "v"][..],
        &["INFO"],
        &["MGET"],
        &["FLUSHALL"],
        &["CLIENT", "LIST"],
    ] {
        assert_eq!(
            call(&mut s, denied),
            "-NOAUTH Authentication required.\r\n",
            "{denied:?}"
        );
    }
    assert_eq!(step(&mut s, &["QUIT"]), ("+OK\r\n".into(), Then::Close));
}

#[test]
fn arity_and_role_come_from_the_command_table() {
    let f = Fixture::new();
    let mut p = f.authenticated(PUB);
    let mut s = f.authenticated(SUB);
    let arity = |name: &str| format!("-ERR wrong number of arguments for '{name}' command\r\n");
    assert_eq!(call(&mut p, &["PING", "a", "b"]), arity("ping"));
    assert_eq!(call(&mut p, &["ECHO"]), arity("echo"));
    assert_eq!(call(&mut p, &["set", "k"]), arity("set"));
    assert_eq!(call(&mut p, &["HSET", "k", "{}"]), arity("hset"));
    assert_eq!(call(&mut s, &["SET", "0"]), arity("set"));
    assert_eq!(call(&mut p, &["CLIENT"]), arity("client"));
    assert_eq!(
        call(&mut p, &["CLIENT", "GETNAME", "x"]),
        arity("client|getname")
    );
    assert_eq!(
        call(&mut p, &["mget"]),
        "-ERR 'mget' is not allowed for a pub connection\r\n"
    );
    assert_eq!(
        call(&mut s, &["HSET", "k", "{}", "v"]),
        "-ERR 'hset' is not allowed for a sub connection\r\n"
    );
    assert_eq!(
        call(&mut p, &["FLUSHALL"]),
        "-ERR unknown command 'FLUSHALL'\r\n"
    );
    assert_eq!(
        call(&mut p, &["CLIENT", "KILL"]),
        "-ERR unknown subcommand 'KILL'. Try CLIENT HELP.\r\n"
    );
    assert_eq!(
        call(&mut p, &["INFO", "a", "b"]),
        "$45\r\n# Fake\r\nsections:2\r\nrecords_per_sec:Some(0)\r\n\r\n"
    );
    // Every command was counted under its own label, errors apart.
    let t = f.metrics.totals();
    assert_eq!(t.commands(CommandKind::Set, true), 2);
    assert_eq!(t.commands(CommandKind::Mget, true), 1);
    assert_eq!(t.commands(CommandKind::Other, true), 1);
    assert_eq!(t.commands(CommandKind::Info, false), 1);
    assert_eq!(t.commands(CommandKind::Auth, false), 2);
}

#[test]
fn a_publisher_produces_to_its_topic_with_its_color() {
    let f = Fixture::new();
    let mut p = f.authenticated("app1:secret1@group1/topic=topic1&role=pub&color=eu");
    assert_eq!(call(&mut p, &["SET", "k1", "v1"]), "+OK\r\n");
    assert_eq!(
        call(&mut p, &["HSET", "k2", r#"{"a":"b"}"#, "v2"]),
        "+OK\r\n"
    );
    assert_eq!(
        call(&mut p, &["HSET", "k3", "not json", "v3"]),
        "-ERR invalid metadata: expected a JSON object of strings or a protobuf Header\r\n"
    );
    assert_eq!(
        call(&mut p, &["SET", "k4", "seventeen bytes!!"]),
        "-ERR value exceeds max_value_bytes\r\n"
    );
    let world = f.world.borrow();
    let produced: Vec<(&str, &[u8], &[u8], &str)> = world
        .produced
        .iter()
        .map(|r| (r.topic.as_str(), &r.key[..], &r.value[..], r.color.as_str()))
        .collect();
    assert_eq!(
        produced,
        [
            ("topic1", &b"k1"[..], &b"v1"[..], "eu"),
            ("topic1", b"k2", b"v2", "eu")
        ]
    );
    assert_eq!(world.produced[0].cluster, "c1");
    assert_eq!(world.produced[0].metadata, None);
    // {"a":"b"} as a protobuf Header: map entry 1 { key "a", value "b" }.
    assert_eq!(
        world.produced[1].metadata.as_deref(),
        Some(&[0x0a, 6, 0x0a, 1, b'a', 0x12, 1, b'b'][..])
    );
    let t = f.metrics.totals();
    assert_eq!((t.produces(), t.produce_errors), (2, 0));
}

#[test]
fn a_produce_the_broker_never_acknowledges_is_answered_at_produce_timeout() {
    let f = Fixture::new();
    f.world.borrow_mut().broker_silent = true;
    let mut p = f.authenticated(PUB);
    // A shard's executor: the produce's timer is glommio's. Bounded by the
    // fixture's 50 ms produce_timeout.
    let reply = glommio::LocalExecutorBuilder::default()
        .make()
        .expect("a glommio executor (io_uring, RLIMIT_MEMLOCK >= 512 KiB)")
        .run(async {
            let Step { reply, then } = p.handle(command(&["SET", "k", "v"]));
            assert_eq!(then, Then::Continue);
            let Reply::Deferred(work) = reply else {
                panic!("answered before the broker: {reply:?}");
            };
            work.await
        });
    assert_eq!(
        format!("{reply:?}"),
        "\"-ERR kafka: not acknowledged within 50ms\\r\\n\""
    );
    let t = f.metrics.totals();
    assert_eq!((t.produces(), t.produce_errors), (1, 1));
    assert_eq!(t.commands(CommandKind::Set, true), 1);
}

#[test]
fn a_subscriber_fetches_and_commits_through_its_member() {
    let f = Fixture::new();
    f.world.borrow_mut().batches = vec![
        FakeBatch::Records(vec![("m1", ""), ("m2", "us"), ("m3", "eu")]),
        FakeBatch::Records(vec![("m4", "eu")]),
        FakeBatch::Answer(Fetched::TooManyConsumers),
    ];
    let mut s = f.authenticated("app1:secret1@group1/topic=topic1&role=sub&color=eu");
    assert_eq!(
        f.world.borrow().joined,
        [("group1-eu".into(), "topic1".into())]
    );
    assert_eq!(call(&mut s, &["SET", "2", "41"]), "+OK\r\n");
    assert_eq!(
        call(&mut s, &["SET", "-1", "41"]),
        "-ERR commit offset params error\r\n"
    );
    assert_eq!(
        call(&mut s, &["SET", "2", "x"]),
        "-ERR commit offset params error\r\n"
    );
    // Colors (protocol.md §5): m1 has none, m2 is another color's.
    let bulk = |b: Bytes| format!("${}\r\n{}\r\n", b.len(), String::from_utf8_lossy(&b));
    let pb = |value, color, offset| {
        fake_record(value, color, offset)
            .encode(Encoding::Protobuf)
            .0
    };
    assert_eq!(
        call(&mut s, &["MGET", "pb"]),
        format!("*2\r\n{}{}", bulk(pb("m1", "", 0)), bulk(pb("m3", "eu", 2)))
    );
    assert_eq!(
        call(&mut s, &["MGET"]),
        "*1\r\n$95\r\n{\"key\":\"\",\"value\":\"m4\",\"topic\":\"topic1\",\"partition\":0,\"offset\":0,\"timestamp\":0,\"metadata\":null}\r\n"
    );
    // A member left without partitions: the error, then the connection closes
    // (the writer closes after an ErrorThenClose reply).
    assert_eq!(
        call(&mut s, &["MGET"]),
        "-ERR too many consumers for topic topic1\r\n"
    );
    let world = f.world.borrow();
    assert_eq!(world.committed, [(2, 41)]);
}

#[test]
fn a_failed_auth_refuses_the_rest_and_closes_and_counts_its_reason() {
    let f = Fixture::new();
    let cases = [
        (
            "app1:wrong@group1/topic=topic1&role=pub",
            "-WRONGPASS invalid key, secret, group or topic\r\n",
            AuthOutcome::WrongSecret,
        ),
        (
            "nobody:x@group1/topic=topic1&role=pub",
            "-WRONGPASS invalid key, secret, group or topic\r\n",
            AuthOutcome::UnknownKey,
        ),
        (
            "app2:secret2@group2/topic=topic1&role=sub",
            "-NOPERM group group2 may not subscribe\r\n",
            AuthOutcome::NoPermission,
        ),
        (
            "app1:secret1@group1/topic=topic1&role=admin",
            "-ERR role must be pub or sub\r\n",
            AuthOutcome::BadRole,
        ),
        (
            "garbage",
            "-ERR invalid auth string: expected key:secret@group/topic=T&role=pub|sub\r\n",
            AuthOutcome::Malformed,
        ),
        (
            "app3:secret3@group3/topic=topic1&role=pub",
            "-ERR cluster nowhere is not configured\r\n",
            AuthOutcome::ClusterNotConfigured,
        ),
    ];
    for (dsn, reply, outcome) in cases {
        let mut s = f.session();
        assert_eq!(
            step(&mut s, &["AUTH", dsn]),
            (reply.into(), Then::RefuseRestAndClose),
            "{dsn}"
        );
        assert_eq!(f.metrics.totals().auth(outcome), 1, "{dsn}");
        assert_eq!(s.role(), None);
    }
}

#[test]
fn auth_forms_and_a_second_auth() {
    let f = Fixture::new();
    // The username/password form, and a password given as user default's.
    let mut a = f.session();
    assert_eq!(
        call(
            &mut a,
            &["AUTH", "app1", "secret1@group1/topic=topic1&role=pub"]
        ),
        "+OK\r\n"
    );
    let mut b = f.session();
    assert_eq!(call(&mut b, &["AUTH", "default", PUB]), "+OK\r\n");
    // The same AUTH again is fine; another one is refused and changes nothing.
    assert_eq!(
        call(
            &mut a,
            &["AUTH", "app1:secret1@group1/topic=topic1&role=pub"]
        ),
        "+OK\r\n"
    );
    assert_eq!(
        call(&mut a, &["AUTH", SUB]),
        "-ERR already authenticated\r\n"
    );
    assert_eq!(a.role(), Some(crate::auth::Role::Pub));
    assert_eq!(
        call(&mut a, &["AUTH", "a", "b", "c"]),
        "-ERR wrong number of arguments for 'auth' command\r\n"
    );
}

#[test]
fn hello_switches_to_resp3_and_may_authenticate() {
    let f = Fixture::new();
    let mut s = f.session();
    assert_eq!(
        call(&mut s, &["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        call(&mut s, &["HELLO", "x"]),
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    let long_option = "O".repeat(10_000);
    assert_eq!(
        call(&mut s, &["HELLO", "3", &long_option]),
        format!(
            "-ERR Syntax error in HELLO option '{}'\r\n",
            "O".repeat(128)
        )
    );
    assert!(!s.resp3(), "a refused HELLO changes nothing");
    let hello = call(
        &mut s,
        &[
            "HELLO",
            "3",
            "AUTH",
            "app1",
            "secret1@group1/topic=topic1&role=pub",
            "SETNAME",
            "n",
        ],
    );
    assert!(
        hello.starts_with("%7\r\n$6\r\nserver\r\n$7\r\ndatabus\r\n"),
        "{hello}"
    );
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert!(s.resp3());
    assert_eq!(s.role(), Some(crate::auth::Role::Pub));
    assert_eq!(call(&mut s, &["CLIENT", "GETNAME"]), "$1\r\nn\r\n");
    assert_eq!(call(&mut s, &["CLIENT", "SETNAME", ""]), "+OK\r\n");
    // RESP3's null.
    assert_eq!(call(&mut s, &["CLIENT", "GETNAME"]), "_\r\n");
    // A failed AUTH inside HELLO is a failed AUTH.
    let mut t = f.session();
    let (reply, then) = step(
        &mut t,
        &[
            "HELLO",
            "3",
            "AUTH",
            "app1",
            "bad@group1/topic=topic1&role=pub",
        ],
    );
    assert_eq!(
        (reply.as_str(), then),
        (
            "-WRONGPASS invalid key, secret, group or topic\r\n",
            Then::RefuseRestAndClose
        )
    );
    assert!(!t.resp3());
}

#[test]
fn client_list_shows_this_apps_connections_only() {
    let f = Fixture::new();
    let mut a1 = f.authenticated(PUB);
    let a2 = f.authenticated(SUB);
    let _other_app = f.authenticated("app2:secret2@group2/topic=topic1&role=pub");
    let _anonymous = f.session();
    call(&mut a1, &["SET", "k", "v"]);
    let list = call(&mut a1, &["CLIENT", "LIST"]);
    let body = list.split_once("\r\n").unwrap().1;
    let lines: Vec<&str> = body.trim_end().lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with(&format!(
            "id={} addr=192.0.2.1:5000 name= age=0 idle=0 db=0 cmd=client ",
            a1.id()
        )),
        "{list}"
    );
    assert!(
        lines[0].ends_with(
            "role=pub key=app1 group=group1 topic=topic1 color= commands=3 shard=0 lag="
        ),
        "{list}"
    );
    assert!(lines[1].starts_with(&format!("id={} ", a2.id())), "{list}");
    assert!(lines[1].contains(" role=sub key=app1 "), "{list}");
    // The fake member keeps a lag of 7.
    assert!(lines[1].ends_with(" lag=7"), "{list}");
    let mine = call(&mut a1, &["CLIENT", "INFO"]);
    assert!(
        mine.contains(&format!("id={} ", a1.id())) && mine.matches("id=").count() == 1,
        "{mine}"
    );
}

#[test]
fn a_refresh_revokes_or_moves_a_connection() {
    let f = Fixture::new();
    let mut p = f.authenticated(PUB);
    let mut s = f.authenticated(SUB);
    let mut other = f.authenticated("app2:secret2@group2/topic=topic1&role=pub");
    // app1 moves to cluster c2; app2 loses its grant.
    f.handles.auth.publish(snapshot(
        vec![app(1, "app1", "c2"), app(2, "app2", "c1")],
        vec![grant(1, 1, "group1", "topic1", OP_PUBLISH | OP_SUBSCRIBE)],
    ));
    assert!(p.recheck().is_none(), "a publisher follows its app");
    assert_eq!(
        format!("{:?}", s.recheck().unwrap()),
        "\"-ERR cluster changed, reconnect\\r\\n\""
    );
    assert_eq!(
        format!("{:?}", other.recheck().unwrap()),
        "\"-ERR credentials revoked\\r\\n\""
    );
    assert_eq!(call(&mut p, &["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(f.world.borrow().produced[0].cluster, "c2");
}

#[test]
fn failed_auths_from_one_address_are_bounded() {
    let f = Fixture::new();
    for attempt in 0..MAX_AUTH_FAILURES {
        let mut s = f.session();
        let dsn = format!("app1:wrong{attempt}@group1/topic=topic1&role=pub");
        assert_eq!(
            step(&mut s, &["AUTH", &dsn]).0,
            "-WRONGPASS invalid key, secret, group or topic\r\n"
        );
    }
    let mut s = f.session();
    assert_eq!(
        step(&mut s, &["AUTH", PUB]),
        (
            "-ERR too many failed AUTH attempts from this address, retry later\r\n".into(),
            Then::RefuseRestAndClose
        )
    );
    assert_eq!(f.metrics.totals().auth(AuthOutcome::RateLimited), 1);
}

#[test]
fn connections_are_counted_by_role_and_uncounted_when_dropped() {
    let f = Fixture::new();
    let p = f.authenticated(PUB);
    let a = f.session();
    let t = f.metrics.totals();
    use crate::metrics::ConnectionRole as R;
    assert_eq!((t.connections(R::Anonymous), t.connections(R::Pub)), (1, 1));
    drop((p, a));
    let t = f.metrics.totals();
    assert_eq!((t.connections(R::Anonymous), t.connections(R::Pub)), (0, 0));
    assert_eq!(f.handles.clients.list(|_| true), "");
}

#[test]
fn client_names_follow_redis_rules_and_a_length_bound() {
    let f = Fixture::new();
    let mut s = f.session();
    let invalid = "-ERR Client names cannot contain spaces, newlines or special characters.\r\n";
    for bad in ["a b", "a\nb", "caf\u{e9}"] {
        assert_eq!(
            call(&mut s, &["CLIENT", "SETNAME", bad]),
            invalid,
            "{bad:?}"
        );
    }
    let long = "n".repeat(129);
    assert_eq!(
        call(&mut s, &["CLIENT", "SETNAME", &long]),
        "-ERR Client names are at most 128 bytes\r\n"
    );
    assert_eq!(
        call(&mut s, &["HELLO", "3", "SETNAME", "a b"]),
        invalid,
        "HELLO checks its SETNAME too"
    );
    assert!(!s.resp3(), "a refused HELLO changes nothing");
    assert_eq!(call(&mut s, &["CLIENT", "GETNAME"]), "$-1\r\n");
    assert_eq!(
        call(&mut s, &["CLIENT", "SETNAME", &"n".repeat(128)]),
        "+OK\r\n"
    );
}

#[test]
fn a_color_that_collides_is_refused_with_noperm() {
    let f = Fixture::new();
    f.handles.auth.publish(snapshot(
        vec![app(1, "app1", "c1"), app(2, "app2", "c1")],
        vec![
            grant(1, 1, "group1", "topic1", OP_PUBLISH | OP_SUBSCRIBE),
            grant(2, 2, "group1-eu", "topic1", OP_SUBSCRIBE),
        ],
    ));
    let mut s = f.session();
    assert_eq!(
        step(
            &mut s,
            &["AUTH", "app1:secret1@group1/topic=topic1&role=sub&color=eu"]
        ),
        (
            "-NOPERM color eu is not allowed for group group1\r\n".into(),
            Then::RefuseRestAndClose
        )
    );
    let mut s = f.session();
    assert_eq!(
        step(
            &mut s,
            &[
                "AUTH",
                "app1:secret1@group1/topic=topic1&role=sub&color=e%u"
            ]
        ),
        ("-ERR invalid color\r\n".into(), Then::RefuseRestAndClose)
    );
    assert!(f.world.borrow().joined.is_empty(), "no member was made");
    let t = f.metrics.totals();
    assert_eq!(t.auth(AuthOutcome::ColorNotAllowed), 1);
    assert_eq!(t.auth(AuthOutcome::BadColor), 1);
}

#[test]
fn a_commit_the_member_refuses_is_an_error_and_not_sent() {
    let f = Fixture::new();
    f.world.borrow_mut().undelivered = vec![(0, 5)];
    let mut s = f.authenticated(SUB);
    assert_eq!(
        call(&mut s, &["SET", "0", "5"]),
        "-ERR offset 5 of partition 0 was never delivered to this connection: nothing committed\r\n"
    );
    assert_eq!(call(&mut s, &["SET", "0", "4"]), "+OK\r\n");
    assert_eq!(f.world.borrow().committed, [(0, 4)]);
}

#[test]
fn an_apps_caps_limit_its_connections_and_pause_its_publishing() {
    let f = Fixture::new();
    let mut capped = app(1, "app1", "c1");
    capped.quota = crate::quota::QuotaLimits {
        records_per_sec: 10,
        bytes_per_sec: 0,
        connections: 2,
    };
    f.handles.auth.publish(snapshot(
        vec![capped, app(2, "app2", "c1")],
        vec![
            grant(1, 1, "group1", "topic1", OP_PUBLISH | OP_SUBSCRIBE),
            grant(2, 2, "group2", "topic1", OP_PUBLISH),
        ],
    ));
    let mut p = f.authenticated(PUB);
    let s = f.authenticated(SUB);
    // A third connection of app1 is refused; app2 is not capped.
    let mut third = f.session();
    assert_eq!(
        step(&mut third, &["AUTH", PUB]),
        (
            "-ERR max number of connections for this app reached (2)\r\n".into(),
            Then::RefuseRestAndClose
        )
    );
    assert_eq!(f.metrics.totals().auth(AuthOutcome::AppConnectionsFull), 1);
    let mut other = f.authenticated("app2:secret2@group2/topic=topic1&role=pub");
    // 10 records a second, 100 ms of burst: the first SET fits, the second
    // pauses reading (nothing refused, nothing dropped); app2 never pauses.
    assert_eq!(call(&mut p, &["SET", "k", "v"]), "+OK\r\n");
    assert!(p.has_room_to_read());
    assert_eq!(call(&mut p, &["SET", "k", "v"]), "+OK\r\n");
    assert!(p.is_paused() && !p.has_room_to_read());
    for _ in 0..100 {
        assert_eq!(call(&mut other, &["SET", "k", "v"]), "+OK\r\n");
    }
    assert!(!other.is_paused());
    assert_eq!(f.world.borrow().produced.len(), 102);
    // A closed connection gives its place back.
    drop(s);
    f.authenticated(SUB);
}
