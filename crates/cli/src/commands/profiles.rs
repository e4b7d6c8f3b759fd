//! `atprov profiles` and `atprov profile show NAME`: the built-in device profiles.

use crate::error::Failure;
use crate::profile::{BUILTIN, Profile};

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    #[command(subcommand)]
    pub command: ProfileCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// Print a profile's TOML (a built-in name or a file, checked first).
    Show {
        /// Built-in name or path.
        name: String,
    },
}

pub fn list() -> Result<(), Failure> {
    for (name, text) in BUILTIN {
        let p = Profile::parse(text, name).map_err(|e| Failure::usage(e.0))?;
        println!("{name:<12} {}", p.description);
    }
    Ok(())
}

pub fn run(args: ProfileArgs) -> Result<(), Failure> {
    match args.command {
        ProfileCommand::Show { name } => {
            Profile::load(&name).map_err(|e| Failure::usage(e.0))?;
            let text = match BUILTIN.iter().find(|(n, _)| *n == name) {
                Some((_, text)) => text.to_string(),
                None => std::fs::read_to_string(&name)
                    .map_err(|e| Failure::usage(format!("profile {name}: {e}")))?,
            };
            print!("{text}");
            Ok(())
        }
    }
}
