//! The SQL of `databus admin`: reads and writes of the `app`, `auth` and
//! `app_quota` tables, one statement each. Rows are soft-deleted
//! (`deleted_at`), as the gateway reads them; times are Unix seconds.

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use serde::Serialize;

use super::rules::GrantRow;

/// A row counts while `deleted_at` is NULL or 0 (protocol.md §2).
const LIVE: &str = "(deleted_at IS NULL OR deleted_at = 0)";

pub struct Store {
    conn: Conn,
}

/// An app that is not deleted.
pub struct LiveApp {
    pub id: i64,
    pub cluster: String,
}

/// The columns `apps list` reads: id, key, cluster, hashed, disabled,
/// grants, and the three caps.
type AppColumns = (
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A cap as stored: NULL, 0 or a negative number is no cap (as the
/// gateway reads it).
fn cap(stored: Option<i64>) -> u64 {
    stored.unwrap_or(0).max(0) as u64
}

/// One line of `apps list`.
#[derive(Serialize)]
pub struct AppListing {
    pub id: i64,
    pub key: String,
    pub cluster: String,
    /// `hashed` or `plaintext`: never the secret or its hash.
    pub secret: &'static str,
    pub disabled: bool,
    pub grants: i64,
    pub quota: Quota,
}

/// One line of `grants list`.
#[derive(Serialize)]
pub struct GrantListing {
    pub id: i64,
    pub key: String,
    pub group: String,
    pub topic: String,
    pub operation: String,
}

/// An app's caps (`app_quota`); 0 is no cap.
#[derive(Serialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub records_per_sec: u64,
    pub bytes_per_sec: u64,
    pub connections: u64,
}

impl Store {
    pub async fn connect(url: &str) -> Result<Store> {
        let opts = Opts::from_url(url).context("invalid auth.mysql_url")?;
        let conn = Conn::new(opts).await.context("cannot connect to MySQL")?;
        Ok(Store { conn })
    }

    pub async fn live_app(&mut self, key: &str) -> Result<Option<LiveApp>> {
        let row: Option<(i64, String)> = self
            .conn
            .exec_first(
                format!(
                    "SELECT id, cluster FROM app WHERE app_key = ? AND {LIVE} ORDER BY id LIMIT 1"
                ),
                (key,),
            )
            .await
            .context("cannot read table app")?;
        Ok(row.map(|(id, cluster)| LiveApp { id, cluster }))
    }

    pub async fn add_app(&mut self, key: &str, hash: &str, cluster: &str, now: i64) -> Result<i64> {
        self.conn
            .exec_drop(
                "INSERT INTO app (app_key, app_secret, cluster, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?)",
                (key, hash, cluster, now, now),
            )
            .await
            .context("cannot insert into table app")?;
        self.conn
            .last_insert_id()
            .map(|id| id as i64)
            .context("MySQL did not return the new app's id")
    }

    pub async fn set_secret(&mut self, app: &LiveApp, hash: &str, now: i64) -> Result<()> {
        self.conn
            .exec_drop(
                "UPDATE app SET app_secret = ?, updated_at = ? WHERE id = ?",
                (hash, now, app.id),
            )
            .await
            .context("cannot update table app")
    }

    /// Soft-deletes every live row of the key: with one left, the gateway
    /// would take it for the app, with its own secret.
    pub async fn disable(&mut self, key: &str, now: i64) -> Result<()> {
        self.conn
            .exec_drop(
                format!(
                    "UPDATE app SET deleted_at = ?, updated_at = ? WHERE app_key = ? AND {LIVE}"
                ),
                (now, now, key),
            )
            .await
            .context("cannot update table app")
    }

    /// Every app, deleted ones included, in id order.
    pub async fn apps(&mut self) -> Result<Vec<AppListing>> {
        // Databases from before quotas have no app_quota table: no caps.
        let (caps, join) = if self.has_quota_table().await? {
            (
                "q.records_per_sec, q.bytes_per_sec, q.max_connections",
                "LEFT JOIN app_quota q ON q.app_id = a.id",
            )
        } else {
            ("NULL, NULL, NULL", "")
        };
        let rows: Vec<AppColumns> = self
            .conn
            .query(format!(
                "SELECT a.id, a.app_key, a.cluster, a.app_secret LIKE 'sha256:%', \
                     NOT (a.deleted_at IS NULL OR a.deleted_at = 0), \
                     (SELECT COUNT(*) FROM auth g WHERE g.app_id = a.id \
                      AND (g.deleted_at IS NULL OR g.deleted_at = 0)), {caps} \
                     FROM app a {join} ORDER BY a.id"
            ))
            .await
            .context("cannot read table app")?;
        Ok(rows
            .into_iter()
            .map(
                |(id, key, cluster, hashed, disabled, grants, records, bytes, connections)| {
                    AppListing {
                        id,
                        key,
                        cluster,
                        secret: if hashed != 0 { "hashed" } else { "plaintext" },
                        disabled: disabled != 0,
                        grants,
                        quota: Quota {
                            records_per_sec: cap(records),
                            bytes_per_sec: cap(bytes),
                            connections: cap(connections),
                        },
                    }
                },
            )
            .collect())
    }

    /// Live grants of live apps (of one app's, given its key), in id order.
    pub async fn grants(&mut self, key: Option<&str>) -> Result<Vec<(i64, GrantRow)>> {
        let rows: Vec<(i64, String, String, String, Option<i64>)> = self
            .conn
            .exec(
                "SELECT g.id, a.app_key, g.group_name, g.topic, g.operation \
                 FROM auth g JOIN app a ON a.id = g.app_id \
                 WHERE (g.deleted_at IS NULL OR g.deleted_at = 0) \
                 AND (a.deleted_at IS NULL OR a.deleted_at = 0) \
                 AND g.group_name IS NOT NULL AND g.group_name <> '' \
                 AND (? IS NULL OR a.app_key = ?) ORDER BY g.id",
                (key, key),
            )
            .await
            .context("cannot read table auth")?;
        Ok(rows
            .into_iter()
            .map(|(id, key, group, topic, operation)| {
                let operation = operation.unwrap_or(0);
                (
                    id,
                    GrantRow {
                        key,
                        group,
                        topic,
                        operation,
                    },
                )
            })
            .collect())
    }

    pub async fn add_grant(
        &mut self,
        app: &LiveApp,
        group: &str,
        topic: &str,
        operation: i64,
        now: i64,
    ) -> Result<i64> {
        self.conn
            .exec_drop(
                "INSERT INTO auth (app_id, group_name, operation, topic, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                (app.id, group, operation, topic, now, now),
            )
            .await
            .context("cannot insert into table auth")?;
        self.conn
            .last_insert_id()
            .map(|id| id as i64)
            .context("MySQL did not return the new grant's id")
    }

    /// Soft-deletes the app's live grants of `group` and `topic`; how many.
    pub async fn remove_grant(
        &mut self,
        app: &LiveApp,
        group: &str,
        topic: &str,
        now: i64,
    ) -> Result<u64> {
        self.conn
            .exec_drop(
                format!(
                    "UPDATE auth SET deleted_at = ?, updated_at = ? \
                     WHERE app_id = ? AND group_name = ? AND topic = ? AND {LIVE}"
                ),
                (now, now, app.id, group, topic),
            )
            .await
            .context("cannot update table auth")?;
        Ok(self.conn.affected_rows())
    }

    /// Whether the optional `app_quota` table exists (databases from before
    /// quotas have none).
    pub async fn has_quota_table(&mut self) -> Result<bool> {
        let count: Option<i64> = self
            .conn
            .query_first(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = 'app_quota'",
            )
            .await
            .context("cannot read information_schema")?;
        Ok(count.unwrap_or(0) > 0)
    }

    pub async fn quota(&mut self, app: &LiveApp) -> Result<Quota> {
        let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = self
            .conn
            .exec_first(
                "SELECT records_per_sec, bytes_per_sec, max_connections FROM app_quota \
                 WHERE app_id = ?",
                (app.id,),
            )
            .await
            .context("cannot read table app_quota")?;
        let (records, bytes, connections) = row.unwrap_or_default();
        Ok(Quota {
            records_per_sec: cap(records),
            bytes_per_sec: cap(bytes),
            connections: cap(connections),
        })
    }

    pub async fn set_quota(&mut self, app: &LiveApp, quota: Quota, now: i64) -> Result<()> {
        self.conn
            .exec_drop(
                "INSERT INTO app_quota \
                 (app_id, records_per_sec, bytes_per_sec, max_connections, updated_at) \
                 VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
                 records_per_sec = VALUES(records_per_sec), bytes_per_sec = VALUES(bytes_per_sec), \
                 max_connections = VALUES(max_connections), updated_at = VALUES(updated_at)",
                (
                    app.id,
                    quota.records_per_sec,
                    quota.bytes_per_sec,
                    quota.connections,
                    now,
                ),
            )
            .await
            .context("cannot write table app_quota")
    }

    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}
