//! Listing serial ports and resolving `usb:VID:PID[:SERIAL]` selectors.

use serde::Serialize;

use super::{PortError, Selector};

/// One serial port the system knows.
#[derive(Debug, Clone, Serialize)]
pub struct PortInfo {
    /// The device path (`/dev/ttyUSB0`).
    pub path: String,
    /// `usb`, `pci`, `bluetooth` or `unknown`.
    pub kind: &'static str,
    /// USB vendor id, 4 hex digits.
    pub vid: Option<String>,
    /// USB product id, 4 hex digits.
    pub pid: Option<String>,
    /// The USB serial number.
    pub serial_number: Option<String>,
    /// The USB manufacturer string.
    pub manufacturer: Option<String>,
    /// The USB product string.
    pub product: Option<String>,
}

/// Lists the serial ports, sorted by path.
pub fn list_ports() -> Result<Vec<PortInfo>, PortError> {
    let ports = serialport::available_ports().map_err(|e| PortError::Other {
        what: "the list of serial ports".into(),
        reason: e.to_string(),
    })?;
    let mut out: Vec<PortInfo> = ports
        .into_iter()
        .map(|p| {
            let mut info = PortInfo {
                path: p.port_name,
                kind: "unknown",
                vid: None,
                pid: None,
                serial_number: None,
                manufacturer: None,
                product: None,
            };
            match p.port_type {
                serialport::SerialPortType::UsbPort(u) => {
                    info.kind = "usb";
                    info.vid = Some(format!("{:04x}", u.vid));
                    info.pid = Some(format!("{:04x}", u.pid));
                    info.serial_number = u.serial_number;
                    info.manufacturer = u.manufacturer;
                    info.product = u.product;
                }
                serialport::SerialPortType::PciPort => info.kind = "pci",
                serialport::SerialPortType::BluetoothPort => info.kind = "bluetooth",
                serialport::SerialPortType::Unknown => {}
            }
            info
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The ports a `usb:VID:PID[:SERIAL]` selector matches (empty for other selectors).
pub fn matching_usb(selector: &Selector, ports: Vec<PortInfo>) -> Vec<PortInfo> {
    let Selector::Usb { vid, pid, serial } = selector else {
        return Vec::new();
    };
    let (vid, pid) = (format!("{vid:04x}"), format!("{pid:04x}"));
    ports
        .into_iter()
        .filter(|p| p.vid.as_deref() == Some(&vid) && p.pid.as_deref() == Some(&pid))
        .filter(|p| serial.is_none() || p.serial_number.as_deref() == serial.as_deref())
        .collect()
}

/// Finds the one device a `usb:` selector names.
pub(super) fn resolve_usb(selector: &Selector) -> Result<std::path::PathBuf, PortError> {
    let Selector::Usb { vid, pid, .. } = selector else {
        unreachable!("only called for usb selectors")
    };
    let ports = list_ports()?;
    let (vid, pid) = (format!("{vid:04x}"), format!("{pid:04x}"));
    let matching = matching_usb(selector, ports);
    match matching.as_slice() {
        [one] => Ok(one.path.clone().into()),
        [] => Err(PortError::NotFound {
            path: selector.to_string(),
            hint: " (no USB serial device with these ids is plugged in; `atprov ports` lists what is there)".into(),
        }),
        many => Err(PortError::BadSelector(format!(
            "{selector} matches {} devices ({}): add the serial number, usb:{vid}:{pid}:SERIAL",
            many.len(),
            many.iter()
                .map(|p| format!("{} serial {}", p.path, p.serial_number.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
