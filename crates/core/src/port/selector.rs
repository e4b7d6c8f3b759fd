//! The port selector grammar:
//!
//! | selector | meaning |
//! |---|---|
//! | `/dev/ttyUSB0`, `COM7` | a device path |
//! | `usb:VID:PID[:SERIAL]` | the USB serial device with these ids (hex), e.g. `usb:10c4:ea60` |
//! | `tcp://HOST:PORT` | a serial server such as ser2net |
//! | `sim:NAME` | a built-in emulated module in this process, e.g. `sim:esp32-at` |
//! | `replay:FILE` | a device that answers as a recorded transcript does |

use std::fmt;
use std::path::PathBuf;

use super::PortError;

/// A parsed port selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A device path.
    Path(PathBuf),
    /// The one USB serial device with these ids.
    Usb {
        /// Vendor id.
        vid: u16,
        /// Product id.
        pid: u16,
        /// Serial number, when several devices share the ids.
        serial: Option<String>,
    },
    /// A serial server (ser2net).
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A built-in emulator in this process.
    Sim(String),
    /// A transcript to replay.
    Replay(PathBuf),
}

const SYNTAX: &str = "use a device path (/dev/ttyUSB0, COM7), usb:VID:PID[:SERIAL], tcp://HOST:PORT, sim:NAME or replay:FILE";

impl Selector {
    /// Parses a selector; the error shows the grammar.
    pub fn parse(s: &str) -> Result<Selector, PortError> {
        Self::parse_text(s).map_err(PortError::BadSelector)
    }

    fn parse_text(s: &str) -> Result<Selector, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty port selector: {SYNTAX}"));
        }
        if let Some(rest) = s.strip_prefix("sim:") {
            if rest.is_empty() {
                return Err(
                    "port selector `sim:` needs an emulator name, e.g. sim:esp32-at".into(),
                );
            }
            return Ok(Selector::Sim(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("replay:") {
            if rest.is_empty() {
                return Err("port selector `replay:` needs a transcript file".into());
            }
            return Ok(Selector::Replay(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
                format!("port selector `{s}` lacks a port number: use tcp://HOST:PORT")
            })?;
            let port = port
                .parse()
                .map_err(|_| format!("port selector `{s}`: `{port}` is not a TCP port number"))?;
            if host.is_empty() {
                return Err(format!(
                    "port selector `{s}` lacks a host: use tcp://HOST:PORT"
                ));
            }
            return Ok(Selector::Tcp {
                host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
                port,
            });
        }
        if let Some(rest) = s.strip_prefix("usb:") {
            let mut parts = rest.splitn(3, ':');
            let hex = |p: Option<&str>, what: &str| -> Result<u16, String> {
                let p = p.unwrap_or("");
                u16::from_str_radix(p, 16).map_err(|_| {
                    format!("port selector `{s}`: `{p}` is not a hex USB {what}: use usb:VID:PID[:SERIAL], e.g. usb:10c4:ea60")
                })
            };
            let vid = hex(parts.next(), "vendor id")?;
            let pid = hex(parts.next(), "product id")?;
            let serial = parts.next().filter(|x| !x.is_empty()).map(str::to_string);
            return Ok(Selector::Usb { vid, pid, serial });
        }
        let looks_like_scheme = s.split_once(':').is_some_and(|(scheme, _)| {
            scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if looks_like_scheme {
            return Err(format!("unknown port selector `{s}`: {SYNTAX}"));
        }
        Ok(Selector::Path(PathBuf::from(s)))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Path(p) => write!(f, "{}", p.display()),
            Selector::Usb { vid, pid, serial } => {
                write!(f, "usb:{vid:04x}:{pid:04x}")?;
                if let Some(s) = serial {
                    write!(f, ":{s}")?;
                }
                Ok(())
            }
            Selector::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Selector::Sim(n) => write!(f, "sim:{n}"),
            Selector::Replay(p) => write!(f, "replay:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = PortError;
    fn from_str(s: &str) -> Result<Self, PortError> {
        Selector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Selector::parse("/dev/ttyUSB0").unwrap(),
            Selector::Path("/dev/ttyUSB0".into())
        );
        assert_eq!(
            Selector::parse("COM7").unwrap(),
            Selector::Path("COM7".into())
        );
        assert_eq!(
            Selector::parse("usb:10c4:EA60:0001").unwrap(),
            Selector::Usb {
                vid: 0x10c4,
                pid: 0xea60,
                serial: Some("0001".into())
            }
        );
        assert_eq!(
            Selector::parse("tcp://localhost:2000").unwrap(),
            Selector::Tcp {
                host: "localhost".into(),
                port: 2000
            }
        );
        assert_eq!(
            Selector::parse("sim:esp32-at").unwrap(),
            Selector::Sim("esp32-at".into())
        );
        assert_eq!(
            Selector::parse("replay:a.txt").unwrap(),
            Selector::Replay("a.txt".into())
        );
        for s in [
            "serial:/dev/x",
            "usb:zz:1",
            "tcp://host",
            "tcp://:1",
            "sim:",
            "",
        ] {
            assert!(Selector::parse(s).is_err(), "{s}");
        }
        assert_eq!(
            Selector::parse("usb:10c4:ea60").unwrap().to_string(),
            "usb:10c4:ea60"
        );
    }
}
