//! Opening a serial device: exclusive, raw, the flow control asked for, modem lines per policy.

use std::path::Path;

use serialport::SerialPort;
use tokio_serial::SerialPortBuilderExt;

use super::{BoxPort, PortError};

/// Flow control on the serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flow {
    /// No flow control (the default: most USB-UART adapters wire no RTS/CTS to the module).
    #[default]
    None,
    /// RTS/CTS.
    Hw,
    /// XON/XOFF.
    Sw,
}

/// What to do with DTR and RTS after opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lines {
    /// Deassert both (the default: on ESP32 dev boards DTR/RTS drive EN and IO0).
    #[default]
    Deassert,
    /// Assert both (some modems want DTR to answer).
    Assert,
    /// Leave them as the driver set them.
    Leave,
}

/// How to open a serial device.
#[derive(Debug, Clone)]
pub struct SerialOptions {
    /// Line rate.
    pub baud: u32,
    /// Flow control.
    pub flow: Flow,
    /// DTR and RTS after opening.
    pub lines: Lines,
}

impl Default for SerialOptions {
    fn default() -> Self {
        SerialOptions {
            baud: 115_200,
            flow: Flow::None,
            lines: Lines::Deassert,
        }
    }
}

pub(super) fn open_path(path: &Path, options: &SerialOptions) -> Result<BoxPort, PortError> {
    let shown = path.display().to_string();
    if !cfg!(windows) && !path.exists() {
        return Err(PortError::NotFound {
            hint: not_found_hint(&shown),
            path: shown,
        });
    }
    let flow = match options.flow {
        Flow::None => tokio_serial::FlowControl::None,
        Flow::Hw => tokio_serial::FlowControl::Hardware,
        Flow::Sw => tokio_serial::FlowControl::Software,
    };
    let mut stream = tokio_serial::new(shown.clone(), options.baud)
        .flow_control(flow)
        .open_native_async()
        .map_err(|e| classify(&shown, e))?;
    let level = match options.lines {
        Lines::Deassert => Some(false),
        Lines::Assert => Some(true),
        Lines::Leave => None,
    };
    if let Some(level) = level {
        // Pseudo-terminals have no modem lines; the ioctl fails there and that is fine.
        if let Err(e) = stream
            .write_data_terminal_ready(level)
            .and_then(|_| stream.write_request_to_send(level))
        {
            tracing::debug!("{shown}: cannot set DTR/RTS ({e}); a pseudo-terminal has none");
        }
    }
    // Bytes left over from before we opened would merge with the first answer.
    let _ = stream.clear(serialport::ClearBuffer::Input);
    Ok(Box::new(stream))
}

fn not_found_hint(path: &str) -> String {
    if !path.contains('/') && !path.to_ascii_uppercase().starts_with("COM") {
        format!(" (did you mean /dev/{path}? `atprov ports` lists what is there)")
    } else {
        " (`atprov ports` lists what is there)".into()
    }
}

fn classify(path: &str, e: tokio_serial::Error) -> PortError {
    use std::io::ErrorKind as Io;
    match e.kind {
        serialport::ErrorKind::NoDevice => PortError::Busy {
            path: path.to_string(),
            hint: holder_hint(path),
        },
        serialport::ErrorKind::Io(Io::NotFound) => PortError::NotFound {
            path: path.to_string(),
            hint: not_found_hint(path),
        },
        serialport::ErrorKind::Io(Io::PermissionDenied) => PortError::Permission {
            path: path.to_string(),
        },
        _ => PortError::Other {
            what: path.to_string(),
            reason: e.description,
        },
    }
}

/// Names the processes that hold `path` open, where /proc tells.
fn holder_hint(path: &str) -> String {
    let Ok(target) = std::fs::canonicalize(path) else {
        return String::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return String::new();
    };
    let mut holders = Vec::new();
    for p in procs.flatten() {
        let pid = p.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == std::process::id().to_string() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
        {
            let name = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            holders.push(format!("{} (pid {pid})", name.trim()));
        }
    }
    if holders.is_empty() {
        String::new()
    } else {
        format!(" (held by {})", holders.join(", "))
    }
}
