//! The connection lifecycle against the real stack: every AUTH outcome, the
//! pre-auth chatter of client libraries, command errors and timeouts
//! (protocol.md §1, §2).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use common::{seed_dsn, Gateway, TestDb};

#[test]
fn every_auth_outcome() {
    let db = TestDb::new();
    db.add_app(2, "subapp", "s2", "cluster1");
    db.add_grant(2, "subonly", 1, "t2");
    db.add_app(3, "pubapp", "s3", "cluster1");
    db.add_grant(3, "pubonly", 2, "t3");
    db.add_app(4, "farapp", "s4", "nowhere");
    db.add_grant(4, "far", 3, "t4");
    let gw = Gateway::start(&db);

    let seed = "app_key1:app_secret1@group_name1/topic=test156";
    let wrongpass = "-WRONGPASS invalid key, secret, group or topic\r\n";
    let malformed = "-ERR invalid auth string: expected key:secret@group/topic=T&role=pub|sub\r\n";
    let closing = [
        ("garbage", malformed),
        ("k:s@g", malformed),
        ("app_key1:app_secret1@group_name1/role=pub", malformed),
        (
            "nokey:app_secret1@group_name1/topic=test156&role=pub",
            wrongpass,
        ),
        (
            "app_key1:wrong@group_name1/topic=test156&role=pub",
            wrongpass,
        ),
        (
            "app_key1:app_secret1@nogroup/topic=test156&role=pub",
            wrongpass,
        ),
        (
            "app_key1:app_secret1@group_name1/topic=other&role=pub",
            wrongpass,
        ),
        (
            &format!("{seed}&role=admin"),
            "-ERR role must be pub or sub\r\n",
        ),
        (
            "subapp:s2@subonly/topic=t2&role=pub",
            "-NOPERM group subonly may not publish\r\n",
        ),
        (
            "pubapp:s3@pubonly/topic=t3&role=sub",
            "-NOPERM group pubonly may not subscribe\r\n",
        ),
        (
            "farapp:s4@far/topic=t4&role=pub",
            "-ERR cluster nowhere is not configured\r\n",
        ),
    ];
    for (auth, want) in closing {
        let mut c = gw.client();
        assert_eq!(c.call(&["AUTH", auth]), want, "AUTH {auth}");
        c.expect_closed();
    }

    let mut publisher = gw.client();
    assert_eq!(
        publisher.call(&["AUTH", &format!("{seed}&role=pub")]),
        "+OK\r\n"
    );
    assert_eq!(
        publisher.call(&["AUTH", &format!("{seed}&role=pub")]),
        "+OK\r\n"
    );
    assert_eq!(
        publisher.call(&["AUTH", &format!("{seed}&role=sub")]),
        "-ERR already authenticated\r\n"
    );
    assert_eq!(publisher.call(&["PING"]), "+PONG\r\n");

    let mut subscriber = gw.client();
    assert_eq!(
        subscriber.call(&["AUTH", "subapp:s2@subonly/topic=t2&role=sub&color=red"]),
        "+OK\r\n"
    );
    // The two-argument form: AUTH <key> <rest> is AUTH <key>:<rest>.
    let mut two_args = gw.client();
    assert_eq!(
        two_args.call(&[
            "AUTH",
            "app_key1",
            "app_secret1@group_name1/topic=test156&role=pub"
        ]),
        "+OK\r\n"
    );
    // The log names the reason, never the secret. It reaches the test through
    // a pipe: wait for the line.
    assert!(gw.wait_for_log("wrong secret").is_some(), "{}", gw.log());
    let log = gw.log();
    assert!(
        !log.contains("app_secret1"),
        "a secret reached the log:\n{log}"
    );
}

