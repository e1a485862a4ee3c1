//! The command line: mode, options and their defaults, and which options each
//! mode needs. Any mistake prints the usage and exits with status 2.

#[derive(Clone, Debug)]
pub struct Args {
    pub mode: String,
    pub addr: String,
    pub dsn: String,
    pub brokers: String,
    pub topic: String,
    pub conns: usize,
    pub pipeline: usize,
    pub size: usize,
    pub secs: f64,
    pub rate: Option<f64>,
    pub consumers: usize,
    pub messages: u64,
    pub timeout: f64,
    pub partitions: i32,
    /// `--kafka key=value`: librdkafka properties for the direct producer,
    /// on top of the gateway's defaults (bench.sh gives the gateway the same).
    pub kafka: Vec<(String, String)>,
    /// `--http host:port`: the gateway's metrics endpoint (mget-latency).
    pub http: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen <produce-gateway|produce-direct|ping-gateway|consume-gateway|consume-direct|preload\
         |idle-conns|mock-broker|mget-latency> [--addr A] [--http H] [--dsn DSN] [--brokers B] [--topic T] [-c C] [-p P] [-s S] \
         [-t SECS] [--rate R] [-k K] [-m M] [--timeout SECS] [--partitions N] [--kafka KEY=VALUE]...\n(see the module doc of benches/loadgen/main.rs)"
    );
    std::process::exit(2)
}

pub fn parse_args() -> Args {
    let mut args = Args {
        mode: String::new(),
        addr: String::new(),
        dsn: String::new(),
        brokers: String::new(),
        topic: String::new(),
        conns: 50,
        pipeline: 64,
        size: 100,
        secs: 20.0,
        rate: None,
        consumers: 4,
        messages: 100_000,
        timeout: 60.0,
        partitions: 6,
        kafka: Vec::new(),
        http: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                usage()
            })
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> T {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name}: not a number: {v}");
                usage()
            })
        }
        match arg.as_str() {
            "--bench" => {}
            "--addr" => args.addr = value("--addr"),
            "--dsn" => args.dsn = value("--dsn"),
            "--brokers" => args.brokers = value("--brokers"),
            "--topic" => args.topic = value("--topic"),
            "-c" => args.conns = num("-c", value("-c")),
            "-p" => args.pipeline = num("-p", value("-p")),
            "-s" => args.size = num("-s", value("-s")),
            "-t" => args.secs = num("-t", value("-t")),
            "--rate" => args.rate = Some(num("--rate", value("--rate"))),
            "-k" => args.consumers = num("-k", value("-k")),
            "-m" => args.messages = num("-m", value("-m")),
            "--timeout" => args.timeout = num("--timeout", value("--timeout")),
            "--partitions" => args.partitions = num("--partitions", value("--partitions")),
            "--http" => args.http = value("--http"),
            "--kafka" => {
                let pair = value("--kafka");
                let Some((key, val)) = pair.split_once('=') else {
                    eprintln!("--kafka takes key=value, not {pair}");
                    usage()
                };
                args.kafka.push((key.to_owned(), val.to_owned()));
            }
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => {
                eprintln!("unknown option {s}");
                usage()
            }
            s if args.mode.is_empty() => args.mode = s.to_owned(),
            s => {
                eprintln!("unexpected argument {s}");
                usage()
            }
        }
    }
    let need = |v: &str, name: &str| {
        if v.is_empty() {
            eprintln!("{} needs {name}", args.mode);
            usage()
        }
    };
    match args.mode.as_str() {
        "produce-gateway" | "consume-gateway" => {
            need(&args.addr, "--addr");
            need(&args.dsn, "--dsn");
        }
        "mget-latency" => {
            need(&args.addr, "--addr");
            need(&args.dsn, "--dsn");
            need(&args.http, "--http");
        }
        "ping-gateway" | "idle-conns" => need(&args.addr, "--addr"),
        "mock-broker" => need(&args.topic, "--topic"),
        "produce-direct" | "consume-direct" | "preload" => {
            need(&args.brokers, "--brokers");
            need(&args.topic, "--topic");
        }
        "" => usage(),
        m => {
            eprintln!("unknown mode {m}");
            usage()
        }
    }
    if args.conns == 0 || args.pipeline == 0 || args.consumers == 0 || args.secs <= 0.0 {
        eprintln!("-c, -p, -k and -t must be positive");
        usage()
    }
    args
}
