//! `flotilla supervise`: the per-container supervisor, re-executed by the agent
//! (runtime::containers::supervisor explains the two stages).

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    /// Stage two: supervise in this process (stage one detaches and starts it).
    #[arg(long)]
    pub detached: bool,
    /// The container's state directory (`<root>/<id>`).
    pub dir: PathBuf,
}

pub fn run(args: SuperviseArgs) -> anyhow::Result<()> {
    if args.detached {
        runtime::containers::supervisor::run(&args.dir)?;
    } else {
        runtime::containers::supervisor::launch(&args.dir)?;
    }
    Ok(())
}
