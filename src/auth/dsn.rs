//! The AUTH string grammar (protocol.md §2):
//! `<key>:<secret>@<group>/topic=<topic>&role=<pub|sub>[&color=<color>]`.
//!
//! Parsing is pure: whether the credentials are *valid* is the snapshot's business.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Pub,
    Sub,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pub => "pub",
            Role::Sub => "sub",
        }
    }
}

/// A parsed AUTH string. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    pub key: String,
    pub secret: String,
    pub group: String,
    pub topic: String,
    pub role: Role,
    /// Empty when the client gave no color.
    pub color: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("malformed auth string")]
    Malformed,
    #[error("role is neither pub nor sub")]
    BadRole,
    #[error("color is not 1 to 64 of A-Z a-z 0-9 _ . -")]
    BadColor,
}

/// The longest color: it becomes part of a consumer group's name.
pub const MAX_COLOR_LEN: usize = 64;

/// A color is 1 to 64 ASCII letters, digits, `_`, `.` or `-` (protocol.md §5):
/// it names a consumer group (`<group>-<color>`) and travels in a header.
fn is_valid_color(color: &str) -> bool {
    (1..=MAX_COLOR_LEN).contains(&color.len())
        && color
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Dsn {
    pub fn parse(raw: &[u8]) -> Result<Dsn, DsnError> {
        let text = std::str::from_utf8(raw).map_err(|_| DsnError::Malformed)?;
        // Exactly one of each separator: a second ':' or '@' would make the split
        // ambiguous, and ambiguity in credentials is a bug waiting to happen.
        for sep in [':', '@', '/'] {
            if text.matches(sep).count() != 1 {
                return Err(DsnError::Malformed);
            }
        }
        let (key, rest) = text.split_once(':').ok_or(DsnError::Malformed)?;
        let (secret, rest) = rest.split_once('@').ok_or(DsnError::Malformed)?;
        let (group, query) = rest.split_once('/').ok_or(DsnError::Malformed)?;
        if key.is_empty() || secret.is_empty() || group.is_empty() {
            return Err(DsnError::Malformed);
        }

        let (mut topic, mut role, mut color) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Last of a repeated name wins; unknown names (old clients send
            // `offset=`) are ignored.
            match name.to_ascii_lowercase().as_str() {
                "topic" => topic = Some(value),
                "role" => role = Some(value),
                "color" => color = Some(value),
                _ => {}
            }
        }
        let topic = topic.filter(|t| !t.is_empty()).ok_or(DsnError::Malformed)?;
        let role = match role {
            Some("pub") => Role::Pub,
            Some("sub") => Role::Sub,
            _ => return Err(DsnError::BadRole),
        };
        // `color=` with nothing is no color, as it always was.
        let color = color.unwrap_or("");
        if !color.is_empty() && !is_valid_color(color) {
            return Err(DsnError::BadColor);
        }
        Ok(Dsn {
            key: key.to_owned(),
            secret: secret.to_owned(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            role,
            color: color.to_owned(),
        })
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dsn")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("group", &self.group)
            .field("topic", &self.topic)
            .field("role", &self.role)
            .field("color", &self.color)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Dsn {
        Dsn::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn parses_the_seed_examples() {
        let d = ok("app_key1:app_secret1@group_name1/topic=test156&role=pub");
        assert_eq!(
            (
                d.key.as_str(),
                d.secret.as_str(),
                d.group.as_str(),
                d.topic.as_str()
            ),
            ("app_key1", "app_secret1", "group_name1", "test156")
        );
        assert_eq!(d.role, Role::Pub);
        assert_eq!(d.color, "");
        assert_eq!(ok("k:s@g/topic=t&role=sub&color=red").color, "red");
    }

    #[test]
    fn names_are_case_insensitive_values_are_not_unknown_ignored_last_wins() {
        let d = ok("k:s@g/TOPIC=T1&Role=sub&offset=5&topic=T2&color=Blue");
        assert_eq!(d.topic, "T2");
        assert_eq!(d.role, Role::Sub);
        assert_eq!(d.color, "Blue");
        assert_eq!(
            Dsn::parse(b"k:s@g/topic=t&role=PUB"),
            Err(DsnError::BadRole)
        );
    }

    #[test]
    fn malformed_strings() {
        for bad in [
            "",
            "garbage",
            "k:s@g",
            "k:s@g/role=pub",
            "k:s@g/topic=&role=pub",
            ":s@g/topic=t&role=pub",
            "k:@g/topic=t&role=pub",
            "k:s@/topic=t&role=pub",
            "k:s:x@g/topic=t&role=pub",
            "k:s@@g/topic=t&role=pub",
            "k:s@g/topic=t/x&role=pub",
            "k@s:g/topic=t&role=pub",
        ] {
            assert_eq!(
                Dsn::parse(bad.as_bytes()),
                Err(DsnError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            Dsn::parse(b"k:s@g/topic=t&role=\xff"),
            Err(DsnError::Malformed)
        );
    }

    #[test]
    fn bad_or_missing_role() {
        assert_eq!(
            Dsn::parse(b"k:s@g/topic=t&role=admin"),
            Err(DsnError::BadRole)
        );
        assert_eq!(Dsn::parse(b"k:s@g/topic=t"), Err(DsnError::BadRole));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let text = format!("{:?}", ok("k:hunter2@g/topic=t&role=pub"));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn colors_are_1_to_64_of_a_small_alphabet() {
        assert_eq!(
            ok("k:s@g/topic=t&role=sub&color=eu-1_a.b").color,
            "eu-1_a.b"
        );
        assert_eq!(ok("k:s@g/topic=t&role=sub&color=").color, "", "no color");
        let longest = "c".repeat(MAX_COLOR_LEN);
        assert_eq!(
            ok(&format!("k:s@g/topic=t&role=pub&color={longest}")).color,
            longest
        );
        for bad in ["b%40d", "a b", "x+y", "\u{e9}t\u{e9}"] {
            let raw = format!("k:s@g/topic=t&role=sub&color={bad}");
            assert_eq!(Dsn::parse(raw.as_bytes()), Err(DsnError::BadColor), "{bad}");
        }
        let long = format!(
            "k:s@g/topic=t&role=sub&color={}",
            "c".repeat(MAX_COLOR_LEN + 1)
        );
        assert_eq!(Dsn::parse(long.as_bytes()), Err(DsnError::BadColor));
    }
}
