//! `agentvisor-bench`: a load generator for agentvisor.
//!
//! Every scenario starts the release daemon itself (on a free loopback port, with a temporary
//! data directory and the mock agent), drives it with real WebSocket clients, and prints one
//! JSON result line on stdout and a readable summary on stderr. Everything is bounded: client
//! counts are capped, every wait has a deadline, and a daemon that exits or stops answering
//! aborts the scenario with an error. Traffic goes to 127.0.0.1 only.
//!
//! ```text
//! agentvisor-bench connections --n 10000
//! agentvisor-bench roundtrip --clients 50 --requests 2000
//! agentvisor-bench fanout --subs 1000 --lines 2000 --bytes 200 [--rate 100]
//! agentvisor-bench history --records 1000000
//! agentvisor-bench abuse --records 100000 --abusers 4
//! agentvisor-bench runs --projects 10 --runs 300
//! agentvisor-bench floor --subs 1000 --lines 2000 --bytes 200
//! agentvisor-bench cluster --subs 1000 --lines 300 --rate 100
//! agentvisor-bench all
//! ```

mod client;
mod daemon;
mod floor;
mod report;
mod scenarios;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The error type of the whole bench: a sentence saying what went wrong.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, Error>;

/// Builds an [`Error`] from a message.
pub fn err(msg: impl Into<String>) -> Error {
    msg.into().into()
}

/// The open-file limit in force (set at start; the daemon gets the same with `ulimit -n`).
pub static NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The name of the bench's client runtime threads (their CPU time is reported).
pub const CLIENT_THREADS: &str = "bench-client";

/// Load generator for agentvisor (loopback only; bounded in count and time).
#[derive(Parser, Debug)]
#[command(name = "agentvisor-bench", version, about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The daemon executable (a release build).
    #[arg(long, global = true, default_value = "target/release/agentvisor")]
    pub daemon: PathBuf,
    /// The mock agent executable [default: `mock-agent` next to the daemon].
    #[arg(long, global = true)]
    pub mock: Option<PathBuf>,
    /// Hard time limit of one scenario, in seconds (the scenario aborts with an error).
    #[arg(long, global = true, default_value_t = 900)]
    pub time_limit: u64,
    /// Keep the daemon's temporary data directory (its path is printed).
    #[arg(long, global = true)]
    pub keep_data: bool,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Open N idle connections and hold them: resident memory per connection, connect rate.
    Connections(scenarios::connections::Params),
    /// `project_list` (with 100 projects) and `health_check` from many clients: throughput and
    /// latency percentiles.
    Roundtrip(scenarios::roundtrip::Params),
    /// One project, S subscribers, the mock agent printing L lines: end-to-end latency,
    /// deliveries/s, completeness; then the same through the floor server, as a ratio.
    Fanout(scenarios::fanout::Params),
    /// A project with N stored records: `get_messages` latest / since, and replay on join.
    History(scenarios::history::Params),
    /// History abuse beside a live run: another project's live output and `execute_accepted`
    /// latency, without and with clients looping heavy history requests.
    Abuse(scenarios::abuse::Params),
    /// Runs per minute across projects, and the daemon's overhead per run.
    Runs(scenarios::runs::Params),
    /// The fan-out through a minimal actix-web + actix-ws broadcast server (the floor).
    Floor(scenarios::fanout::LoadParams),
    /// The fan-out with the subscribers spread over a cluster of 3 nodes on NATS, then the
    /// same load on one node.
    Cluster(scenarios::cluster::Params),
    /// A quick version of every scenario.
    All,
}

/// Resolved executables.
#[derive(Debug, Clone)]
pub struct Paths {
    pub daemon: PathBuf,
    pub mock: PathBuf,
    pub keep_data: bool,
}

