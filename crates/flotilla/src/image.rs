//! `flotilla image`: the node's image store (see docs/commands/image.md).

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List the images present on this node.
    Ls,
}

pub fn run(_cmd: ImageCommand) -> anyhow::Result<()> {
    anyhow::bail!("the image store is being built (issue 4)")
}
