//! A database of its own per test, on the stack's MariaDB, with the schema and
//! sample rows of `config/schema.sql`.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{group_of, mysql_port, unique};

/// A database of its own for one test, with the schema and sample rows of
/// `config/schema.sql`.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let name = unique("databus_test");
        let schema = include_str!("../../config/schema.sql").replace("databus_db", &name);
        mysql(&schema);
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/{}", mysql_port(), self.name)
    }

    pub fn exec(&self, sql: &str) {
        mysql(&format!("USE `{}`; {sql}", self.name));
    }

    /// Grants the seed's sample app (`app_key1`) `topic`, under the group
    /// [`group_of`] that topic.
    pub fn grant_topic(&self, topic: &str, operation: u8) {
        self.add_grant(1, &group_of(topic), operation, topic);
    }

    /// Adds an app.
    pub fn add_app(&self, id: u32, key: &str, secret: &str, cluster: &str) {
        self.exec(&format!(
            "INSERT INTO app (id, app_key, app_secret, cluster) VALUES ({id}, '{key}', '{secret}', '{cluster}')"
        ));
    }

    /// Grants an app's group a topic with the `operation` bits (1 sub, 2 pub).
    pub fn add_grant(&self, app_id: u32, group: &str, operation: u8, topic: &str) {
        self.exec(&format!(
            "INSERT INTO auth (app_id, group_name, operation, topic) VALUES ({app_id}, '{group}', {operation}, '{topic}')"
        ));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        mysql(&format!("DROP DATABASE IF EXISTS `{}`", self.name));
    }
}

fn mysql(sql: &str) {
    let mut child = Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", mysql_port()),
            "-uroot",
            "--batch",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mariadb client is installed (scripts/setup.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "SQL failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
