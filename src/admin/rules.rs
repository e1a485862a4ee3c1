//! What `databus admin` checks before it writes: names an AUTH string and
//! Kafka can carry, and grants that cannot put two parties in one consumer
//! group. Pure functions over rows already read, so each rule has its test.

use std::fmt;

use crate::auth::snapshot::{OP_PUBLISH, OP_SUBSCRIBE};

/// The longest key, group or topic: the columns are `VARCHAR(45)`.
pub const MAX_NAME_LEN: usize = 45;

/// `auth.operation` as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Pub,
    Sub,
    Both,
}

impl Operation {
    pub fn parse(word: &str) -> Option<Operation> {
        match word {
            "pub" => Some(Operation::Pub),
            "sub" => Some(Operation::Sub),
            "both" => Some(Operation::Both),
            _ => None,
        }
    }

    pub fn bits(self) -> i64 {
        match self {
            Operation::Pub => OP_PUBLISH,
            Operation::Sub => OP_SUBSCRIBE,
            Operation::Both => OP_PUBLISH | OP_SUBSCRIBE,
        }
    }

    /// The word for stored bits; other bit patterns show as numbers.
    pub fn name_of(bits: i64) -> String {
        match bits {
            OP_PUBLISH => "pub".into(),
            OP_SUBSCRIBE => "sub".into(),
            b if b == OP_PUBLISH | OP_SUBSCRIBE => "both".into(),
            other => other.to_string(),
        }
    }
}

/// A key, group or topic: 1 to 45 ASCII letters, digits, `.`, `_` or `-`.
/// Those travel in an AUTH string unquoted (no `:`, `@`, `/`, `&`, `=`) and
/// are legal in Kafka's topic and group names.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// A live grant, as `grants add` compares against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    pub key: String,
    pub group: String,
    pub topic: String,
    pub operation: i64,
}

/// Why a grant is not added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// The app already has this group and topic.
    Duplicate { operation: i64 },
    /// Another app has a grant of this group.
    GroupTaken { other_key: String },
    /// A subscriber of `group` (another grant's) with color `color` would
    /// join a consumer group of the new grant's name.
    DerivedByColor {
        group: String,
        other_key: String,
        color: String,
    },
    /// The new group's subscribers with color `color` would join
    /// `group`, another grant's consumer group.
    WouldDerive {
        group: String,
        other_key: String,
        color: String,
    },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::Duplicate { operation } => write!(
                f,
                "already granted (operation {}): remove it first to change it",
                Operation::name_of(*operation)
            ),
            Conflict::GroupTaken { other_key } => {
                write!(f, "the group is already granted to app {other_key:?}")
            }
            Conflict::DerivedByColor {
                group,
                other_key,
                color,
            } => write!(
                f,
                "a subscriber of group {group:?} (app {other_key:?}) with color {color:?} \
                 would join this group"
            ),
            Conflict::WouldDerive {
                group,
                other_key,
                color,
            } => write!(
                f,
                "this group's subscribers with color {color:?} would join group {group:?} \
                 (app {other_key:?})"
            ),
        }
    }
}

/// Checks a new grant against the live ones. The color rules are the
/// gateway's own (`AuthSnapshot::color_collides`): a colored subscriber joins
/// `<group>-<color>`, so two grants collide when one's group followed by `-`
/// starts the other's, both may subscribe and they differ in app or topic.
/// The gateway would refuse those subscribers; the admin refuses the grant
/// that makes them, saying who it would collide with.
pub fn conflict(live: &[GrantRow], new: &GrantRow) -> Option<Conflict> {
    if let Some(same) = live
        .iter()
        .find(|g| g.key == new.key && g.group == new.group && g.topic == new.topic)
    {
        return Some(Conflict::Duplicate {
            operation: same.operation,
        });
    }
    if let Some(other) = live
        .iter()
        .find(|g| g.group == new.group && g.key != new.key)
    {
        return Some(Conflict::GroupTaken {
            other_key: other.key.clone(),
        });
    }
    if new.operation & OP_SUBSCRIBE == 0 {
        return None;
    }
    let others = live.iter().filter(|g| {
        g.operation & OP_SUBSCRIBE != 0
            && (g.key.as_str(), g.topic.as_str()) != (&new.key, &new.topic)
    });
    for other in others {
        if let Some(color) = color_between(&other.group, &new.group) {
            return Some(Conflict::DerivedByColor {
                group: other.group.clone(),
                other_key: other.key.clone(),
                color: color.to_owned(),
            });
        }
        if let Some(color) = color_between(&new.group, &other.group) {
            return Some(Conflict::WouldDerive {
                group: other.group.clone(),
                other_key: other.key.clone(),
                color: color.to_owned(),
            });
        }
    }
    None
}

