//! The module's UART rate, as `reference/uart-rate.md` describes the firmware: ESP-AT's
//! `AT+UART_CUR` (not saved), `AT+UART_DEF` and its alias `AT+UART=` (saved in NVS), and the
//! cellular `AT+IPR` (kept until a restart unless `AT&W` saves it).
//!
//! A model keeps a [`Uart`] and asks it first for every command line. A switch answers `OK` at
//! the old rate, then hands the runner a [`Step::SetRate`]: from there the runner paces the
//! wire at the new rate, keeps the module deaf for the family's settle time, and garbles what
//! crosses the line while the host's port runs at another rate (see the runner). A restart
//! returns to the saved rate, else the factory one.

use std::time::Duration;

use crate::runner::{Script, Step};

const OK: &[u8] = b"\r\nOK\r\n";
const ERROR: &[u8] = b"\r\nERROR\r\n";

/// The rates Quectel documents for the EG800Q/EG91xQ `AT+IPR` (the EC200U's own list is not
/// published; a host must read `AT+IPR=?`).
pub const QUECTEL_RATES: &[u32] = &[
    4800, 9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600,
];

/// The rates the Luat AT manual lists for `AT+IPR` (0 is autobaud, not a rate).
pub const LUAT_RATES: &[u32] = &[
    600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600,
];

/// Which rates a firmware accepts.
#[derive(Debug, Clone, Copy)]
pub enum Rates {
    /// Any rate in this closed range (ESP-AT: 80 to 5,000,000 on the ESP32).
    Range(u32, u32),
    /// Exactly these.
    List(&'static [u32]),
}

impl Rates {
    fn accepts(&self, rate: u32) -> bool {
        match *self {
            Rates::Range(lo, hi) => (lo..=hi).contains(&rate),
            Rates::List(list) => list.contains(&rate),
        }
    }
}

/// The command syntax of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    EspAt,
    Ipr,
}

/// A module's UART settings.
#[derive(Debug, Clone)]
pub struct Uart {
    /// The rate at power-on when none is saved.
    pub factory: u32,
    /// The rate now.
    pub current: u32,
    /// A saved rate (`AT+UART_DEF`, `AT+IPR` then `AT&W`): the power-on rate from then on.
    pub saved: Option<u32>,
    /// What the firmware accepts.
    pub rates: Rates,
    /// After a switch the module hears nothing for this long.
    pub settle: Duration,
    /// ESP-AT's data bits, stop bits, parity and flow control (factory: 8, 1, none, RTS).
    frame: [u8; 4],
    syntax: Syntax,
}

impl Uart {
    /// ESP-AT on an ESP32: 80 to 5,000,000 baud; the new rate applies right after the `OK`
    /// (`uart_wait_tx_done` then `uart_set_baudrate`, no documented delay).
    pub fn esp_at(factory: u32) -> Uart {
        Uart {
            factory,
            current: factory,
            saved: None,
            rates: Rates::Range(80, 5_000_000),
            settle: Duration::ZERO,
            frame: [8, 1, 0, 1],
            syntax: Syntax::EspAt,
        }
    }

    /// Quectel: the listed rates; "wait for 500 ms to send the next command" after a change
    /// (EG800Q/EG91xQ manual, taken for the EC200U).
    pub fn quectel(factory: u32) -> Uart {
        Uart {
            rates: Rates::List(QUECTEL_RATES),
            settle: Duration::from_millis(500),
            ..Uart::ipr(factory)
        }
    }

    /// Luat: the listed rates. No settle time is documented; the emulator takes Quectel's
    /// 500 ms, the cautious reading.
    pub fn luat(factory: u32) -> Uart {
        Uart {
            rates: Rates::List(LUAT_RATES),
            settle: Duration::from_millis(500),
            ..Uart::ipr(factory)
        }
    }

    fn ipr(factory: u32) -> Uart {
        Uart {
            factory,
            current: factory,
            saved: None,
            rates: Rates::List(QUECTEL_RATES),
            settle: Duration::ZERO,
            frame: [8, 1, 0, 0],
            syntax: Syntax::Ipr,
        }
    }

    /// A restart: back to the saved rate, else the factory one.
    pub fn reboot(&mut self) {
        self.current = self.saved.unwrap_or(self.factory);
    }

    /// Answers the command if it is one of the UART's; `None` otherwise.
    pub fn command(&mut self, line: &str) -> Option<Script> {
        let upper = line.to_ascii_uppercase();
        match self.syntax {
            Syntax::EspAt => self.esp_at_command(&upper),
            Syntax::Ipr => self.ipr_command(&upper),
        }
    }

    fn esp_at_command(&mut self, upper: &str) -> Option<Script> {
        let (saves, query, name) = match upper.split_once(['=', '?']).map(|(n, _)| n) {
            Some("AT+UART_CUR") => (false, "+UART_CUR", "AT+UART_CUR"),
            Some("AT+UART_DEF") => (true, "+UART_DEF", "AT+UART_DEF"),
            // An alias of AT+UART_DEF in ESP-AT 2.4, 3.2 and HEAD: it writes NVS too.
            Some("AT+UART") => (true, "+UART", "AT+UART"),
            _ => return None,
        };
        if upper == format!("{name}?") {
            let rate = if saves {
                self.saved.unwrap_or(self.factory)
            } else {
                // The rate the clock divider really gives: the firmware reports that one.
                divided(self.current)
            };
            let [d, s, p, f] = self.frame;
            let line = format!("{query}:{rate},{d},{s},{p},{f}\r\n");
            return Some(vec![
                Step::Send(line.into_bytes()),
                Step::Final(OK.to_vec()),
            ]);
        }
        let args = upper.strip_prefix(&format!("{name}="))?;
        let parts: Vec<&str> = args.split(',').map(str::trim).collect();
        // All five parameters are mandatory.
        let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
        let Some(nums) = nums.filter(|n| n.len() == 5) else {
            return Some(vec![Step::Final(ERROR.to_vec())]);
        };
        let (rate, d, s, p, f) = (nums[0], nums[1], nums[2], nums[3], nums[4]);
        if !self.rates.accepts(rate)
            || !(5..=8).contains(&d)
            || !(1..=3).contains(&s)
            || p > 2
            || f > 3
        {
            return Some(vec![Step::Final(ERROR.to_vec())]);
        }
        self.frame = [d as u8, s as u8, p as u8, f as u8];
        let mut script = vec![Step::Final(OK.to_vec())];
        if saves {
            self.saved = Some(rate);
            script.push(Step::SaveRate(rate));
        }
        self.current = rate;
        script.push(Step::SetRate {
            rate,
            settle: self.settle,
        });
        Some(script)
    }

