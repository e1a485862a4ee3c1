//! The command line of `databus admin`: options anywhere, then the words of
//! one action.

use std::path::PathBuf;

use super::rules::Operation;

pub const USAGE: &str = "\
usage: databus admin --config <config.toml> [--json] <action>

  apps add KEY [--cluster C]    new app with a random secret, printed once (only its hash is stored)
  apps list                     every app: id, key, cluster, secret form, state, grants, quota
  apps rotate KEY               a new secret; the old one is refused from the next refresh
  apps disable KEY              soft delete (deleted_at): its connections close at the next refresh
  apps quota KEY [--records-per-sec N] [--bytes-per-sec N] [--connections N]
                                cap the app's publishing and connections (0 = no cap);
                                without options, shows the caps
  grants add KEY GROUP TOPIC pub|sub|both
  grants remove KEY GROUP TOPIC
  grants list [KEY]

-conf=<path> (the gateway's own flag) works as --config. Exit status: 0 done,
1 refused (the reason on stderr), 2 usage.";

/// One run of `databus admin`.
#[derive(Debug, PartialEq)]
pub struct Invocation {
    pub config: PathBuf,
    pub json: bool,
    pub action: Action,
}

#[derive(Debug, PartialEq)]
pub enum Action {
    AppsAdd {
        key: String,
        cluster: Option<String>,
    },
    AppsList,
    AppsRotate {
        key: String,
    },
    AppsDisable {
        key: String,
    },
    AppsQuota {
        key: String,
        change: QuotaChange,
    },
    GrantsAdd {
        key: String,
        group: String,
        topic: String,
        operation: Operation,
    },
    GrantsRemove {
        key: String,
        group: String,
        topic: String,
    },
    GrantsList {
        key: Option<String>,
    },
}

/// The caps `apps quota` sets; None leaves one as it is, Some(0) removes it.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct QuotaChange {
    pub records_per_sec: Option<u64>,
    pub bytes_per_sec: Option<u64>,
    pub connections: Option<u64>,
}

impl QuotaChange {
    pub fn is_empty(&self) -> bool {
        *self == QuotaChange::default()
    }
}

/// `Err` holds what to tell the user; `Ok(None)` asks for the usage text.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Invocation>, String> {
    let mut args = args.into_iter();
    let mut config = None;
    let mut json = false;
    let mut cluster = None;
    let mut quota = QuotaChange::default();
    let mut words = Vec::new();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with('-') => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| match &inline {
            Some(v) => Ok(v.clone()),
            None => args.next().ok_or(format!("{name} needs {what}")),
        };
        match name.as_str() {
            "-h" | "--help" | "help" => return Ok(None),
            "--json" => json = true,
            "-conf" | "--conf" | "-config" | "--config" => {
                config = Some(PathBuf::from(value("a path")?))
            }
            "--cluster" => cluster = Some(value("a cluster name")?),
            "--records-per-sec" => quota.records_per_sec = Some(number(&name, value("a number")?)?),
            "--bytes-per-sec" => quota.bytes_per_sec = Some(number(&name, value("a number")?)?),
            "--connections" => quota.connections = Some(number(&name, value("a number")?)?),
            other if other.starts_with('-') && other.len() > 1 => {
                return Err(format!("unknown option {other:?}"))
            }
            _ => words.push(arg),
        }
    }
    let config = config.ok_or("no configuration file given (--config <path>)")?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let owned = |s: &str| s.to_owned();
    let action = match words.as_slice() {
        ["apps", "add", key] => Action::AppsAdd {
            key: owned(key),
            cluster: cluster.take(),
        },
        ["apps", "list"] => Action::AppsList,
        ["apps", "rotate", key] => Action::AppsRotate { key: owned(key) },
        ["apps", "disable", key] => Action::AppsDisable { key: owned(key) },
        ["apps", "quota", key] => Action::AppsQuota {
            key: owned(key),
            change: quota,
        },
        ["grants", "add", key, group, topic, operation] => Action::GrantsAdd {
            key: owned(key),
            group: owned(group),
            topic: owned(topic),
            operation: Operation::parse(operation).ok_or(format!(
                "operation must be pub, sub or both, not {operation:?}"
            ))?,
        },
        ["grants", "remove", key, group, topic] => Action::GrantsRemove {
            key: owned(key),
            group: owned(group),
            topic: owned(topic),
        },
        ["grants", "list"] => Action::GrantsList { key: None },
        ["grants", "list", key] => Action::GrantsList {
            key: Some(owned(key)),
        },
        [] => return Err("no action given".into()),
        other => return Err(format!("unknown action {:?}", other.join(" "))),
    };
    if cluster.is_some() {
        return Err("--cluster belongs to `apps add`".into());
    }
    if !quota.is_empty() && !matches!(action, Action::AppsQuota { .. }) {
        return Err(
            "--records-per-sec, --bytes-per-sec and --connections belong to `apps quota`".into(),
        );
    }
    Ok(Some(Invocation {
        config,
        json,
        action,
    }))
}

fn number(name: &str, text: String) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{name} takes a whole number (0 for no cap), not {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<Option<Invocation>, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn options_go_anywhere() {
        let got = parsed("apps --json add k1 --cluster=c2 -conf=/etc/d.toml").unwrap();
        assert_eq!(
            got,
            Some(Invocation {
                config: "/etc/d.toml".into(),
                json: true,
                action: Action::AppsAdd {
                    key: "k1".into(),
                    cluster: Some("c2".into())
                }
            })
        );
        let got = parsed("--config d.toml grants add k g t both")
            .unwrap()
            .unwrap();
        assert_eq!(
            got.action,
            Action::GrantsAdd {
                key: "k".into(),
                group: "g".into(),
                topic: "t".into(),
                operation: Operation::Both
            }
        );
        let got = parsed("--config d.toml apps quota k --records-per-sec 100 --connections=0")
            .unwrap()
            .unwrap();
        assert_eq!(
            got.action,
            Action::AppsQuota {
                key: "k".into(),
                change: QuotaChange {
                    records_per_sec: Some(100),
                    bytes_per_sec: None,
                    connections: Some(0)
                }
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (line, want) in [
            ("apps list", "no configuration file given (--config <path>)"),
            ("--config d apps", "unknown action \"apps\""),
            ("--config d", "no action given"),
            (
                "--config d apps remove k",
                "unknown action \"apps remove k\"",
            ),
            (
                "--config d grants add k g t all",
                "operation must be pub, sub or both, not \"all\"",
            ),
            (
                "--config d apps list --cluster c",
                "--cluster belongs to `apps add`",
            ),
            ("--config d apps list --force", "unknown option \"--force\""),
            (
                "--config d apps quota k --records-per-sec lots",
                "--records-per-sec takes a whole number (0 for no cap), not \"lots\"",
            ),
            ("--config", "--config needs a path"),
        ] {
            assert_eq!(parsed(line), Err(want.to_owned()), "{line}");
        }
        assert_eq!(parsed("--help"), Ok(None));
    }
}
