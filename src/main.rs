//! The `icestream` binary: `serve` runs the broker; every other command is a client of a
//! running broker over its public APIs.

mod cli;
mod cluster_args;
mod console;
mod console_client;
mod iceberg_args;
mod lake_catalog;
mod listener_args;
mod sasl_args;
mod schema_source;
mod security_args;
mod serve;
mod tiering_args;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "icestream",
    version,
    about = "Kafka-API broker whose topics are also Apache Iceberg tables"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker
    Serve(Box<serve::ServeArgs>),
    /// Create, inspect, change, produce to and consume from topics
    Topic(cli::ClientCommand<cli::TopicCommand>),
    /// Consumer groups: list, describe (with lag), delete, seek
    Group(cli::ClientCommand<cli::GroupCommand>),
    /// Transactions: list, describe, find hanging ones, abort
    Transaction(cli::ClientCommand<cli::TransactionCommand>),
    /// Schema registry: register, get, list, check, delete schemas; compatibility config
    Schema(cli::ClientCommand<cli::SchemaCommand>),
    /// Cluster information and health
    Cluster(cli::ClientCommand<cli::ClusterCommand>),
    /// Users (SCRAM credentials), ACLs and client quotas
    Security(cli::ClientCommand<cli::security::SecurityCommand>),
    /// Test tools (hidden)
    #[command(hide = true, subcommand)]
    Debug(DebugCommand),
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Rewinds a stopped broker's data directory to what a power cut would have left, from
    /// the journal `serve --simulate-power-loss-dir` kept (tests only)
    PowerCut {
        /// The directory given to `serve --simulate-power-loss-dir`
        #[arg(long)]
        ledger: std::path::PathBuf,
        /// The broker's data directory
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// List every file changed
        #[arg(long)]
        verbose: bool,
    },
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // No transparent huge pages for this process, whatever the host's THP mode: a buffer's first
    // touch would zero a whole 2 MiB page, and the allocator reuses and purges memory in far
    // smaller pieces. With them, page zeroing was 30-50 % of an RF=3 node's CPU and RF=1
    // produce's p99 was 450-500 ms instead of 30 (benches/README.md, "Allocator"). Best effort:
    // a kernel without the prctl just keeps its default.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run() -> anyhow::Result<()> {
    let args = serve::args_with_config_file(std::env::args().collect())?;
    let args = cli::hoist_client_options(args);
    let cli = Cli::parse_from(args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => {
            init_logging(&args.log);
            rt.block_on(serve::run(*args))
        }
        Command::Topic(c) => rt.block_on(cli::run_topic(&c.args, c.command)),
        Command::Group(c) => rt.block_on(cli::run_group(&c.args, c.command)),
        Command::Transaction(c) => rt.block_on(cli::run_transaction(&c.args, c.command)),
        Command::Schema(c) => rt.block_on(cli::run_schema(&c.args, c.command)),
        Command::Cluster(c) => rt.block_on(cli::run_cluster(&c.args, c.command)),
        Command::Security(c) => rt.block_on(cli::security::run(&c.args, c.command)),
        Command::Debug(DebugCommand::PowerCut {
            ledger,
            data_dir,
            verbose,
        }) => {
            let cut = engine::log::power::apply_power_cut(&ledger, &data_dir)?;
            if verbose {
                cut.changes.iter().for_each(|c| println!("{c}"));
            }
            println!(
                "power cut: {} directory entries undone, {} files truncated, {} bytes lost",
                cut.entries_undone, cut.files_truncated, cut.bytes_lost
            );
            Ok(())
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}
