//! The agentvisor daemon: configuration, HTTP, signals and shutdown around the engine in
//! `agentvisor-actors`.

mod client;
mod cluster;
mod config;
mod console;
mod http;
mod logging;
mod readiness;
mod shutdown;
mod sse;
mod tls;

use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use agentvisor_actors::engine::{Engine, Lifecycle};
use agentvisor_actors::executor::{cgroup, process};
use agentvisor_actors::supervisor::{install_panic_hook, Supervisor};
use clap::{Parser, Subcommand};

/// Exit code for configuration errors.
const EXIT_CONFIG: i32 = 2;
/// Exit code when the daemon cannot start (the address is taken, …).
const EXIT_START: i32 = 1;

/// Drive AI coding agents remotely and together, over WebSocket. Without a subcommand,
/// `agentvisor` runs the daemon.
#[derive(Parser, Debug)]
#[command(
    name = "agentvisor",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    daemon: config::Args,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the same as no subcommand).
    Serve(Box<config::Args>),
    #[command(flatten)]
    Client(client::Command),
}

fn main() {
    client::run_if_asked();
    let args = match Cli::parse() {
        Cli {
            command: Some(Command::Client(c)),
            ..
        } => std::process::exit(client::main(c)),
        Cli {
            command: Some(Command::Serve(a)),
            ..
        } => *a,
        Cli { daemon, .. } => daemon,
    };
    serve(args)
}

/// The daemon.
fn serve(args: config::Args) -> ! {
    // First of all: from here on SIGTERM and SIGINT stop the daemon cleanly, whenever they come.
    let signals = match shutdown::StopSignals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agentvisor: cannot install signal handlers: {e}");
            std::process::exit(EXIT_START);
        }
    };
    readiness::claim_pm2_channel();
    let config = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentvisor: configuration error: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    logging::init(&config.log_format, &config.log_level);
    install_panic_hook();
    if let Err(e) = process::become_subreaper() {
        log::warn!("could not become a child subreaper ({e}); escaped agent processes are still swept by run id");
    }
    cgroup::init(config.cgroups);
    if config::token_on_command_line(std::env::args_os()) {
        log::warn!("the token was given with --token on the command line, where every local user can read it (ps, /proc/<pid>/cmdline): use AGENTVISOR_TOKEN_FILE instead");
    }
    if config.engine.fault_injection {
        log::warn!("FAULT INJECTION IS ENABLED: any client can crash actors with fault_inject. Never use this in production.");
    }
    // Two daemons on one data directory would interleave history writes: refuse the second.
    let _lock = match lock_data_dir(&config.engine.data_dir) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(EXIT_START);
        }
    };
    // Bind before anything starts, so a taken port fails fast and cleanly.
    let listener = match std::net::TcpListener::bind(config.listen) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.listen);
            std::process::exit(EXIT_START);
        }
    };
    // Replies and events are small frames that must leave at once: without TCP_NODELAY a frame
    // written after another can wait ~40 ms for the client's delayed ACK. Accepted sockets
    // inherit the option from the listener.
    if let Err(e) = set_nodelay(&listener) {
        log::warn!("could not set TCP_NODELAY: {e}");
    }
    let code = actix_rt::System::new().block_on(run(config, listener, signals));
    cgroup::release();
    std::process::exit(code);
}

fn set_nodelay(listener: &std::net::TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Holds an exclusive lock on `<data_dir>/.lock` for the life of the process.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(format!(
            "another agentvisor is already using the data directory {}",
            dir.display()
        ));
    }
    Ok(file)
}

async fn run(
    config: config::Config,
    listener: std::net::TcpListener,
    mut signals: shutdown::StopSignals,
) -> i32 {
    let tls_on = config.tls.is_some();
    let engine = Engine::new(config.engine);
    if let Some(settings) = config.cluster {
        if let Err(e) = cluster::start(settings, &engine, config.own_tls).await {
            log::error!("{e}");
            return EXIT_START;
        }
    }
    let supervisor = Supervisor::boot(engine.clone());
    let state = web::Data::new(http::AppState {
        engine: engine.clone(),
        supervisor,
        sse_heartbeat: config.sse_heartbeat,
    });
    let max_frame = engine.config.max_message_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_frame))
            .configure(http::routes)
            .configure(console::routes)
    })
    .workers(config.workers)
    .disable_signals()
    .shutdown_timeout(1);
    let server = match config.tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls),
        None => server.listen(listener),
    };
    let server = match server {
        Ok(s) => s.run(),
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.listen);
            return EXIT_START;
        }
    };
    let handle = server.handle();
    actix_rt::spawn(server);
    // Recovery runs to its end even when a signal came meanwhile: stopping halfway through
    // could leave a run neither closed nor running.
    wait_until_ready(&engine).await;
    let signal = match signals.received() {
        Some(signal) => {
            log::info!("received {signal} while starting: shutting down without reporting ready");
            signal
        }
        None => {
            announce_ready(&engine, &config.listen, tls_on);
            signals.wait().await
        }
    };
    log::info!("received {signal}: shutting down gracefully");
    readiness::sd_notify("STOPPING=1");
    shutdown::graceful(&engine, &handle, config.shutdown_timeout).await
}

/// Logs the address and tells systemd and PM2 that the daemon serves.
fn announce_ready(engine: &Engine, listen: &std::net::SocketAddr, tls_on: bool) {
    log::info!(
        "agentvisor {} listening on {}://{} (data in {})",
        env!("CARGO_PKG_VERSION"),
        if tls_on { "https" } else { "http" },
        listen,
        engine.config.data_dir.display()
    );
    readiness::sd_notify("READY=1");
    readiness::pm2_ready();
    if let Some(every) = readiness::watchdog_interval() {
        actix_rt::spawn(async move {
            loop {
                actix_rt::time::sleep(every).await;
                readiness::sd_notify("WATCHDOG=1");
            }
        });
    }
}

async fn wait_until_ready(engine: &Arc<Engine>) {
    while engine.lifecycle() == Lifecycle::Starting {
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
