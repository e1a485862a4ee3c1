//! Fuzzes `databus::auth::Dsn::parse`, the AUTH string grammar of protocol.md §2:
//! `<key>:<secret>@<group>/topic=<topic>&role=<pub|sub>[&color=<color>]`.
//!
//! Checked, besides "no panic", for every string it accepts:
//! - the string is UTF-8 with exactly one ':', one '@' and one '/', and key, secret and group
//!   are the non-empty pieces between them;
//! - topic, role and color are the values of the last parameter of that name (names in any
//!   case, split on the first '='), the topic is not empty and the role is `pub` or `sub`;
//! - round trip: the canonical string rebuilt from the fields parses to the same value.
#![no_main]

use databus::auth::Dsn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dsn) = Dsn::parse(data) else {
        return;
    };
    let text = std::str::from_utf8(data).expect("accepted bytes that are not UTF-8");
    for sep in [':', '@', '/'] {
        assert_eq!(text.matches(sep).count(), 1, "{sep:?} in {text:?}");
    }
    let (key, rest) = text.split_once(':').expect("counted above");
    let (secret, rest) = rest.split_once('@').expect("counted above");
    let (group, query) = rest.split_once('/').expect("counted above");
    assert!(
        !key.is_empty() && !secret.is_empty() && !group.is_empty(),
        "{text:?}"
    );
    assert_eq!(
        (key, secret, group),
        (&*dsn.key, &*dsn.secret, &*dsn.group),
        "{text:?}"
    );

    // Independent of the parser's own loop: scan backwards for the last occurrence.
    let last = |wanted: &str| {
        query.split('&').rev().find_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            name.eq_ignore_ascii_case(wanted).then_some(value)
        })
    };
    assert!(!dsn.topic.is_empty(), "{text:?}");
    assert_eq!(last("topic"), Some(&*dsn.topic), "{text:?}");
    assert!(matches!(last("role"), Some("pub" | "sub")), "{text:?}");
    assert_eq!(last("role"), Some(dsn.role.as_str()), "{text:?}");
    assert_eq!(last("color").unwrap_or(""), dsn.color, "{text:?}");

    let canonical = format!(
        "{}:{}@{}/topic={}&role={}&color={}",
        dsn.key,
        dsn.secret,
        dsn.group,
        dsn.topic,
        dsn.role.as_str(),
        dsn.color
    );
    assert_eq!(Dsn::parse(canonical.as_bytes()), Ok(dsn), "{canonical:?}");
});
