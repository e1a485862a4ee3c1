//! `databus admin` run as operators run it: the binary, a config file
//! naming the test's database, its exit status and output.

use std::process::Command;

use super::{GatewayConfig, TestDb};

/// What one `databus admin` run printed, and how it ended.
#[derive(Debug)]
pub struct AdminRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl AdminRun {
    /// The output of a run that must have worked.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "{self:?}");
        self.stdout
    }

    /// The JSON printed by a `--json` run that must have worked.
    pub fn json(self) -> serde_json::Value {
        let stdout = self.ok();
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// The reason given by a run that was refused (exit status 1).
    pub fn refused(self) -> String {
        assert_eq!(self.code, 1, "{self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
        self.stderr.trim_end().to_owned()
    }
}

/// Runs `databus admin ARGS` with a gateway config for `db` (the stack's
/// cluster as `cluster1`).
pub fn admin(db: &TestDb, args: &[&str]) -> AdminRun {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("databus.toml");
    std::fs::write(&path, GatewayConfig::new(db).toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_databus"))
        .arg("admin")
        .arg(format!("--config={}", path.display()))
        .args(args)
        .output()
        .unwrap();
    AdminRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
