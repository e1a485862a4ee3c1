//! An immutable view of the grants in MySQL, and the check of an AUTH string
//! against it (protocol.md §2, §3).
//!
//! A snapshot is built once per refresh and shared by every shard through an
//! `ArcSwap`, so checking credentials never takes a lock.

use std::collections::HashMap;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::dsn::{Dsn, Role};
use crate::quota::QuotaLimits;

/// `auth.operation` bits.
pub const OP_SUBSCRIBE: i64 = 1;
pub const OP_PUBLISH: i64 = 2;

/// One row of the `app` table, as loaded.
#[derive(Clone, Debug, Hash)]
pub struct AppRow {
    pub id: i64,
    pub key: String,
    pub secret: String,
    pub cluster: String,
    pub deleted_at: Option<i64>,
    /// Its row of the optional `app_quota` table; no caps without one.
    pub quota: QuotaLimits,
}

/// One row of the `auth` table, as loaded.
#[derive(Clone, Debug, Hash)]
pub struct AuthRow {
    pub id: i64,
    pub app_id: i64,
    pub group: Option<String>,
    pub operation: Option<i64>,
    pub topic: String,
    pub deleted_at: Option<i64>,
}

struct App {
    secret: StoredSecret,
    cluster: String,
    quota: QuotaLimits,
}

/// An app's secret as `app.app_secret` holds it: `sha256:` and the 64 hex
/// digits of the secret's SHA-256 (as redis-server's ACL stores passwords), or,
/// in databases from before hashing, the secret itself. A value that starts
/// with `sha256:` is never taken for a plaintext secret: when it is not a
/// well-formed hash, the row is skipped.
enum StoredSecret {
    Plain(String),
    Sha256([u8; 32]),
}

/// The prefix that marks a hashed secret.
pub const HASH_PREFIX: &str = "sha256:";

impl StoredSecret {
    fn parse(stored: String) -> Result<StoredSecret, &'static str> {
        let Some(hex) = stored.strip_prefix(HASH_PREFIX) else {
            return Ok(StoredSecret::Plain(stored));
        };
        let digest =
            decode_hex(hex).ok_or("app_secret starts with sha256: but is not 64 hex digits")?;
        Ok(StoredSecret::Sha256(digest))
    }

    /// Compares in constant time: the stored secret, or the sent secret's hash.
    fn matches(&self, sent: &str) -> bool {
        match self {
            StoredSecret::Plain(secret) => secret.as_bytes().ct_eq(sent.as_bytes()).into(),
            StoredSecret::Sha256(digest) => {
                let sent = Sha256::digest(sent.as_bytes());
                digest[..].ct_eq(&sent[..]).into()
            }
        }
    }
}

/// `sha256:` and the hex digits of `secret`'s SHA-256: what `app_secret` holds
/// for a hashed secret.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HASH_PREFIX}{hex}")
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// What a successful AUTH grants a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub cluster: String,
    pub operation: i64,
}

/// Why an AUTH failed. Clients see one text for the credential cases; the variant
/// goes to the log (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("unknown app key")]
    UnknownKey,
    #[error("group is not granted to this app")]
    UnknownGroup,
    #[error("topic is not granted to this group")]
    WrongTopic,
    #[error("wrong secret")]
    WrongSecret,
    #[error("the group's operation lacks the bit for this role")]
    NoPermission,
    #[error("the colored group could also be another grant's")]
    ColorNotAllowed,
}

#[derive(Default)]
pub struct AuthSnapshot {
    apps: HashMap<String, App>,
    /// (app key, group) → topic → operation bits.
    grants: HashMap<(String, String), HashMap<String, i64>>,
    /// group → the (app key, topic, operation bits) it is granted for: who
    /// may be a member of a consumer group of that name.
    by_group: HashMap<String, Vec<(String, String, i64)>>,
    /// When the rows were read from MySQL.
    pub loaded_at: Option<SystemTime>,
    /// Apps whose `app_secret` holds the secret itself, not its hash.
    pub plaintext_secrets: usize,
}

/// A snapshot plus what was skipped while building it, for the refresh log.
pub struct Built {
    pub snapshot: AuthSnapshot,
    pub skipped: Vec<String>,
}

