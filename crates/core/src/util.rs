//! Small helpers shared across atprov: durations, TOML error positions, timestamps.

use std::time::Duration;

/// Line and column (1-based, columns in characters) of a TOML error, from its span.
pub fn toml_location(text: &str, e: &toml::de::Error) -> Option<(usize, usize)> {
    let span = e.span()?;
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((line, before[line_start..].chars().count() + 1))
}

/// `file:line:column: field `x`: message` from a TOML error.
pub fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let Some((line, column)) = toml_location(text, e) else {
        return format!("{origin}: {message}");
    };
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let field = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('[') && !message.contains(&format!("`{k}`")))
        .map(|k| format!("field `{k}`: "))
        .unwrap_or_default();
    format!("{origin}:{line}:{column}: {field}{message}")
}

/// Now, UTC, as `2026-11-22T23:17:31.565Z` (journals, events).
pub fn utc_millis() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// Parses a time to wait for something: a duration of at least 1 ms (a timeout of 0 can
/// never be met).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!(
            "`{}`: a timeout of 0 can never be met; give at least 1ms",
            s.trim()
        ));
    }
    Ok(d)
}

/// The UART rates atprov accepts: what real adapters and modules offer.
pub const BAUD_RANGE: std::ops::RangeInclusive<u32> = 300..=12_000_000;

/// Parses a baud rate within [`BAUD_RANGE`].
pub fn parse_baud(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a baud rate: give a number such as 115200"))?;
    if !BAUD_RANGE.contains(&n) {
        return Err(format!(
            "{n} baud: give {} to {}",
            BAUD_RANGE.start(),
            BAUD_RANGE.end()
        ));
    }
    Ok(n)
}

/// Parses `500ms`, `2s`, `1.5s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 500ms, 2s, 1.5s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use ms, s or m")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{s}` is out of range (0 to 24 h)"));
    }
    Ok(Duration::from_secs_f64(secs))
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
}
