//! Values people write in flags, jobs, profiles and factory configs: durations (`500ms`, `2s`,
//! `1.5s`, `2m`, or bare seconds), timeouts (durations of at least 1 ms) and baud rates, each
//! bounded where it is parsed so that no absurd number reaches a timer or a UART.

use std::time::Duration;

/// Why a value was refused; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a number with a known unit.
    #[error("`{0}` is not a duration: use e.g. 500ms, 2s, 1.5s or 2m")]
    NotADuration(String),
    /// A number with an unknown unit.
    #[error("`{text}`: unknown unit `{unit}`; use ms, s or m")]
    UnknownUnit {
        /// What was written.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// Negative, or over a day.
    #[error("`{0}` is out of range (0 to 24 h)")]
    DurationOutOfRange(String),
    /// A timeout of zero.
    #[error("`{0}`: a timeout of 0 can never be met; give at least 1ms")]
    ZeroTimeout(String),
    /// Not a number.
    #[error("`{0}` is not a baud rate: give a number such as 115200")]
    NotABaudRate(String),
    /// Outside what adapters and modules offer.
    #[error("{0} baud: give {min} to {max}", min = BAUD_RANGE.start(), max = BAUD_RANGE.end())]
    BaudOutOfRange(u32),
    /// Not `off`, `auto` or a rate.
    #[error("`{0}` is not a flash rate: give off, auto or a baud rate such as 921600")]
    NotAFlashRate(String),
}

/// The line rate for the credential transfer (`--flash-baud`, `serial.flash_baud`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashBaud {
    /// Stay at the session's rate.
    #[default]
    Off,
    /// Switch to this rate for the transfer and back afterwards.
    Rate(u32),
    /// Switch only where it pays: the bytes to move at the two rates against the family's
    /// settle time.
    Auto,
}

impl FlashBaud {
    /// Parses `off`, `auto` or a baud rate.
    pub fn parse(s: &str) -> Result<FlashBaud, ValueError> {
        match s.trim() {
            "off" => Ok(FlashBaud::Off),
            "auto" => Ok(FlashBaud::Auto),
            t if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() => {
                parse_baud(t).map(FlashBaud::Rate)
            }
            t => Err(ValueError::NotAFlashRate(t.to_string())),
        }
    }
}

impl std::fmt::Display for FlashBaud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlashBaud::Off => f.write_str("off"),
            FlashBaud::Auto => f.write_str("auto"),
            FlashBaud::Rate(r) => write!(f, "{r}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for FlashBaud {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Rate(u32),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Rate(r) => r.to_string(),
            Raw::Text(t) => t,
        };
        FlashBaud::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The UART rates atprov accepts: what real adapters and modules offer.
pub const BAUD_RANGE: std::ops::RangeInclusive<u32> = 300..=12_000_000;

/// Parses `500ms`, `2s`, `1.5s`, `2m` or a bare number of seconds, 0 to 24 h.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| ValueError::NotADuration(s.to_string()))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => {
            return Err(ValueError::UnknownUnit {
                text: s.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(ValueError::DurationOutOfRange(s.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a time to wait for something: a duration of at least 1 ms.
pub fn parse_timeout(s: &str) -> Result<Duration, ValueError> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err(ValueError::ZeroTimeout(s.trim().to_string()));
    }
    Ok(d)
}

/// Parses a baud rate within [`BAUD_RANGE`].
pub fn parse_baud(s: &str) -> Result<u32, ValueError> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| ValueError::NotABaudRate(s.to_string()))?;
    if !BAUD_RANGE.contains(&n) {
        return Err(ValueError::BaudOutOfRange(n));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_timeout("0").is_err() && parse_timeout("1ms").is_ok());
        assert!(parse_baud("0").is_err() && parse_baud("921600").is_ok());
        assert!(parse_baud("4294967296").is_err() && parse_baud("x").is_err());
    }

    #[test]
    fn flash_rates() {
        assert_eq!(FlashBaud::parse("auto").unwrap(), FlashBaud::Auto);
        assert_eq!(FlashBaud::parse("off").unwrap(), FlashBaud::Off);
        assert_eq!(
            FlashBaud::parse("921600").unwrap(),
            FlashBaud::Rate(921_600)
        );
        assert!(FlashBaud::parse("fast").is_err() && FlashBaud::parse("0").is_err());
        #[derive(serde::Deserialize)]
        struct T {
            a: FlashBaud,
            b: FlashBaud,
        }
        let t: T = toml::from_str("a = 460800\nb = \"auto\"").unwrap();
        assert_eq!((t.a, t.b), (FlashBaud::Rate(460_800), FlashBaud::Auto));
        assert!(toml::from_str::<T>("a = \"quick\"\nb = 1").is_err());
    }
}