    fn ipr_command(&mut self, upper: &str) -> Option<Script> {
        match upper {
            "AT+IPR?" => {
                let line = format!("+IPR: {}\r\n", self.current);
                Some(vec![
                    Step::Send(line.into_bytes()),
                    Step::Final(OK.to_vec()),
                ])
            }
            "AT+IPR=?" => {
                let list = match self.rates {
                    Rates::List(l) => l.iter().map(u32::to_string).collect::<Vec<_>>(),
                    Rates::Range(lo, hi) => vec![format!("{lo}-{hi}")],
                };
                let line = format!("+IPR: (),({})\r\n", list.join(","));
                Some(vec![
                    Step::Send(line.into_bytes()),
                    Step::Final(OK.to_vec()),
                ])
            }
            // Saves the settings, the rate among them.
            "AT&W" | "AT&W0" => {
                self.saved = Some(self.current);
                Some(vec![Step::Final(OK.to_vec()), Step::SaveRate(self.current)])
            }
            _ => {
                let arg = upper.strip_prefix("AT+IPR=")?;
                match arg.trim().parse::<u32>() {
                    Ok(rate) if self.rates.accepts(rate) => {
                        self.current = rate;
                        Some(vec![
                            Step::Final(OK.to_vec()),
                            Step::SetRate {
                                rate,
                                settle: self.settle,
                            },
                        ])
                    }
                    _ => Some(vec![Step::Final(ERROR.to_vec())]),
                }
            }
        }
    }
}

/// The rate an ESP32's UART really runs at for a requested one: the 80 MHz APB clock divided
/// by a divider with four fractional bits (115200 → 115201, as ESP-AT reports it).
pub fn divided(rate: u32) -> u32 {
    let clock = 80_000_000u64 * 16;
    let divider = (clock + u64::from(rate) / 2) / u64::from(rate.max(1));
    (clock / divider.max(1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finals(s: &Script) -> Vec<String> {
        s.iter()
            .filter_map(|st| match st {
                Step::Send(b) | Step::Final(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn esp_at_reports_the_divided_rate_as_the_issues_show() {
        // esp-at#141 and #338 show `+UART_CUR:115201` for 115200.
        assert_eq!(divided(115_200), 115_201);
        let mut u = Uart::esp_at(115_200);
        let s = u.command("AT+UART_CUR?").unwrap();
        assert_eq!(finals(&s)[0], "+UART_CUR:115201,8,1,0,1\r\n");
    }

    #[test]
    fn uart_cur_switches_without_saving_and_a_restart_undoes_it() {
        let mut u = Uart::esp_at(115_200);
        let s = u.command("AT+UART_CUR=921600,8,1,0,0").unwrap();
        assert!(s.contains(&Step::SetRate {
            rate: 921_600,
            settle: Duration::ZERO
        }));
        assert_eq!(u.saved, None);
        u.reboot();
        assert_eq!(u.current, 115_200);
        // Four parameters, or a rate out of range: ERROR, nothing changes.
        for bad in ["AT+UART_CUR=921600,8,1,0", "AT+UART_CUR=6000000,8,1,0,0"] {
            assert_eq!(finals(&u.command(bad).unwrap()), ["\r\nERROR\r\n"]);
        }
        assert_eq!(u.current, 115_200);
    }

    #[test]
    fn uart_def_and_the_uart_alias_save() {
        for cmd in ["AT+UART_DEF=460800,8,1,0,1", "AT+UART=460800,8,1,0,1"] {
            let mut u = Uart::esp_at(115_200);
            let s = u.command(cmd).unwrap();
            assert!(s.contains(&Step::SaveRate(460_800)), "{cmd}");
            u.reboot();
            assert_eq!(u.current, 460_800, "{cmd}");
        }
    }

    #[test]
    fn ipr_takes_listed_rates_and_only_at_w_saves() {
        let mut u = Uart::quectel(115_200);
        assert_eq!(
            finals(&u.command("AT+IPR=1000000").unwrap()),
            ["\r\nERROR\r\n"]
        );
        let s = u.command("AT+IPR=921600").unwrap();
        assert!(s.contains(&Step::SetRate {
            rate: 921_600,
            settle: Duration::from_millis(500)
        }));
        assert_eq!(
            finals(&u.command("AT+IPR?").unwrap())[0],
            "+IPR: 921600\r\n"
        );
        u.reboot();
        assert_eq!(u.current, 115_200);
        u.command("AT+IPR=460800").unwrap();
        u.command("AT&W").unwrap();
        u.reboot();
        assert_eq!(u.current, 460_800);
        assert!(finals(&u.command("AT+IPR=?").unwrap())[0].contains(",921600)"));
        assert!(u.command("AT+CSQ").is_none());
    }
}
