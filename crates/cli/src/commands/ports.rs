//! `atprov ports`: list serial ports.

use crate::error::{Code, Failure};
use crate::port::list_ports;

#[derive(Debug, clap::Args)]
pub struct PortsArgs {
    /// A JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PortsArgs) -> Result<(), Failure> {
    let ports = list_ports()
        .map_err(|e| Failure::new(Code::Internal, format!("cannot list ports: {e}")))?;
    if args.json {
        crate::render::json_pretty(&ports);
        return Ok(());
    }
    if ports.is_empty() {
        println!("no serial ports found");
        return Ok(());
    }
    println!(
        "{:<24} {:<9} {:<10} {:<20} {:<20} {:<24} likely",
        "path", "kind", "vid:pid", "serial", "manufacturer", "product"
    );
    for p in ports {
        let ids = match (&p.vid, &p.pid) {
            (Some(v), Some(pi)) => format!("{v}:{pi}"),
            _ => "-".into(),
        };
        println!(
            "{:<24} {:<9} {:<10} {:<20} {:<20} {:<24} {}",
            p.path,
            p.kind,
            ids,
            p.serial_number.as_deref().unwrap_or("-"),
            p.manufacturer.as_deref().unwrap_or("-"),
            p.product.as_deref().unwrap_or("-"),
            p.likely.unwrap_or("-")
        );
    }
    Ok(())
}
