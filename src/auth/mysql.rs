//! Loads the `app` and `auth` tables with mysql_async (on the control thread's
//! tokio runtime: a `Pool` belongs to the runtime that created it).

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Row};

use super::snapshot::{AppRow, AuthRow};

/// Reads every row of both tables. A row with an unreadable column is returned
/// with the fault in `broken` instead of failing the load.
pub async fn load(pool: &Pool) -> Result<(Vec<AppRow>, Vec<AuthRow>, Vec<String>)> {
    let mut conn = pool.get_conn().await.context("cannot connect to MySQL")?;
    let app_rows: Vec<Row> = conn
        .query("SELECT id, app_key, app_secret, cluster, deleted_at FROM app")
        .await
        .context("cannot read table app")?;
    let auth_rows: Vec<Row> = conn
        .query("SELECT id, app_id, group_name, operation, topic, deleted_at FROM auth")
        .await
        .context("cannot read table auth")?;

    let mut broken = Vec::new();
    let mut apps = Vec::with_capacity(app_rows.len());
    for (n, row) in app_rows.into_iter().enumerate() {
        match app_from(row) {
            Some(app) => apps.push(app),
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
    Ok((apps, auths, broken))
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
    })
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
