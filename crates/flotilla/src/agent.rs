//! `flotilla agent`: a node agent joining a cluster (see docs/commands/agent.md).

use clap::Args;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The API server's URL.
    #[arg(long)]
    pub server: String,
    /// The node token printed by (and stored in the data dir of) `flotilla server`.
    #[arg(long, env = "FLOTILLA_TOKEN")]
    pub token: String,
}

pub fn run(_args: AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("the node agent is being built (issue 4)")
}
