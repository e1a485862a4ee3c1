//! The subscriber role (protocol.md §5). Consuming (MGET, offset commits) is built
//! on the control thread's consumer service; until then an authenticated
//! subscriber connection is accepted and told plainly that it cannot consume yet.

use super::Reply;
use crate::auth::Dsn;

pub struct Subscriber {
    pub cluster: String,
    pub group: String,
    pub topic: String,
}

impl Subscriber {
    pub fn new(dsn: &Dsn, cluster: String) -> Subscriber {
        let group = if dsn.color.is_empty() {
            dsn.group.clone()
        } else {
            format!("{}-{}", dsn.group, dsn.color)
        };
        Subscriber {
            cluster,
            group,
            topic: dsn.topic.clone(),
        }
    }

    pub fn mget(&self) -> Reply {
        Reply::error("ERR MGET is not implemented yet")
    }

    pub fn commit(&self) -> Reply {
        Reply::error("ERR offset commits are not implemented yet")
    }
}
