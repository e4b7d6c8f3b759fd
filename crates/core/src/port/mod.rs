//! Ports: one selector string names where a module is, and [`open`] turns it into a byte
//! stream the engine can own. Serial devices open exclusively, with the flow control asked
//! for and both modem lines deasserted by default so that opening the port does not reset an
//! ESP32 dev board. TCP (ser2net), transcript replays (`replay:`) and in-process emulators
//! (`sim:`, opened by whatever the application registered with [`register_opener`]: this
//! crate knows nothing of the emulators) look the same to the engine.

mod list;
mod rate;
mod selector;
mod serial;

use std::sync::OnceLock;

pub use crate::at::{BoxPort, Port};
pub use list::{PortInfo, list_ports, matching_usb};
pub use rate::{LineRate, RateHandle, native_usb};
pub use selector::Selector;
pub use serial::{Flow, Lines, SerialOptions};

/// Opens an in-process port a `sim:NAME` selector names, or says why not.
pub type Opener = fn(name: &str) -> Result<BoxPort, PortError>;

static SIM_OPENER: OnceLock<Opener> = OnceLock::new();

/// Registers what opens `sim:NAME` ports (the application's emulators). The first
/// registration wins.
pub fn register_opener(opener: Opener) {
    let _ = SIM_OPENER.set(opener);
}

/// Why a port could not be opened. Each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("{0}")]
    /// The selector does not parse (the message shows the grammar).
    BadSelector(String),
    #[error("port {path} not found{hint}")]
    /// The port does not exist.
    NotFound {
        /// The port as named.
        path: String,
        /// What to check, with a leading space, or empty.
        hint: String,
    },
    #[error(
        "port {path} is in use by another process{hint}; close it (on Linux, ModemManager often grabs modems: stop it or set ID_MM_DEVICE_IGNORE=1 in a udev rule)"
    )]
    /// Another process holds the port.
    Busy {
        /// The port as named.
        path: String,
        /// Who holds it, when known, with a leading space.
        hint: String,
    },
    #[error(
        "no permission to open {path}; add yourself to the group that owns it (often `dialout`: sudo usermod -aG dialout $USER, then log in again)"
    )]
    /// This user may not open the port.
    Permission {
        /// The port as named.
        path: String,
    },
    #[error("cannot open {what}: {reason}")]
    /// Anything else.
    Other {
        /// What could not be opened.
        what: String,
        /// Why, as the system said.
        reason: String,
    },
}

/// Opens the port a selector names.
pub async fn open(selector: &Selector, options: &SerialOptions) -> Result<BoxPort, PortError> {
    Ok(open_line(selector, options).await?.0)
}

/// Opens the port a selector names, with what can be done with its line rate.
pub async fn open_line(
    selector: &Selector,
    options: &SerialOptions,
) -> Result<(BoxPort, LineRate), PortError> {
    let fixed = |why: &str| LineRate::Fixed(why.to_string());
    match selector {
        Selector::Path(path) => serial::open_path(path, options, list::bus_of(path)),
        Selector::Usb { vid, pid, .. } => {
            let path = list::resolve_usb(selector)?;
            serial::open_path(&path, options, list::Bus::Usb(*vid, *pid))
        }
        Selector::Tcp { host, port } => {
            let addr = format!("{host}:{port}");
            match tokio::net::TcpStream::connect(&addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    Ok((
                        Box::new(s),
                        fixed("a network serial server (its rate is set on the server)"),
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Err(PortError::NotFound {
                        path: format!("tcp://{addr}"),
                        hint: " (connection refused: is the serial server running?)".into(),
                    })
                }
                Err(e) => Err(PortError::Other {
                    what: format!("tcp://{addr}"),
                    reason: e.to_string(),
                }),
            }
        }
        Selector::Sim(name) => match SIM_OPENER.get() {
            Some(open) => Ok((open(name)?, fixed("an in-process emulator"))),
            None => Err(PortError::BadSelector(format!(
                "sim:{name}: this build of atprov has no emulators (built without the `sim` feature)"
            ))),
        },
        Selector::Replay(path) => crate::transcript::replay::open(path)
            .map(|p| (Box::new(p) as BoxPort, fixed("a replay")))
            .map_err(|e| PortError::BadSelector(e.to_string())),
    }
}
