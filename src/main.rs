//! The `databus` binary: reads the configuration named on the command line, sets
//! up logging and runs the gateway until SIGTERM/SIGINT; or, as `databus admin
//! ...`, manages apps, grants and quotas in its MySQL (`databus::admin`).

use std::path::PathBuf;
use std::process::ExitCode;

use databus::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: databus -conf=<config.toml> | --config <config.toml>
       databus admin --help";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|first| first == "admin") {
        return databus::admin::main(args.skip(1));
    }
    let path = match config_path(args) {
        Ok(Some(path)) => path,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("databus: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = Config::load(&path).and_then(|config| {
        init_logging(config.log.format);
        databus::startup::run(config)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("databus: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr, as text or JSON (`[log] format`), filtered by
/// `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// `-conf=<path>` (the original service's flag), `-conf <path>`, `--config <path>`
/// or `--config=<path>`. `Ok(None)` for `--help`.
fn config_path(mut args: impl Iterator<Item = String>) -> Result<Option<PathBuf>, String> {
    let mut path = None;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "-V" | "--version" => {
                println!("databus {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-conf" | "--conf" | "-config" | "--config" => {
                args.next().ok_or(format!("{arg} needs a path"))?
            }
            other => match other.split_once('=') {
                Some(("-conf" | "--conf" | "-config" | "--config", value)) => value.to_owned(),
                _ => return Err(format!("unknown argument {other:?}")),
            },
        };
        path = Some(PathBuf::from(value));
    }
    path.map(Some)
        .ok_or_else(|| "no configuration file given".to_owned())
}