fn is_deleted(deleted_at: Option<i64>) -> bool {
    deleted_at.is_some_and(|t| t != 0)
}

impl AuthSnapshot {
    /// Builds a snapshot from raw rows. Soft-deleted and broken rows are skipped and
    /// reported, never failing the whole build: one bad row must not lock every
    /// app out.
    pub fn build(apps: Vec<AppRow>, auths: Vec<AuthRow>, loaded_at: SystemTime) -> Built {
        let mut skipped = Vec::new();
        let mut by_id: HashMap<i64, String> = HashMap::new();
        let mut snapshot = AuthSnapshot {
            loaded_at: Some(loaded_at),
            ..AuthSnapshot::default()
        };
        let mut apps = apps;
        apps.sort_by_key(|a| a.id);
        for app in apps {
            if is_deleted(app.deleted_at) {
                continue;
            }
            if snapshot.apps.contains_key(&app.key) {
                skipped.push(format!(
                    "app id {}: app_key {:?} already used by a lower id",
                    app.id, app.key
                ));
                continue;
            }
            let secret = match StoredSecret::parse(app.secret) {
                Ok(secret) => secret,
                Err(why) => {
                    skipped.push(format!("app id {}: {why}", app.id));
                    continue;
                }
            };
            if matches!(secret, StoredSecret::Plain(_)) {
                snapshot.plaintext_secrets += 1;
            }
            by_id.insert(app.id, app.key.clone());
            snapshot.apps.insert(
                app.key,
                App {
                    secret,
                    cluster: app.cluster,
                    quota: app.quota,
                },
            );
        }
        for auth in auths {
            if is_deleted(auth.deleted_at) {
                continue;
            }
            let Some(group) = auth.group.filter(|g| !g.is_empty()) else {
                skipped.push(format!("auth id {}: no group_name", auth.id));
                continue;
            };
            let Some(key) = by_id.get(&auth.app_id) else {
                skipped.push(format!(
                    "auth id {}: app id {} does not exist or is deleted",
                    auth.id, auth.app_id
                ));
                continue;
            };
            snapshot.by_group.entry(group.clone()).or_default().push((
                key.clone(),
                auth.topic.clone(),
                auth.operation.unwrap_or(0),
            ));
            snapshot
                .grants
                .entry((key.clone(), group))
                .or_default()
                .insert(auth.topic, auth.operation.unwrap_or(0));
        }
        Built { snapshot, skipped }
    }

    /// Checks an AUTH string's credentials and role against the grants.
    pub fn authenticate(&self, dsn: &Dsn) -> Result<Grant, Denied> {
        let app = self.apps.get(&dsn.key).ok_or(Denied::UnknownKey)?;
        // The secret is compared before anything about the group is revealed by
        // timing, and in constant time.
        let secret_ok = app.secret.matches(&dsn.secret);
        let topics = self.grants.get(&(dsn.key.clone(), dsn.group.clone()));
        if !secret_ok {
            return Err(Denied::WrongSecret);
        }
        let topics = topics.ok_or(Denied::UnknownGroup)?;
        let operation = *topics.get(&dsn.topic).ok_or(Denied::WrongTopic)?;
        let bit = match dsn.role {
            Role::Pub => OP_PUBLISH,
            Role::Sub => OP_SUBSCRIBE,
        };
        if operation & bit == 0 {
            return Err(Denied::NoPermission);
        }
        if dsn.role == Role::Sub && !dsn.color.is_empty() && self.color_collides(dsn) {
            return Err(Denied::ColorNotAllowed);
        }
        Ok(Grant {
            cluster: app.cluster.clone(),
            operation,
        })
    }

    /// Whether a subscriber's colored group `<group>-<color>` could also be
    /// joined through another grant: a group of that very name, or one that
    /// the name starts with followed by `-` (the subscriber's own group
    /// included: its subscribers derive the same name with another color),
    /// granted with the subscribe bit to another app or to this app for
    /// another topic. Either would put two parties in one consumer group:
    /// one would read the other's records and move its offsets.
    fn color_collides(&self, dsn: &Dsn) -> bool {
        let derived = format!("{}-{}", dsn.group, dsn.color);
        let own = (dsn.key.as_str(), dsn.topic.as_str());
        let joinable_as = std::iter::once(derived.as_str())
            .chain(derived.match_indices('-').map(|(at, _)| &derived[..at]));
        // The subscriber's own (app, topic) grant of its own group is the
        // one the name is for; any other that could subscribe collides.
        joinable_as
            .filter_map(|group| self.by_group.get(group))
            .flatten()
            .any(|(key, topic, operation)| {
                operation & OP_SUBSCRIBE != 0 && (key.as_str(), topic.as_str()) != own
            })
    }