impl Common {
    fn paths(&self) -> Res<Paths> {
        let daemon = std::fs::canonicalize(&self.daemon).map_err(|e| {
            err(format!(
                "daemon executable {} not found ({e}); build it with `cargo build --release -p agentvisor`",
                self.daemon.display()
            ))
        })?;
        let mock = match &self.mock {
            Some(m) => m.clone(),
            None => daemon.with_file_name("mock-agent"),
        };
        let mock = std::fs::canonicalize(&mock).map_err(|e| {
            err(format!(
                "mock agent {} not found ({e}); build it with `cargo build --release -p agentvisor-mock-agent`",
                mock.display()
            ))
        })?;
        Ok(Paths {
            daemon,
            mock,
            keep_data: self.keep_data,
        })
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agentvisor-bench: error: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Res<()> {
    let paths = cli.common.paths()?;
    // The file limit is raised before anything is spawned, so the daemon inherits it. Each side
    // (bench and daemon) needs one descriptor per connection and some to spare.
    let nofile = match &cli.scenario {
        Scenario::Connections(p) => daemon::raise_nofile(p.n as u64 + 4096, p.n as u64 + 512)?,
        _ => daemon::raise_nofile(16384, 8192)?,
    };
    NOFILE.store(nofile, std::sync::atomic::Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(CLIENT_THREADS)
        .build()?;
    let limit = Duration::from_secs(cli.common.time_limit);
    rt.block_on(async move {
        let scenarios = match cli.scenario {
            Scenario::All => all_quick(),
            s => vec![s],
        };
        for s in scenarios {
            let name = scenario_name(&s);
            let started = std::time::Instant::now();
            let load_before = report::loadavg();
            let out = tokio::time::timeout(limit, run_one(s, &paths))
                .await
                .map_err(|_| {
                    err(format!(
                        "scenario {name} exceeded its time limit of {}s",
                        limit.as_secs()
                    ))
                })??;
            report::emit(name, out, load_before, report::loadavg(), started.elapsed());
        }
        Ok(())
    })
}

fn scenario_name(s: &Scenario) -> &'static str {
    match s {
        Scenario::Connections(_) => "connections",
        Scenario::Roundtrip(_) => "roundtrip",
        Scenario::Fanout(_) => "fanout",
        Scenario::History(_) => "history",
        Scenario::Abuse(_) => "abuse",
        Scenario::Runs(_) => "runs",
        Scenario::Floor(_) => "floor",
        Scenario::Cluster(_) => "cluster",
        Scenario::All => "all",
    }
}

async fn run_one(s: Scenario, paths: &Paths) -> Res<report::Outcome> {
    match s {
        Scenario::Connections(p) => scenarios::connections::run(paths, &p).await,
        Scenario::Roundtrip(p) => scenarios::roundtrip::run(paths, &p).await,
        Scenario::Fanout(p) => scenarios::fanout::run(paths, &p).await,
        Scenario::History(p) => scenarios::history::run(paths, &p).await,
        Scenario::Abuse(p) => scenarios::abuse::run(paths, &p).await,
        Scenario::Runs(p) => scenarios::runs::run(paths, &p).await,
        Scenario::Floor(p) => scenarios::fanout::run_floor_only(paths, &p).await,
        Scenario::Cluster(p) => scenarios::cluster::run(paths, &p).await,
        Scenario::All => Err(err("`all` cannot be nested")),
    }
}

/// The quick versions that `all` runs, in order.
fn all_quick() -> Vec<Scenario> {
    use scenarios::*;
    let fan = |subs: usize, lines: u64, rate: f64| {
        Scenario::Fanout(fanout::Params {
            load: fanout::LoadParams {
                subs,
                lines: Some(lines),
                bytes: 200,
                rate,
            },
            no_floor: false,
        })
    };
    vec![
        Scenario::Connections(connections::Params {
            n: 1000,
            hold: 6,
            ping_interval: 2,
            concurrency: 128,
        }),
        Scenario::Roundtrip(roundtrip::Params {
            clients: 20,
            requests: 200,
            projects: 100,
        }),
        fan(1, 20_000, 0.0),
        fan(100, 2_000, 0.0),
        fan(1000, 500, 0.0),
        fan(1000, 300, 100.0),
        Scenario::History(history::Params {
            records: 100_000,
            bytes: 200,
            reps: 10,
            replay: 10_000,
            generate: history::Generate::Direct,
        }),
        Scenario::Abuse(abuse::Params {
            records: 20_000,
            bytes: 1000,
            abusers: 2,
            lines: 500,
            rate: 200.0,
            runs: 5,
        }),
        Scenario::Runs(runs::Params {
            projects: 10,
            runs: 100,
            overhead_runs: 15,
            prompt: "mock:success".into(),
        }),
    ]
}
