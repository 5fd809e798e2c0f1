//! The `flotilla` binary: one executable for the server, the node agent and the tools.

mod agent;
mod image;
mod kubeconfig;
mod server;
mod store;
mod supervise;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

// The server allocates and frees a JSON tree per request and per watch event; mimalloc's
// thread-local free lists do that at a fraction of glibc malloc's cost (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "A Kubernetes-compatible container orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the Kubernetes API server and its store.
    Server(server::ServerArgs),
    /// Run a node agent that joins a cluster and runs its pods (as root).
    Agent(agent::AgentArgs),
    /// Manage the node's image store.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// The per-container supervisor the agent starts (not for direct use).
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let cli = Cli::parse();
    // RUST_LOG overrides; by default the server reports its progress at info.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Server(args) => server::run(args, started),
        Command::Agent(args) => agent::run(args),
        Command::Image(cmd) => image::run(cmd),
        Command::Supervise(args) => supervise::run(args),
        Command::Version => {
            println!(
                "flotilla {} (Kubernetes {})",
                env!("CARGO_PKG_VERSION"),
                apiserver::server::GIT_VERSION
            );
            Ok(())
        }
    }
}
