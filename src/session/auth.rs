//! AUTH (and HELLO's AUTH option): checking an AUTH string against the current
//! grants and giving the connection its role; and the re-check of that grant
//! after each refresh of the auth data (protocol.md §1.3, §3).

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::backend::{Backend, JoinError};
use super::publisher::Publisher;
use super::subscriber::{self, Subscriber};
use super::{Authenticated, Reply, Session, State, Step};
use crate::auth::{fingerprint, Denied, Dsn, DsnError, Role};
use crate::clients::Identity;
use crate::errors;
use crate::metrics::{AuthOutcome, ConnectionRole};

impl<B: Backend> Session<B> {
    /// `AUTH <dsn>` or `AUTH <user> <pass>`.
    pub(super) fn auth_command(&mut self, args: &[Bytes]) -> Step {
        let raw = match args {
            [dsn] => dsn.clone(),
            // Clients given only a password send it as user `default`'s
            // (redis-py does with RESP3); a whole AUTH string is never a password
            // of its own, since it has its own ':'.
            [user, pass] if user.as_ref() == b"default" && pass.contains(&b':') => pass.clone(),
            // The username/password form client libraries send: `AUTH key rest`
            // is `AUTH key:rest`.
            [user, pass] => {
                let mut joined = BytesMut::with_capacity(user.len() + 1 + pass.len());
                joined.extend_from_slice(user);
                joined.extend_from_slice(b":");
                joined.extend_from_slice(pass);
                joined.freeze()
            }
            _ => return Step::reply(Reply::error(errors::wrong_arity(b"auth"))),
        };
        // A copy: a slice would keep the whole read buffer it came in alive
        // for the connection's life.
        self.authenticate(Bytes::copy_from_slice(&raw))
    }

    /// Checks an AUTH string and, on success, gives the connection its role.
    /// Every failure closes the connection (protocol.md §1.3).
    fn authenticate(&mut self, raw: Bytes) -> Step {
        match &self.state {
            State::Anonymous => {}
            State::Publisher(a, _) | State::Subscriber(a, _) => {
                return Step::reply(if a.raw == raw {
                    Reply::OK
                } else {
                    Reply::error(errors::ALREADY_AUTHENTICATED)
                });
            }
        }
        let handles = Rc::clone(&self.handles);
        if !handles.auth_failures.allows(self.peer.ip(), Instant::now()) {
            tracing::info!(peer = %self.peer, "auth refused: too many failures from this address");
            handles.stats.auth(AuthOutcome::RateLimited);
            return Step::auth_failed(Reply::error(errors::TOO_MANY_AUTH_FAILURES));
        }
        let dsn = match Dsn::parse(&raw) {
            Ok(dsn) => dsn,
            Err(DsnError::Malformed) => {
                tracing::info!(peer = %self.peer, "auth failed: malformed auth string");
                return self.wrong_credentials(
                    &raw,
                    AuthOutcome::Malformed,
                    errors::INVALID_AUTH_STRING,
                );
            }
            Err(DsnError::BadRole) => {
                tracing::info!(peer = %self.peer, "auth failed: bad role");
                return self.wrong_credentials(&raw, AuthOutcome::BadRole, errors::BAD_ROLE);
            }
            Err(DsnError::BadColor) => {
                tracing::info!(peer = %self.peer, "auth failed: invalid color");
                return self.wrong_credentials(&raw, AuthOutcome::BadColor, errors::INVALID_COLOR);
            }
        };
        let snapshot = handles.auth.current();
        let grant = match snapshot.authenticate(&dsn) {
            Ok(grant) => grant,
            Err(reason) => {
                // An unknown key is often a secret sent in the key's place.
                let key = match reason {
                    Denied::UnknownKey => format!("unknown:{}", fingerprint(dsn.key.as_bytes())),
                    _ => dsn.key.clone(),
                };
                tracing::info!(peer = %self.peer, %key, group = %dsn.group,
                    topic = %dsn.topic, role = dsn.role.as_str(), %reason, "auth failed");
                let text = denied_text(&reason, &dsn);
                return self.wrong_credentials(&raw, AuthOutcome::from(&reason), text);
            }
        };
        // Counted before a consumer is made for it: refusing is cheap.
        drop(snapshot);
        let current_caps = || handles.auth.current().quota(&dsn.key);
        let admission = match handles.auth.quotas().admit(&dsn.key, current_caps) {
            Ok(admission) => admission,
            Err(full) => {
                tracing::info!(peer = %self.peer, key = %dsn.key, cap = full.cap,
                    "auth refused: the app is at its connection cap");
                handles.stats.auth(AuthOutcome::AppConnectionsFull);
                return Step::auth_failed(Reply::error(errors::app_connections_full(full.cap)));
            }
        };
        let unknown_cluster = |cluster: &str| {
            tracing::warn!(peer = %self.peer, key = %dsn.key, %cluster,
                "auth failed: the app's cluster is not configured");
            handles.stats.auth(AuthOutcome::ClusterNotConfigured);
            Step::auth_failed(Reply::error(errors::cluster_not_configured(cluster)))
        };
        let identity = Identity {
            role: dsn.role,
            key: dsn.key.clone(),
            group: dsn.group.clone(),
            topic: dsn.topic.clone(),
            color: dsn.color.clone(),
        };
        let state = match dsn.role {
            Role::Pub => {
                let Some(producer) = handles.backend.producer(&grant.cluster) else {
                    return unknown_cluster(&grant.cluster);
                };
                let publisher = Publisher::new(
                    &dsn,
                    grant.cluster,
                    producer,
                    handles.limits,
                    Arc::clone(&handles.stats),
                    Rc::clone(&self.budget),
                    Arc::clone(admission.quota()),
                );
                State::Publisher(
                    Authenticated {
                        raw,
                        dsn,
                        admission,
                    },
                    publisher,
                )
            }
            Role::Sub => {
                let group = subscriber::group_name(&dsn);
                let joined =
                    handles
                        .backend
                        .join(&grant.cluster, &group, &dsn.topic, self.client.lag());
                let member = match joined {
                    Ok(member) => member,
                    Err(JoinError::UnknownCluster) => return unknown_cluster(&grant.cluster),
                    Err(JoinError::Full) => {
                        tracing::warn!(peer = %self.peer, %group,
                            "subscriber refused: server.max_subscribers reached");
                        handles.stats.auth(AuthOutcome::SubscribersFull);
                        return Step::auth_failed(Reply::error(errors::MAX_SUBSCRIBERS));
                    }
                };
                let subscriber = Subscriber::new(&dsn, grant.cluster, member);
                State::Subscriber(
                    Authenticated {
                        raw,
                        dsn,
                        admission,
                    },
                    subscriber,
                )
            }
        };
        tracing::debug!(peer = %self.peer, id = self.id(), key = %identity.key,
            group = %identity.group, topic = %identity.topic, role = identity.role.as_str(),
            "authenticated");
        self.client.authenticated(identity);
        self.state = state;
        handles.stats.auth(AuthOutcome::Ok);
        handles.stats.connection_closed(ConnectionRole::Anonymous);
        handles.stats.connection_opened(self.counted_role());
        Step::reply(Reply::OK)
    }