    /// The caps of app `key` (none for an unknown app).
    pub fn quota(&self, key: &str) -> QuotaLimits {
        self.apps.get(key).map(|app| app.quota).unwrap_or_default()
    }

    pub fn app_count(&self) -> usize {
        self.apps.len()
    }

    pub fn grant_count(&self) -> usize {
        self.grants.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: i64, key: &str, secret: &str, deleted_at: Option<i64>) -> AppRow {
        AppRow {
            id,
            key: key.into(),
            secret: secret.into(),
            cluster: "cluster1".into(),
            deleted_at,
            quota: QuotaLimits::default(),
        }
    }

    fn auth(id: i64, app_id: i64, group: Option<&str>, op: i64, topic: &str) -> AuthRow {
        AuthRow {
            id,
            app_id,
            group: group.map(Into::into),
            operation: Some(op),
            topic: topic.into(),
            deleted_at: None,
        }
    }

    fn dsn(s: &str) -> Dsn {
        Dsn::parse(s.as_bytes()).unwrap()
    }

    fn seed() -> AuthSnapshot {
        AuthSnapshot::build(
            vec![
                app(1, "app_key1", "app_secret1", None),
                app(2, "gone", "s", Some(5)),
            ],
            vec![
                auth(1, 1, Some("group_name1"), 3, "test156"),
                auth(2, 1, Some("subonly"), 1, "t"),
                auth(3, 1, None, 3, "t"),
                auth(4, 2, Some("g"), 3, "t"),
                auth(5, 9, Some("g"), 3, "t"),
            ],
            SystemTime::UNIX_EPOCH,
        )
        .snapshot
    }

    #[test]
    fn every_outcome() {
        let s = seed();
        let ok = s.authenticate(&dsn(
            "app_key1:app_secret1@group_name1/topic=test156&role=pub",
        ));
        assert_eq!(
            ok,
            Ok(Grant {
                cluster: "cluster1".into(),
                operation: 3
            })
        );
        let cases = [
            (
                "nokey:app_secret1@group_name1/topic=test156&role=pub",
                Denied::UnknownKey,
            ),
            (
                "app_key1:wrong@group_name1/topic=test156&role=pub",
                Denied::WrongSecret,
            ),
            (
                "app_key1:app_secret1@nogroup/topic=test156&role=pub",
                Denied::UnknownGroup,
            ),
            (
                "app_key1:app_secret1@group_name1/topic=other&role=pub",
                Denied::WrongTopic,
            ),
            (
                "app_key1:app_secret1@subonly/topic=t&role=pub",
                Denied::NoPermission,
            ),
            ("gone:s@g/topic=t&role=pub", Denied::UnknownKey),
        ];
        for (text, want) in cases {
            assert_eq!(s.authenticate(&dsn(text)), Err(want), "{text}");
        }
        assert!(s
            .authenticate(&dsn("app_key1:app_secret1@subonly/topic=t&role=sub"))
            .is_ok());
    }