/// The color with which a subscriber of `group` would join `derived`.
fn color_between<'a>(group: &str, derived: &'a str) -> Option<&'a str> {
    derived
        .strip_prefix(group)?
        .strip_prefix('-')
        .filter(|color| !color.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(key: &str, group: &str, topic: &str, operation: i64) -> GrantRow {
        GrantRow {
            key: key.into(),
            group: group.into(),
            topic: topic.into(),
            operation,
        }
    }

    #[test]
    fn names_an_auth_string_and_kafka_can_carry() {
        assert!(check_name("key", "app_key-1.x").is_ok());
        for bad in ["", "a:b", "a@b", "a/b", "a&b", "a b", "é", &"x".repeat(46)] {
            assert!(check_name("key", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_name("group", "a/b"),
            Err("group \"a/b\" must be 1 to 45 of A-Z a-z 0-9 . _ -".into())
        );
    }

    #[test]
    fn each_conflict_is_found_and_named() {
        let live = [
            grant("a", "orders", "t", 3),
            grant("b", "billing", "t", 1),
            grant("b", "eu-west", "t", 3),
            grant("c", "pubonly", "t", 2),
        ];
        let check = |key, group, topic, op| conflict(&live, &grant(key, group, topic, op));
        assert_eq!(
            check("a", "orders", "t", 1),
            Some(Conflict::Duplicate { operation: 3 })
        );
        assert_eq!(
            check("a", "billing", "u", 2),
            Some(Conflict::GroupTaken {
                other_key: "b".into()
            })
        );
        let derived = check("a", "billing-x", "t", 1);
        assert_eq!(
            derived,
            Some(Conflict::DerivedByColor {
                group: "billing".into(),
                other_key: "b".into(),
                color: "x".into()
            })
        );
        assert_eq!(
            derived.unwrap().to_string(),
            "a subscriber of group \"billing\" (app \"b\") with color \"x\" would join this group"
        );
        assert_eq!(
            check("a", "eu", "t", 3),
            Some(Conflict::WouldDerive {
                group: "eu-west".into(),
                other_key: "b".into(),
                color: "west".into()
            })
        );
        // The same app's group for another topic collides too: the gateway
        // refuses those subscribers.
        assert!(matches!(
            check("a", "orders-eu", "u", 1),
            Some(Conflict::DerivedByColor { .. })
        ));
    }

    #[test]
    fn what_cannot_collide_is_allowed() {
        let live = [grant("a", "orders", "t", 3), grant("c", "pubonly", "t", 2)];
        let check = |key, group, topic, op| conflict(&live, &grant(key, group, topic, op));
        // The app's own group and topic: its colored subscribers are its own.
        assert_eq!(check("a", "orders-eu", "t", 3), None);
        // A second topic for the app's own group.
        assert_eq!(check("a", "orders", "u", 3), None);
        // Publishing makes no consumer group.
        assert_eq!(check("b", "orders-x", "t", 2), None);
        // A publish-only grant's name is no consumer group either.
        assert_eq!(check("b", "pubonly-x", "t", 1), None);
        // `ordersx` is not `orders-` anything.
        assert_eq!(check("b", "ordersx", "t", 1), None);
    }
}
