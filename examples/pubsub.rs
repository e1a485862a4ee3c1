//! What the original service's `example_cli` did, with the `redis` crate:
//! publish one message, then consume in a loop, committing each message.
//!
//! Against `scripts/run-local.sh`:
//!
//! ```sh
//! cargo run --example pubsub                 # runs until Ctrl-C
//! cargo run --example pubsub -- --count 1    # stops after one message
//! ```
//!
//! Options: `--port 6205`, `--topic test156`, `--count N`.

use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

const CREDENTIALS: &str = "app_key1:app_secret1@group_name1";

fn connect(port: u16, auth: String) -> redis::RedisResult<redis::Connection> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp("127.0.0.1".into(), port),
        redis: RedisConnectionInfo {
            password: Some(auth),
            ..Default::default()
        },
    };
    redis::Client::open(info)?.get_connection()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut port, mut topic, mut count) = (6205u16, "test156".to_owned(), None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse()?,
            "--topic" => topic = value,
            "--count" => count = Some(value.parse::<usize>()?),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }

    // Publish: SET <key> <value>; OK means Kafka acknowledged it.
    let mut publisher = connect(port, format!("{CREDENTIALS}/topic={topic}&role=pub"))?;
    let value = format!(r#"{{"hello":"databus","pid":{}}}"#, std::process::id());
    redis::cmd("SET")
        .arg("example")
        .arg(&value)
        .query::<()>(&mut publisher)?;
    println!("published {value}");

    // Consume: MGET json long-polls for a batch; SET <partition> <offset>
    // commits, so a restart resumes after the last committed message.
    let mut subscriber = connect(port, format!("{CREDENTIALS}/topic={topic}&role=sub"))?;
    let mut received = 0;
    while count.is_none_or(|n| received < n) {
        let batch: Vec<Vec<u8>> = redis::cmd("MGET").arg("json").query(&mut subscriber)?;
        for raw in batch {
            println!("received {}", String::from_utf8_lossy(&raw));
            let message: serde_json::Value = serde_json::from_slice(&raw)?;
            let (partition, offset) = (&message["partition"], &message["offset"]);
            redis::cmd("SET")
                .arg(partition.to_string())
                .arg(offset.to_string())
                .query::<()>(&mut subscriber)?;
            received += 1;
        }
    }
    Ok(())
}