    /// A failed AUTH that was the client's doing: `attempt` (the AUTH string)
    /// counts against the client's address (`max_auth_failures`), and the
    /// outcome in metrics.
    fn wrong_credentials(
        &self,
        attempt: &[u8],
        outcome: AuthOutcome,
        text: impl Into<Cow<'static, str>>,
    ) -> Step {
        self.handles
            .auth_failures
            .failed(self.peer.ip(), attempt, Instant::now());
        self.handles.stats.auth(outcome);
        Step::auth_failed(Reply::error(text))
    }

    /// Re-checks this connection's grant against a new auth snapshot. Returns the
    /// error to send before closing when the grant is gone (protocol.md §3).
    pub fn recheck(&mut self) -> Option<Reply> {
        let snapshot = self.handles.auth.current();
        let (auth, current_cluster) = match &self.state {
            State::Anonymous => return None,
            State::Publisher(a, p) => (a, &p.cluster),
            State::Subscriber(a, s) => (a, &s.cluster),
        };
        let grant = match snapshot.authenticate(&auth.dsn) {
            Ok(grant) => grant,
            Err(reason) => {
                tracing::info!(peer = %self.peer, key = %auth.dsn.key, group = %auth.dsn.group,
                    %reason, "closing connection: credentials revoked");
                return Some(Reply::error(errors::CREDENTIALS_REVOKED));
            }
        };
        if grant.cluster == *current_cluster {
            return None;
        }
        tracing::info!(peer = %self.peer, key = %auth.dsn.key, from = %current_cluster,
            to = %grant.cluster, "app moved to another cluster");
        match &mut self.state {
            State::Publisher(_, publisher) => match self.handles.backend.producer(&grant.cluster) {
                Some(producer) => {
                    publisher.switch_cluster(grant.cluster, producer);
                    None
                }
                None => Some(Reply::error(errors::cluster_not_configured(&grant.cluster))),
            },
            // A consumer group member cannot move; the client reconnects.
            _ => Some(Reply::error(errors::CLUSTER_CHANGED)),
        }
    }
}

fn denied_text(reason: &Denied, dsn: &Dsn) -> String {
    match (reason, dsn.role) {
        (Denied::NoPermission, Role::Pub) => errors::may_not_publish(&dsn.group),
        (Denied::NoPermission, Role::Sub) => errors::may_not_subscribe(&dsn.group),
        (Denied::ColorNotAllowed, _) => errors::color_not_allowed(&dsn.color, &dsn.group),
        _ => errors::WRONGPASS.to_owned(),
    }
}
