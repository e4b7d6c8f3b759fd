//! `atprov creds erase`: remove the credentials a module holds (what a unit leaving the line,
//! or going back to a customer, needs), checked by reading back that they are gone.

use std::io::IsTerminal;

use crate::args::PortArgs;
use crate::error::Failure;
use crate::progress::Bars;
use crate::provision::job::{Job, JobSettings};
use crate::provision::{Provisioning, Stage};

#[derive(Debug, clap::Args)]
pub struct CredsArgs {
    #[command(subcommand)]
    pub command: CredsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CredsCommand {
    /// Erase the module's credentials (CA, certificate, key) and read back that they are gone.
    Erase(EraseArgs),
}

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Device profile (default: asked from the module).
    #[arg(long, env = "ATPROV_PROFILE")]
    pub profile: Option<String>,
    /// Erase without asking (needed when standard input is not a terminal).
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(args: CredsArgs) -> Result<(), Failure> {
    match args.command {
        CredsCommand::Erase(a) => erase(a).await,
    }
}

async fn erase(args: EraseArgs) -> Result<(), Failure> {
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "creds erase: pass --yes to erase without being asked (standard input is not a terminal)",
            ));
        }
        eprint!("erase the credentials on {}? [y/N] ", args.port.port);
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure::usage(
                "creds erase: not confirmed; nothing was erased",
            ));
        }
    }
    let profile = super::provision::profile_for(args.profile.as_deref(), &args.port).await?;
    let job = Job::build(&JobSettings::default(), &profile.defaults)?;
    let link = super::provision::open_for(&args.port, &profile).await?;
    let mut bars = Bars::new();
    let mut unit = Provisioning::new(
        link.engine.clone(),
        profile,
        &job,
        args.port.port.clone(),
        false,
    );
    let mut result = Ok(());
    for stage in [Stage::Init, Stage::Identify] {
        if !unit.stage(stage, None, &mut bars).await {
            result = unit.finish().1.map_or(Ok(()), Err);
            link.close().await;
            return result;
        }
    }
    if let Err(f) = unit.erase_credentials().await {
        result = Err(f);
    }
    let id = unit.identity().get("unit_id").cloned().unwrap_or_default();
    link.close().await;
    result?;
    println!("erased: unit {id} holds no credentials (read back)");
    Ok(())
}
