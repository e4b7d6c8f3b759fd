//! Opening a serial device: exclusive, raw, the flow control asked for, modem lines per policy.

use std::path::Path;

use serialport::SerialPort;
use tokio_serial::SerialPortBuilderExt;

use super::{BoxPort, LineRate, PortError};

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

/// Opens a serial device; where it sits on the bus decides whether its rate means anything.
pub(super) fn open_path(
    path: &Path,
    options: &SerialOptions,
    bus: super::list::Bus,
) -> Result<(BoxPort, LineRate), PortError> {
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
    let rate = line_rate(&stream, bus);
    Ok((Box::new(stream), rate))
}

fn line_rate(stream: &tokio_serial::SerialStream, bus: super::list::Bus) -> LineRate {
    use super::list::Bus;
    match bus {
        Bus::Usb(v, p) => {
            if let Some(why) = super::rate::native_usb(v, p) {
                return LineRate::Fixed(format!("{why}, where the rate changes nothing"));
            }
        }
        Bus::UsbUnknown => {
            return LineRate::Fixed(
                "a USB port whose ids cannot be read (it may be the module's own USB port, where the rate changes nothing)".into(),
            );
        }
        Bus::Other => {}
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: the stream owns the descriptor and outlives this call; the handle dups it.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        match super::rate::RateHandle::new(fd) {
            Ok(h) => LineRate::Uart(h),
            Err(e) => LineRate::Fixed(format!("the port's settings cannot be reached ({e})")),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        LineRate::Fixed("changing the line rate is supported on Linux only".into())
    }
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::super::list::{Bus, bus_of};
    use super::*;

    /// A pseudo-terminal's slave path; the master is returned to keep it open.
    fn pty() -> (std::os::fd::OwnedFd, std::path::PathBuf) {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty writes two descriptors; null name/termios/winsize are allowed.
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: both were just returned by openpty.
        let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let path = std::fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd())).unwrap();
        drop(s);
        (m, path)
    }

    #[tokio::test]
    async fn a_module_usb_port_keeps_its_rate_and_a_bridge_can_change_it() {
        let (_master, path) = pty();
        let options = SerialOptions::default();
        let (port, rate) = open_path(&path, &options, Bus::Usb(0x2c7c, 0x0901)).unwrap();
        assert!(
            matches!(&rate, LineRate::Fixed(why) if why.contains("Quectel USB AT port")),
            "{rate:?}"
        );
        drop(port);
        // A CH9102 bridge is a real UART even under the OS CDC driver.
        let (port, rate) = open_path(&path, &options, Bus::UsbUnknown).unwrap();
        assert!(matches!(&rate, LineRate::Fixed(_)), "{rate:?}");
        drop(port);
        // A PTY as the system sees it: not USB.
        assert_eq!(bus_of(&path), Bus::Other);
        let (_port, rate) = open_path(&path, &options, Bus::Usb(0x1a86, 0x55d4)).unwrap();
        let LineRate::Uart(handle) = rate else {
            panic!("{rate:?}")
        };
        assert_eq!(handle.get().unwrap(), 115_200);
        assert_eq!(handle.set(921_600).unwrap(), 921_600);
        assert_eq!(handle.get().unwrap(), 921_600);
    }
}
