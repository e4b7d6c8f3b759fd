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
    /// What the USB ids say the port probably is (a module, or a USB-UART bridge of a dev
    /// board), when they are known.
    pub likely: Option<&'static str>,
}

/// What a USB serial port with these ids probably is: the module makers' own ids, and the
/// USB-UART bridges ESP32 dev boards carry.
pub fn likely(vid: u16, pid: u16) -> Option<&'static str> {
    Some(match (vid, pid) {
        (0x2c7c, _) => "Quectel module",
        (0x19d1, _) => "Luat/Air780 module",
        (0x303a, _) => "Espressif chip, native USB",
        (0x10c4, 0xea60) => "CP210x USB-UART (ESP32 dev board?)",
        (0x1a86, 0x7523 | 0x55d4 | 0x55d3) => "CH34x USB-UART (ESP32 dev board?)",
        (0x0403, 0x6001 | 0x6010 | 0x6014 | 0x6015) => "FTDI USB-UART",
        _ => return None,
    })
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
                likely: None,
            };
            match p.port_type {
                serialport::SerialPortType::UsbPort(u) => {
                    info.kind = "usb";
                    info.vid = Some(format!("{:04x}", u.vid));
                    info.pid = Some(format!("{:04x}", u.pid));
                    info.serial_number = u.serial_number;
                    info.manufacturer = u.manufacturer;
                    info.product = u.product;
                    info.likely = likely(u.vid, u.pid);
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

/// What the system says the device at `path` is on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// A USB device with these vendor and product ids.
    Usb(u16, u16),
    /// A USB device whose ids cannot be read.
    UsbUnknown,
    /// Not USB: a pseudo-terminal, a PCI or on-board UART.
    Other,
}

/// Where the device at `path` sits: read from sysfs (`/sys/class/tty/NAME/device`, walking up
/// to the USB device's `idVendor`/`idProduct`) so that a failed port listing cannot make a USB
/// port look like a plain UART.
pub(super) fn bus_of(path: &std::path::Path) -> Bus {
    let Some(name) = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    else {
        return Bus::Other;
    };
    let usb_named = name.starts_with("ttyUSB") || name.starts_with("ttyACM");
    let Ok(device) = std::fs::canonicalize(format!("/sys/class/tty/{name}/device")) else {
        return if usb_named {
            Bus::UsbUnknown
        } else {
            Bus::Other
        };
    };
    let mut dir = device.clone();
    let read = |d: &std::path::Path, f: &str| {
        let text = std::fs::read_to_string(d.join(f)).ok()?;
        u16::from_str_radix(text.trim(), 16).ok()
    };
    loop {
        if let (Some(v), Some(p)) = (read(&dir, "idVendor"), read(&dir, "idProduct")) {
            return Bus::Usb(v, p);
        }
        if !dir.pop() || dir.as_os_str() == "/sys" {
            break;
        }
    }
    let under_usb = device
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with("usb"));
    if usb_named || under_usb {
        Bus::UsbUnknown
    } else {
        Bus::Other
    }
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

#[cfg(test)]
mod tests {
    use super::likely;

    #[test]
    fn module_and_bridge_ids_are_named_and_others_are_not() {
        assert_eq!(likely(0x2c7c, 0x0901), Some("Quectel module"));
        assert_eq!(likely(0x19d1, 0x0001), Some("Luat/Air780 module"));
        assert!(likely(0x10c4, 0xea60).unwrap().contains("CP210x"));
        assert!(likely(0x303a, 0x1001).unwrap().contains("Espressif"));
        assert_eq!(likely(0x046d, 0xc52b), None);
    }
}