#[test]
fn pre_auth_chatter_keeps_the_connection() {
    let db = TestDb::new();
    let gw = Gateway::start(&db);
    let mut c = gw.client();
    let noauth = "-NOAUTH Authentication required.\r\n";
    assert_eq!(c.call(&["PING"]), "+PONG\r\n");
    assert_eq!(c.call(&["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(c.call(&["ECHO", "x y"]), "$3\r\nx y\r\n");
    assert_eq!(c.call(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        c.call(&["SELECT", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(c.call(&["CLIENT", "SETNAME", "me"]), "+OK\r\n");
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), "$2\r\nme\r\n");
    assert_eq!(
        c.call(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
        "+OK\r\n"
    );
    assert!(c.call(&["CLIENT", "ID"]).starts_with(':'));
    assert_eq!(c.call(&["COMMAND", "DOCS"]), "*0\r\n");
    assert_eq!(c.call(&["COMMAND", "COUNT"]), ":0\r\n");
    assert_eq!(c.call(&["COMMAND"]), "*0\r\n");
    assert_eq!(
        c.call(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    // RESP3 (redis-py 8 asks for it by default): HELLO answers a map, and a
    // missing value is `_`; everything else the gateway sends is the same.
    let hello3 = c.call(&["HELLO", "3"]);
    assert!(
        hello3.starts_with("%7\r\n$6\r\nserver\r\n$7\r\ndatabus\r\n"),
        "{hello3}"
    );
    assert!(hello3.contains("$5\r\nproto\r\n:3\r\n"), "{hello3}");
    assert_eq!(c.call(&["CLIENT", "SETNAME", ""]), "+OK\r\n");
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), "_\r\n");
    let hello = c.call(&["HELLO", "2"]);
    assert!(
        hello.starts_with("*14\r\n$6\r\nserver\r\n$7\r\ndatabus\r\n$7\r\nversion\r\n"),
        "{hello}"
    );
    assert!(
        hello.contains("$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:"),
        "{hello}"
    );
    assert!(
        hello.ends_with("$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"),
        "{hello}"
    );
    // Anything else needs AUTH, and the connection stays open.
    assert_eq!(c.call(&["SET", "k", "v"]), noauth);
    assert_eq!(c.call(&["MGET", "pb"]), noauth);
    assert_eq!(c.call(&["INFO"]), noauth);
    assert_eq!(c.call(&["PING"]), "+PONG\r\n");
    // HELLO can authenticate too.
    assert!(c
        .call(&[
            "HELLO",
            "2",
            "AUTH",
            "app_key1",
            "app_secret1@group_name1/topic=test156&role=pub"
        ])
        .starts_with("*14\r\n"));
    // Authenticated now: the same AUTH again is fine, another one is not.
    assert_eq!(
        c.call(&[
            "AUTH",
            "app_key1:app_secret1@group_name1/topic=test156&role=pub"
        ]),
        "+OK\r\n"
    );
    assert_eq!(
        c.call(&["MGET"]),
        "-ERR 'mget' is not allowed for a pub connection\r\n"
    );
    assert_eq!(c.call(&["QUIT"]), "+OK\r\n");
    c.expect_closed();
}

#[test]
fn commands_pipelined_behind_a_failed_auth_are_refused_then_closed() {
    let db = TestDb::new();
    let gw = Gateway::start(&db);
    let mut c = gw.client();
    // What client libraries send on connect, in one write.
    let mut burst = common::encode(&[b"AUTH", b"app_key1:nope@group_name1/topic=test156&role=pub"]);
    burst.extend(common::encode(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"x"]));
    burst.extend(common::encode(&[b"SET", b"k", b"v"]));
    c.send(&burst);
    assert_eq!(
        c.read_reply(),
        "-WRONGPASS invalid key, secret, group or topic\r\n"
    );
    assert_eq!(c.read_reply(), "-NOAUTH Authentication required.\r\n");
    assert_eq!(c.read_reply(), "-NOAUTH Authentication required.\r\n");
    c.expect_closed();
}

#[test]
fn command_errors_keep_the_connection() {
    let db = TestDb::new();
    let gw = Gateway::start(&db);
    let mut c = gw.publisher(&seed_dsn("pub"));
    assert_eq!(c.call(&["FLUSHALL"]), "-ERR unknown command 'FLUSHALL'\r\n");
    assert_eq!(
        c.call(&["MGET", "pb"]),
        "-ERR 'mget' is not allowed for a pub connection\r\n"
    );
    assert_eq!(
        c.call(&["SET", "k"]),
        "-ERR wrong number of arguments for 'set' command\r\n"
    );
    assert_eq!(
        c.call(&["HSET", "k", "v"]),
        "-ERR wrong number of arguments for 'hset' command\r\n"
    );
    assert_eq!(
        c.call(&["HSET", "k", "not metadata", "v"]),
        "-ERR invalid metadata: expected a JSON object of strings or a protobuf Header\r\n"
    );
    assert_eq!(c.call(&["PING"]), "+PONG\r\n");

    let mut s = gw.client();
    s.auth_ok(&seed_dsn("sub"));
    assert_eq!(
        s.call(&["HSET", "k", "{}", "v"]),
        "-ERR 'hset' is not allowed for a sub connection\r\n"
    );
    assert_eq!(s.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn auth_timeout_closes_with_an_error() {
    let db = TestDb::new();
    let gw = Gateway::with_server(&db, "auth_timeout = \"300ms\"");
    let mut c = gw.client();
    // Chatter does not extend the deadline: only AUTH counts.
    assert_eq!(c.call(&["PING"]), "+PONG\r\n");
    assert_eq!(c.read_reply(), "-ERR auth timeout\r\n");
    c.expect_closed();
}

#[test]
fn idle_publisher_is_closed() {
    let db = TestDb::new();
    let gw = Gateway::with_server(&db, "pub_idle_timeout = \"300ms\"");
    let mut c = gw.publisher(&seed_dsn("pub"));
    c.expect_closed();
}

#[test]
fn inline_commands_work_like_telnet() {
    let db = TestDb::new();
    let gw = Gateway::start(&db);
    let mut c = gw.client();
    c.send(b"PING\r\n");
    assert_eq!(c.read_reply(), "+PONG\r\n");
    c.send(b"echo \"hello world\"\n");
    assert_eq!(c.read_reply(), "$11\r\nhello world\r\n");
    c.send(b"auth app_key1:app_secret1@group_name1/topic=test156&role=pub\r\n");
    assert_eq!(c.read_reply(), "+OK\r\n");
}

#[test]
fn a_client_that_never_reads_cannot_make_the_gateway_buffer() {
    let db = TestDb::new();
    // At most 64 unanswered commands per connection.
    // The client reads nothing for up to 2 s on purpose: no write timeout then.
    let gw = Gateway::with_server(&db, "max_pipeline = 64\nwrite_timeout = \"60s\"");
    let mut c = gw.publisher(&seed_dsn("pub"));
    // Pipelined PINGs, never reading a reply. Once the socket buffers on both
    // sides are full, the gateway must stop reading, and the client's writes
    // stall. Loopback socket buffers hold a few MB; a gateway that kept
    // reading (and buffering replies) would take all 64 MB.
    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    let burst = PING.repeat(64 * 1024);
    let limit = 64 << 20;
    c.stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut written = 0usize;
    while written < limit {
        let at = written % burst.len();
        match c.stream.write(&burst[at..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => break,
            Err(e) => panic!("write failed: {e}"),
        }
    }
    assert!(
        written < limit,
        "the gateway read all {written} bytes of a client that never reads"
    );
    // Now the client reads: every complete PING is answered, in order, and
    // the connection still works once the last, partial PING is completed.
    c.stream.set_write_timeout(None).unwrap();
    let partial = written % PING.len();
    let pongs = written / PING.len() + usize::from(partial > 0);
    let reader = std::thread::spawn({
        let mut stream = c.stream.try_clone().unwrap();
        move || {
            let mut got = vec![0u8; pongs * 7];
            stream.read_exact(&mut got).map(|()| got)
        }
    });
    if partial > 0 {
        c.send(&PING[partial..]);
    }
    let got = reader.join().unwrap().expect("every PONG arrives");
    assert!(got.chunks(7).all(|r| r == b"+PONG\r\n"));
    assert_eq!(c.call(&["PING", "end"]), "$3\r\nend\r\n");
}

#[test]
fn failed_auths_are_bounded_per_address() {
    let db = TestDb::new();
    let gw = Gateway::with_server(&db, "max_auth_failures = 3\nauth_failure_window = \"2s\"");
    let guess = |n: u32| seed_dsn("pub").replace("app_secret1", &format!("guess{n}"));
    let started = std::time::Instant::now();
    // The same wrong string again and again (what redis-py 8 does on its own,
    // retrying a failed AUTH ten times) counts once; each new guess counts.
    for n in [0, 0, 0, 0, 0, 1, 2] {
        let mut c = gw.client();
        assert_eq!(
            c.call(&["AUTH", &guess(n)]),
            "-WRONGPASS invalid key, secret, group or topic\r\n",
            "guess{n}"
        );
        c.expect_closed();
    }
    // Past the limit, even the right secret is refused unchecked, and closed.
    let refused = "-ERR too many failed AUTH attempts from this address, retry later\r\n";
    let mut c = gw.client();
    assert_eq!(c.call(&["AUTH", &seed_dsn("pub")]), refused);
    c.expect_closed();
    assert_eq!(
        gw.metric("databus_auth_total", &[("outcome", "rate_limited")]),
        1.0
    );
    // Refused attempts do not extend the window (2 s from the first failure):
    // retry until AUTH is checked again, which may not be sooner than that.
    // Bounded by WAIT; the window is time itself, nothing to await instead.
    loop {
        let mut c = gw.client();
        let reply = c.call(&["AUTH", &seed_dsn("pub")]);
        if reply == "+OK\r\n" {
            break;
        }
        assert_eq!(reply, refused);
        assert!(started.elapsed() < common::WAIT, "still refused");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// CLIENT LIST shows an app its own connections, with what each proved and
/// did, and nothing of another app's or of connections not yet authenticated.
#[test]
fn client_list_shows_an_apps_own_connections() {
    let db = TestDb::new();
    db.add_app(2, "otherapp", "s2", "cluster1");
    db.add_grant(2, "othergroup", 2, "test156");
    let gw = Gateway::start(&db);
    let mut first = gw.publisher(&seed_dsn("pub"));
    assert_eq!(first.call(&["CLIENT", "SETNAME", "first"]), "+OK\r\n");
    assert_eq!(first.call(&["PING"]), "+PONG\r\n");
    let mut second = gw.publisher(&seed_dsn("pub"));
    let mut other = gw.publisher("otherapp:s2@othergroup/topic=test156&role=pub");
    let mut anonymous = gw.client();
    assert_eq!(anonymous.call(&["PING"]), "+PONG\r\n");
    assert_eq!(
        anonymous.call(&["CLIENT", "LIST"]),
        "-NOAUTH Authentication required.\r\n"
    );
    let id = |c: &mut common::Client| {
        let reply = c.call(&["CLIENT", "ID"]);
        reply[1..reply.len() - 2].to_owned()
    };
    let (first_id, second_id) = (id(&mut first), id(&mut second));
    let list = second.client_list();
    assert_eq!(list.len(), 2, "{list:#?}");
    let line = |id: &str| {
        list.iter()
            .find(|l| l["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {list:#?}"))
    };
    let shown = line(&first_id);
    let local = first.stream.local_addr().unwrap().to_string();
    for (field, value) in [
        ("addr", local.as_str()),
        ("name", "first"),
        ("role", "pub"),
        ("key", "app_key1"),
        ("group", "group_name1"),
        ("topic", "test156"),
        ("color", ""),
        // AUTH, CLIENT SETNAME, PING, CLIENT ID.
        ("commands", "4"),
        ("cmd", "client"),
        ("db", "0"),
        ("resp", "2"),
    ] {
        assert_eq!(shown[field], value, "{field} in {shown:?}");
    }
    // The lister's own line: its last command is the listing.
    assert_eq!(line(&second_id)["cmd"], "client");
    // The other app sees itself only.
    let theirs = other.client_list();
    assert_eq!(theirs.len(), 1, "{theirs:#?}");
    assert_eq!(theirs[0]["key"], "otherapp");
}

/// A secret stored hashed (`sha256:<hex>`) authenticates; the hash itself
/// does not; /metrics counts the apps still stored in plaintext.
#[test]
fn secrets_stored_hashed_authenticate() {
    let db = TestDb::new();
    db.add_app(
        2,
        "hashed",
        &databus::auth::snapshot::hash_secret("s2"),
        "cluster1",
    );
    db.add_grant(2, "hashed_group", 2, "test156");
    let gw = Gateway::start(&db);
    let mut c = gw.client();
    assert_eq!(
        c.call(&["AUTH", "hashed:s2@hashed_group/topic=test156&role=pub"]),
        "+OK\r\n"
    );
    let hash = databus::auth::snapshot::hash_secret("s2");
    let mut c = gw.client();
    assert_eq!(
        c.call(&[
            "AUTH",
            &format!("hashed:{}@hashed_group/topic=test156&role=pub", &hash[7..])
        ]),
        "-WRONGPASS invalid key, secret, group or topic\r\n"
    );
    // The seed app stores its secret in plaintext; the new one does not.
    assert_eq!(gw.metric("databus_auth_plaintext_secrets", &[]), 1.0);
}
