//! databus: a gateway that lets any Redis client publish to and consume from
//! Apache Kafka. Clients speak RESP; `AUTH` is checked against app credentials in
//! MySQL; `SET` becomes a Kafka produce and `MGET` a consumer-group fetch.
//!
//! # Layout
//!
//! ```text
//! main.rs             CLI (-conf / --config, admin), logging, exit status
//! admin/              databus admin: args.rs (command line), rules.rs (names, grant
//!                     conflicts), store.rs (its SQL)
//! startup.rs          start and stop order: config, limits, control thread, shards
//! config.rs           TOML → typed config with defaults and validation
//! errors.rs           every reply text a client can see
//! command.rs          the command table: names, arity, who may send, metrics labels
//! message.rs          the messages carried: a produced record, metadata header, MGET encodings
//! resp/               parser.rs (limits), inline.rs (telnet-style lines), reply.rs (encoding)
//! auth/               dsn.rs (AUTH grammar), snapshot.rs (grants), mysql.rs (loader),
//!                     limiter.rs (failed-AUTH bound per address)
//! clients.rs          connection slots, client ids, CLIENT LIST
//! quota.rs            per-app caps: connections, records/s and bytes/s (paused reads)
//! server/             mod.rs (starts the shards), shard.rs (executor, listener),
//!                     connection.rs (read/dispatch/write), outbox.rs (ordered replies,
//!                     credits), tls.rs (rustls listener)
//! session/            what a connection may do: mod.rs (dispatch, handles), backend.rs
//!                     (the traits it is given), auth.rs (AUTH, re-checks), chatter.rs
//!                     (HELLO, CLIENT, PING...), publisher.rs, subscriber.rs, reply.rs,
//!                     budget.rs (request bytes held)
//! kafka/              producer.rs (produce path), slot.rs (a producer replaced after a
//!                     fatal error), consumer/ (group members: mod.rs the service and its
//!                     runtime, member.rs, group.rs, offsets.rs), client_config.rs
//!                     (shared librdkafka settings), context.rs (librdkafka logs)
//! wiring.rs           Kafka behind the session's traits, one backend per shard
//! metrics/            per-shard counters; sources.rs (what is read), exposition.rs
//!                     (Prometheus), info.rs (INFO), http.rs (/metrics, /healthz,
//!                     /readyz on the control thread)
//! control.rs          the control thread (signals, /metrics) and the auth thread (MySQL)
//! ```
//!
//! Threads: one glommio executor per core (shards) accepts on the same port with
//! SO_REUSEPORT and owns its connections; librdkafka's threads deliver produces;
//! the consumer runtime's tokio workers (`consumer.threads`) make and run the
//! consumer-group members; one control thread runs tokio for /metrics and signals;
//! one auth thread runs tokio for mysql_async's loads and refreshes.

pub mod admin;
pub mod auth;
pub mod clients;
pub mod command;
pub mod config;
pub mod control;
pub mod errors;
pub mod kafka;
pub mod message;
pub mod metrics;
pub mod quota;
pub mod resp;
pub mod server;
pub mod session;
pub mod startup;
pub mod wiring;

#[cfg(test)]
mod tests {
    /// The lines of the first ```text block of `doc` whose first line starts
    /// with `main.rs`, each with `prefix` removed.
    fn module_map(doc: &str, prefix: &str) -> Vec<String> {
        let lines: Vec<&str> = doc
            .lines()
            .map(|l| l.strip_prefix(prefix).unwrap_or(l))
            .collect();
        let start = lines
            .windows(2)
            .position(|w| w[0].trim_end() == "```text" && w[1].starts_with("main.rs"))
            .expect("a ```text block starting with main.rs")
            + 1;
        lines[start..]
            .iter()
            .take_while(|l| !l.starts_with("```"))
            .map(|l| l.trim_end().to_owned())
            .collect()
    }

    /// One module map: the README shows this file's, word for word.
    #[test]
    fn the_readme_shows_this_module_map() {
        let here = module_map(include_str!("lib.rs"), "//! ");
        assert!(here.len() > 10, "{here:?}");
        assert_eq!(module_map(include_str!("../README.md"), ""), here);
        assert_eq!(
            module_map(include_str!("../docs/architecture.md"), ""),
            here
        );
    }
}
