//! Loads the `app` and `auth` tables, and the optional `app_quota`, with
//! mysql_async (on the control thread's tokio runtime: a `Pool` belongs to the
//! runtime that created it).

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Row};

use super::snapshot::{AppRow, AuthRow};
use crate::quota::QuotaLimits;

/// MySQL's ER_NO_SUCH_TABLE: a database from before quotas.
const NO_SUCH_TABLE: u16 = 1146;

/// Every row of the tables, as read.
#[derive(Hash)]
pub struct Rows {
    pub apps: Vec<AppRow>,
    pub auths: Vec<AuthRow>,
    /// Rows with an unreadable column: what was wrong with each.
    pub broken: Vec<String>,
}

impl Rows {
    /// A SHA-256 of every row read: two reads with the same digest hold the
    /// same data, so the second needs no new snapshot.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        use std::hash::{Hash, Hasher};
        struct Sha(Sha256);
        impl Hasher for Sha {
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
            fn finish(&self) -> u64 {
                0 // unused: the digest is read with finalize
            }
        }
        let mut hasher = Sha(Sha256::new());
        self.hash(&mut hasher);
        hasher.0.finalize().into()
    }
}

/// Reads every row of both tables. A row with an unreadable column is returned
/// with the fault in `broken` instead of failing the load.
pub async fn load(pool: &Pool) -> Result<Rows> {
    let mut conn = pool.get_conn().await.context("cannot connect to MySQL")?;
    let app_rows: Vec<Row> = conn
        .query("SELECT id, app_key, app_secret, cluster, deleted_at FROM app")
        .await
        .context("cannot read table app")?;
    let auth_rows: Vec<Row> = conn
        .query("SELECT id, app_id, group_name, operation, topic, deleted_at FROM auth")
        .await
        .context("cannot read table auth")?;
    let quota_rows: Vec<Row> = match conn
        .query("SELECT app_id, records_per_sec, bytes_per_sec, max_connections FROM app_quota")
        .await
    {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(e)) if e.code == NO_SUCH_TABLE => Vec::new(),
        Err(e) => return Err(e).context("cannot read table app_quota"),
    };

    let mut broken = Vec::new();
    let mut quotas = std::collections::HashMap::new();
    for (n, row) in quota_rows.into_iter().enumerate() {
        match quota_from(row) {
            Some((app_id, quota)) => {
                quotas.insert(app_id, quota);
            }
            None => broken.push(format!("app_quota row #{n}: unreadable column")),
        }
    }
    let mut apps = Vec::with_capacity(app_rows.len());
    for (n, row) in app_rows.into_iter().enumerate() {
        match app_from(row) {
            Some(mut app) => {
                app.quota = quotas.get(&app.id).copied().unwrap_or_default();
                apps.push(app);
            }
            None => broken.push(format!("app row #{n}: unreadable column")),
        }
    }
    let mut auths = Vec::with_capacity(auth_rows.len());
    for (n, row) in auth_rows.into_iter().enumerate() {
        match auth_from(row) {
            Some(auth) => auths.push(auth),
            None => broken.push(format!("auth row #{n}: unreadable column")),
        }
    }
    Ok(Rows {
        apps,
        auths,
        broken,
    })
}

// `Row::get_opt` returns None for a missing column and Some(Err) for a value that
// does not convert; both make the row broken. `Option<T>` columns accept NULL.
fn column<T: mysql_async::prelude::FromValue>(row: &mut Row, index: usize) -> Option<T> {
    row.take_opt(index)?.ok()
}

fn app_from(mut row: Row) -> Option<AppRow> {
    Some(AppRow {
        id: column(&mut row, 0)?,
        key: column(&mut row, 1)?,
        secret: column(&mut row, 2)?,
        cluster: column(&mut row, 3)?,
        deleted_at: column(&mut row, 4)?,
        quota: QuotaLimits::default(),
    })
}

/// NULL, 0 or a negative number is no cap.
fn quota_from(mut row: Row) -> Option<(i64, QuotaLimits)> {
    let app_id = column(&mut row, 0)?;
    let mut cap =
        |index| column::<Option<i64>>(&mut row, index).map(|n| n.unwrap_or(0).max(0) as u64);
    let quota = QuotaLimits {
        records_per_sec: cap(1)?,
        bytes_per_sec: cap(2)?,
        connections: cap(3)?,
    };
    Some((app_id, quota))
}

fn auth_from(mut row: Row) -> Option<AuthRow> {
    Some(AuthRow {
        id: column(&mut row, 0)?,
        app_id: column(&mut row, 1)?,
        group: column(&mut row, 2)?,
        operation: column(&mut row, 3)?,
        topic: column(&mut row, 4)?,
        deleted_at: column(&mut row, 5)?,
    })
}
