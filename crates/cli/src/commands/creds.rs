//! `atprov creds list`: what each credential slot of a module holds, read back from the module
//! (subject, fingerprint, expiry; a key by its size only). `atprov creds erase`: remove the
//! credentials a module holds (what a unit leaving the line, or going back to a customer,
//! needs), checked by reading back that they are gone.

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
    /// Show what each credential slot holds, read back from the module: subject, SHA-256
    /// fingerprint and expiry of certificates; a private key by its size only.
    List(ListArgs),
    /// Erase the module's credentials (CA, certificate, key) and read back that they are gone.
    Erase(EraseArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Device profile (default: asked from the module).
    #[arg(long, env = "ATPROV_PROFILE")]
    pub profile: Option<String>,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
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
        CredsCommand::List(a) => list(a).await,
        CredsCommand::Erase(a) => erase(a).await,
    }
}

/// Opens the module, runs init and identify (which probes the store), and hands the unit to
/// `work`; the port is closed whatever happens.
async fn on_identified_unit<T>(
    port: &PortArgs,
    profile: Option<&str>,
    work: impl AsyncFnOnce(&mut Provisioning<'_>) -> Result<T, Failure>,
) -> Result<(T, String), Failure> {
    let profile = super::provision::profile_for(profile, port).await?;
    let job = Job::build(&JobSettings::default(), &profile.defaults)?;
    let link = super::provision::open_for(port, &profile).await?;
    let mut bars = Bars::new();
    let mut unit = Provisioning::new(link.engine.clone(), profile, &job, port.port.clone(), false);
    for stage in [Stage::Init, Stage::Identify] {
        if !unit.stage(stage, None, &mut bars).await {
            let failure = unit.finish().1;
            link.close().await;
            return Err(failure.unwrap_or_else(|| Failure::usage("identify failed")));
        }
    }
    let result = work(&mut unit).await;
    let id = unit.identity().get("unit_id").cloned().unwrap_or_default();
    link.close().await;
    result.map(|t| (t, id))
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let (held, id) = on_identified_unit(&args.port, args.profile.as_deref(), async |unit| {
        unit.read_credentials().await
    })
    .await?;
    let slots: Vec<serde_json::Value> = held.iter().map(slot_json).collect();
    if args.json {
        crate::render::json_line(serde_json::json!({
            "result": "ok", "port": args.port.port, "unit_id": id, "slots": slots,
        }));
        return Ok(());
    }
    println!("unit {id} on {}", args.port.port);
    for (h, v) in held.iter().zip(&slots) {
        let what = match (&h.content, v["certificates"].as_array()) {
            (None, _) => "empty".to_string(),
            (Some(c), _) if h.item == atprov_core::store::Item::Key => {
                format!("private key, {} bytes", c.len())
            }
            (Some(c), Some(certs)) if !certs.is_empty() => {
                certs
                    .iter()
                    .map(|c| {
                        format!(
                            "{}  sha256 {}  expires {}",
                            c["subject"].as_str().unwrap_or(""),
                            c["sha256_fingerprint"].as_str().unwrap_or(""),
                            c["not_after"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
                    + &format!(" ({} bytes)", c.len())
            }
            (Some(c), _) => format!("{} bytes, not a certificate atprov can read", c.len()),
        };
        println!("  {:<5} {:<24} {what}", h.item.to_string(), h.slot);
    }
    Ok(())
}

/// One slot as JSON: never the key's bytes, only its size.
fn slot_json(h: &atprov_core::store::Held) -> serde_json::Value {
    let certificates: Vec<serde_json::Value> = match (&h.content, h.item) {
        (Some(c), item) if item != atprov_core::store::Item::Key => {
            crate::pki::load::recognise(&h.slot, c.clone())
                .map(|l| {
                    l.certificates()
                        .filter_map(crate::pki::describe::cert_info)
                        .map(|i| {
                            serde_json::json!({
                                "subject": i.subject, "issuer": i.issuer,
                                "sha256_fingerprint": i.sha256_fingerprint,
                                "not_after": i.not_after, "is_ca": i.is_ca,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    serde_json::json!({
        "item": h.item, "slot": h.slot, "present": h.content.is_some(),
        "bytes": h.content.as_ref().map(Vec::len), "certificates": certificates,
    })
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
    let ((), id) = on_identified_unit(&args.port, args.profile.as_deref(), async |unit| {
        unit.erase_credentials().await
    })
    .await?;
    println!("erased: unit {id} holds no credentials (read back)");
    Ok(())
}