    #[test]
    fn broken_rows_are_skipped_and_reported() {
        let built = AuthSnapshot::build(
            vec![app(1, "a", "s", None), app(2, "a", "other", None)],
            vec![auth(3, 1, None, 3, "t"), auth(5, 9, Some("g"), 3, "t")],
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(built.skipped.len(), 3, "{:?}", built.skipped);
        assert_eq!(built.snapshot.app_count(), 1);
        assert_eq!(built.snapshot.grant_count(), 0);
        // The lower id keeps the key.
        assert!(built
            .snapshot
            .authenticate(&dsn("a:s@g/topic=t&role=pub"))
            .is_err_and(|d| d == Denied::UnknownGroup));
    }

    #[test]
    fn zero_deleted_at_means_live() {
        let built = AuthSnapshot::build(
            vec![app(1, "a", "s", Some(0))],
            vec![],
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(built.snapshot.app_count(), 1);
    }

    #[test]
    fn a_colored_group_must_belong_to_no_one_else() {
        // app a: G on t (and G-own on t); app b: G-eu on t and a-b on t; app a
        // also G2 on t and on u.
        let built = AuthSnapshot::build(
            vec![app(1, "a", "s", None), app(2, "b", "s", None)],
            vec![
                auth(1, 1, Some("G"), 3, "t"),
                auth(2, 1, Some("G-own"), 3, "t"),
                auth(3, 2, Some("G-eu"), 3, "t"),
                auth(4, 2, Some("a-b"), 3, "t"),
                auth(5, 1, Some("a"), 3, "t"),
                auth(6, 1, Some("G2"), 3, "t"),
                auth(7, 1, Some("G2-x"), 3, "u"),
                // S is granted to both apps; P-q to b for publishing only.
                auth(8, 1, Some("S"), 3, "t"),
                auth(9, 2, Some("S"), 3, "t"),
                auth(10, 1, Some("P"), 3, "t"),
                auth(11, 2, Some("P-q"), 2, "t"),
            ],
            SystemTime::UNIX_EPOCH,
        );
        let s = built.snapshot;
        let sub = |who: &str, group: &str, color: &str| {
            s.authenticate(&dsn(&format!(
                "{who}:s@{group}/topic=t&role=sub&color={color}"
            )))
        };
        let refused = Err(Denied::ColorNotAllowed);
        // Another app's group, exactly.
        assert_eq!(sub("a", "G", "eu"), refused);
        // Another app's group's colored name: b's G-eu with color x.
        assert_eq!(sub("a", "G", "eu-x"), refused);
        // `a` with color `b-c` and b's `a-b` with color `c` meet at a-b-c.
        assert_eq!(sub("a", "a", "b-c"), refused);
        // The same app's group for another topic.
        assert_eq!(sub("a", "G2", "x"), refused);
        // A group shared with another app: its colored subscribers would
        // land in the same S-z.
        assert_eq!(sub("a", "S", "z"), refused);
        // A grant without the subscribe bit makes no consumer.
        assert!(sub("a", "P", "q").is_ok());
        // The same app's group for the same topic is its own.
        assert!(sub("a", "G", "own").is_ok());
        assert!(sub("a", "G", "us").is_ok());
        // Publishers' colors name no group.
        assert!(s
            .authenticate(&dsn("a:s@G/topic=t&role=pub&color=eu"))
            .is_ok());
    }

    #[test]
    fn secrets_may_be_stored_hashed() {
        let hashed = hash_secret("s3cret");
        // printf s3cret | sha256sum
        assert_eq!(
            hashed,
            "sha256:1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
        );
        let built = AuthSnapshot::build(
            vec![
                app(1, "hashed", &hashed, None),
                app(2, "plain", "s3cret", None),
                app(3, "broken", "sha256:not-hex", None),
            ],
            vec![
                auth(1, 1, Some("g"), 3, "t"),
                auth(2, 2, Some("g"), 3, "t"),
                auth(3, 3, Some("g"), 3, "t"),
            ],
            SystemTime::UNIX_EPOCH,
        );
        let s = built.snapshot;
        assert_eq!(s.plaintext_secrets, 1);
        assert!(s
            .authenticate(&dsn("hashed:s3cret@g/topic=t&role=pub"))
            .is_ok());
        assert_eq!(
            s.authenticate(&dsn("hashed:wrong@g/topic=t&role=pub")),
            Err(Denied::WrongSecret)
        );
        // The hash itself is not the secret.
        let as_sent = format!("hashed:{}@g/topic=t&role=pub", &hashed[7..]);
        assert_eq!(s.authenticate(&dsn(&as_sent)), Err(Denied::WrongSecret));
        assert!(s
            .authenticate(&dsn("plain:s3cret@g/topic=t&role=pub"))
            .is_ok());
        // A malformed hash is never taken for a plaintext secret.
        assert_eq!(
            s.authenticate(&dsn("broken:not-hex@g/topic=t&role=pub")),
            Err(Denied::UnknownKey)
        );
        assert!(
            built.skipped.iter().any(|r| r.contains("app id 3")),
            "{:?}",
            built.skipped
        );
    }
}
