//! idle-conns: the per-connection cost measurement, C connections held
//! open and idle while the caller reads the server's RSS, threads,
//! descriptors and CPU. A `{n}` in the DSN becomes the connection's number,
//! so that subscribers can each have a color, and so a group, of their own.

use std::time::{Duration, Instant};

use crate::args::Args;
use crate::resp::connect;
use crate::Result;

/// idle-conns: C connections, opened a few hundred at a time, held idle.
pub async fn idle_conns(args: &Args) -> Result<String> {
    raise_nofile_limit(args.conns as u64 + 100)?;
    let dsn = (!args.dsn.is_empty()).then_some(args.dsn.as_str());
    let start = Instant::now();
    let mut held = Vec::with_capacity(args.conns);
    // Bounded parallelism: a burst of 10,000 connects overflows the listen
    // backlog and turns into SYN retries of a second or more.
    for chunk in (0..args.conns).collect::<Vec<_>>().chunks(200) {
        let opening: Vec<_> = chunk
            .iter()
            .map(|n| {
                let addr = args.addr.clone();
                let dsn = dsn.map(|d| d.replace("{n}", &n.to_string()));
                tokio::spawn(async move { connect(&addr, dsn.as_deref()).await })
            })
            .collect();
        for o in opening {
            // The read buffer is dropped: only the socket is held.
            held.push(o.await??.0);
        }
    }
    let opened_in = start.elapsed().as_secs_f64();
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready conns={}", held.len())?;
        out.flush()?;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    // Every connection must still be open: the server did not shed any.
    let mut closed = 0;
    for stream in &held {
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    if closed > 0 {
        return Err(format!(
            "{closed} of {} connections were closed by the server",
            held.len()
        )
        .into());
    }
    Ok(format!(
        "result mode=idle-conns conns={} open_secs={opened_in:.2} held_secs={:.0}",
        held.len(),
        args.secs
    ))
}

/// Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit).
fn raise_nofile_limit(want: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if limit.rlim_cur >= want {
        return Ok(());
    }
    if limit.rlim_max < want {
        return Err(format!("RLIMIT_NOFILE hard limit {} < {want}", limit.rlim_max).into());
    }
    limit.rlim_cur = want;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
