//! The subscriber role (protocol.md §5): `MGET [pb|json]` fetches the next batch
//! from this connection's consumer-group member, `SET <partition> <offset>`
//! commits.

use bytes::Bytes;

use super::backend::{Membership, Undelivered};
use super::Reply;
use crate::auth::Dsn;
use crate::errors;
use crate::message::{Encoding, Fetched, Pick};

pub struct Subscriber<M> {
    pub cluster: String,
    topic: String,
    /// The AUTH color: which records this connection gets.
    color: Bytes,
    member: M,
}

impl<M: Membership> Subscriber<M> {
    pub fn new(dsn: &Dsn, cluster: String, member: M) -> Subscriber<M> {
        Subscriber {
            cluster,
            topic: dsn.topic.clone(),
            color: Bytes::copy_from_slice(dsn.color.as_bytes()),
            member,
        }
    }

    /// `MGET [pb|json]`. The fetch starts when the writer gets to this reply
    /// (not when the command is read): pipelined MGETs of a client that does
    /// not read its replies fetch nothing more.
    pub fn mget(&self, args: &[Bytes]) -> Reply {
        let encoding = Encoding::from_arg(args.first().map(|a| a.as_ref()));
        let fetched = self.member.fetch(pick(self.color.clone(), encoding));
        let topic = self.topic.clone();
        Reply::later(async move {
            match fetched.await {
                Fetched::Messages(batch) => {
                    Reply::Array(batch.into_iter().map(Reply::Bulk).collect())
                }
                // The member takes a slot in the group for nothing: close it.
                Fetched::TooManyConsumers => {
                    Reply::ErrorThenClose(errors::too_many_consumers(&topic).into())
                }
                Fetched::Gone => Reply::ErrorThenClose(errors::SHUTTING_DOWN.into()),
                Fetched::Failed(why) => Reply::ErrorThenClose(errors::kafka(&why).into()),
            }
        })
    }

    /// This member's lag per partition.
    pub fn lag(&self) -> Vec<(i32, i64)> {
        self.member.lag()
    }

    /// `SET <partition> <offset>`: the group's position on that partition becomes
    /// `offset + 1`.
    pub fn commit(&self, partition: &[u8], offset: &[u8]) -> Reply {
        match (number::<i32>(partition), number::<i64>(offset)) {
            (Some(partition), Some(offset)) if partition >= 0 && offset >= 0 => {
                match self.member.commit(partition, offset) {
                    Ok(()) => Reply::OK,
                    Err(Undelivered) => {
                        Reply::error(errors::commit_not_delivered(partition, offset))
                    }
                }
            }
            _ => Reply::error(errors::COMMIT_PARAMS),
        }
    }
}

/// protocol.md §5: a record carrying a color goes only to the subscribers of
/// that color (each color's group reads the whole topic), one without a color
/// to every subscriber; the client gets it encoded as its MGET asked.
pub fn pick(color: Bytes, encoding: Encoding) -> Pick {
    Box::new(move |record| {
        let for_another = record
            .color
            .is_some_and(|c| !c.is_empty() && c != color.as_ref());
        (!for_another).then(|| record.encode(encoding))
    })
}

/// The consumer group of a subscriber: `<group>`, or `<group>-<color>` so that
/// each color consumes the whole topic on its own.
pub fn group_name(dsn: &Dsn) -> String {
    if dsn.color.is_empty() {
        dsn.group.clone()
    } else {
        format!("{}-{}", dsn.group, dsn.color)
    }
}

fn number<T: std::str::FromStr>(raw: &[u8]) -> Option<T> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}
