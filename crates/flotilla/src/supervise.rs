//! `flotilla supervise`: the per-container supervisor, re-executed by the agent.

use clap::Args;

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(_args: SuperviseArgs) -> anyhow::Result<()> {
    anyhow::bail!("the supervisor is being built (issue 4)")
}
