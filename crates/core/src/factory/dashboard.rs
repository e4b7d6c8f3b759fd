//! What a supervisor sees of a line (`atprov factory dashboard`): a summary computed from the
//! journal's attempts and pool (so it works for any journal backend), as JSON for an MES and as
//! one self-contained HTML page. Pure: the server around it lives in the binary.

use std::collections::BTreeMap;

use serde::Serialize;

use super::journal::{PoolStatus, ReportRow};

/// The line as the journal tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Every station that ever ran an attempt, by name.
    pub stations: Vec<StationView>,
    /// Units that passed in the hour before `at`.
    pub units_last_hour: u64,
    /// Distinct units that passed.
    pub units_passed: u64,
    /// Distinct units tried.
    pub units_tried: u64,
    /// Units whose first attempt passed, over units tried (0 to 1; 0 when none was tried).
    pub first_pass_yield: f64,
    /// Failed attempts by cause, most frequent first.
    pub failures: Vec<FailureCause>,
    /// The last finished attempts, newest first.
    pub last_units: Vec<LastUnit>,
    /// The credential pool.
    pub pool: PoolStatus,
    /// When the summary was made (UTC, ISO 8601).
    pub at: String,
}

/// One station.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationView {
    /// The line (factory process) it belongs to, when recorded.
    pub line: Option<String>,
    /// Its name.
    pub name: String,
    /// `working` (an attempt is running) or `idle`.
    pub state: &'static str,
    /// The unit it works on, when known.
    pub unit: Option<String>,
    /// Attempts that passed and failed there.
    pub passed: u64,
    /// Attempts that failed there.
    pub failed: u64,
}

/// One cause of failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureCause {
    /// The exit code (see the README's table).
    pub exit_code: Option<u8>,
    /// What the code means.
    pub label: String,
    /// How many attempts failed so.
    pub count: u64,
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastUnit {
    /// The unit id (or the port when the unit was never identified).
    pub unit: String,
    /// The station.
    pub station: String,
    /// `pass`, `fail` or `interrupted`.
    pub result: String,
    /// SHA-256 of the certificate it holds.
    pub cert_sha256: Option<String>,
    /// When it ended.
    pub finished_at: String,
}

/// What an exit code means, in a word or two (the README's table).
fn label(code: Option<u8>) -> String {
    let word = match code {
        Some(2) => "usage",
        Some(3) => "port not found",
        Some(4) => "port busy",
        Some(5) => "port permission",
        Some(6) => "no answer",
        Some(7) => "AT error",
        Some(8) => "port lost",
        Some(9) => "module reset",
        Some(10) => "credentials",
        Some(11) => "verify mismatch",
        Some(12) => "network",
        Some(13) => "connect",
        Some(14) => "smoke",
        Some(15) => "journal",
        Some(16) => "unreadable",
        Some(130) => "interrupted",
        Some(_) => "other",
        None => "interrupted",
    };
    match code {
        Some(c) => format!("{c} {word}"),
        None => word.to_string(),
    }
}

/// Summarises `rows` (every attempt, oldest first) and the pool as of `now` (UTC, ISO 8601
/// with milliseconds, as the journal writes times).
pub fn summarize(rows: &[ReportRow], pool: PoolStatus, now: &str) -> Summary {
    // Stations of different PCs may share a name: each PC's are its own.
    let mut stations: BTreeMap<(Option<&str>, &str), StationView> = BTreeMap::new();
    let mut first_result: BTreeMap<&str, &str> = BTreeMap::new();
    let mut passed_units: BTreeMap<&str, ()> = BTreeMap::new();
    let mut causes: BTreeMap<Option<u8>, u64> = BTreeMap::new();
    let hour_ago = hour_before(now);
    let mut last_hour: BTreeMap<&str, ()> = BTreeMap::new();
    for r in rows {
        let s = stations
            .entry((r.line.as_deref(), r.station.as_str()))
            .or_insert_with(|| StationView {
                line: r.line.clone(),
                name: r.station.clone(),
                state: "idle",
                unit: None,
                passed: 0,
                failed: 0,
            });
        // Rows come oldest first: the last one says what the station does now.
        s.state = if r.result == "running" {
            "working"
        } else {
            "idle"
        };
        s.unit = (r.result == "running").then(|| r.unit_id.clone()).flatten();
        match r.result.as_str() {
            "pass" => s.passed += 1,
            "fail" | "interrupted" => {
                s.failed += 1;
                *causes.entry(r.exit_code).or_default() += 1;
            }
            _ => {}
        }
        if let Some(unit) = r.unit.as_deref()
            && r.result != "running"
        {
            first_result.entry(unit).or_insert(r.result.as_str());
            if r.result == "pass" {
                passed_units.insert(unit, ());
                if r.finished_at
                    .as_deref()
                    .is_some_and(|f| f >= hour_ago.as_str())
                {
                    last_hour.insert(unit, ());
                }
            }
        }
    }
    let tried = first_result.len() as u64;
    let first_pass = first_result.values().filter(|r| **r == "pass").count() as u64;
    let mut failures: Vec<FailureCause> = causes
        .into_iter()
        .map(|(code, count)| FailureCause {
            exit_code: code,
            label: label(code),
            count,
        })
        .collect();
    failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.exit_code.cmp(&b.exit_code)));
    let last_units = rows
        .iter()
        .rev()
        .filter(|r| r.result != "running")
        .take(10)
        .map(|r| LastUnit {
            unit: r.unit_id.clone().unwrap_or_else(|| r.port.clone()),
            station: r.station.clone(),
            result: r.result.clone(),
            cert_sha256: r.cert_sha256.clone(),
            finished_at: r.finished_at.clone().unwrap_or_default(),
        })
        .collect();
    Summary {
        stations: stations.into_values().collect(),
        units_last_hour: last_hour.len() as u64,
        units_passed: passed_units.len() as u64,
        units_tried: tried,
        first_pass_yield: if tried == 0 {
            0.0
        } else {
            first_pass as f64 / tried as f64
        },
        failures,
        last_units,
        pool,
        at: now.to_string(),
    }
}

/// The time an hour before `now` in the same format (times compare as text).
fn hour_before(now: &str) -> String {
    let format = time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(now, &format) {
        Ok(t) => (t - time::Duration::hours(1))
            .format(&format)
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page's live part, rendered on the server (the page's script replaces it with what the
/// event stream brings, rendered the same way by [`render`]'s twin in JavaScript).
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "<section id=\"figures\"><div class=\"fig\"><b id=\"per-hour\">{}</b> units in the last hour</div>\
         <div class=\"fig\"><b id=\"passed\">{}</b> units passed of <b id=\"tried\">{}</b> tried</div>\
         <div class=\"fig\"><b id=\"yield\">{:.1} %</b> first-pass yield</div>\
         <div class=\"fig\"><b id=\"pool-free\">{}</b> credentials left ({} assigned, {} rejected, {} revoked)</div></section>",
        s.units_last_hour,
        s.units_passed,
        s.units_tried,
        s.first_pass_yield * 100.0,
        s.pool.free,
        s.pool.assigned,
        s.pool.rejected,
        s.pool.revoked
    ));
    out.push_str("<h2>Stations</h2><table id=\"stations\"><tr><th>line</th><th>station</th><th>state</th><th>unit</th><th>passed</th><th>failed</th></tr>");
    for st in &s.stations {
        let line = st.line.as_deref().unwrap_or("");
        out.push_str(&format!(
            "<tr class=\"station {}\" data-station=\"{}\" data-line=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            st.state,
            escape(&st.name),
            escape(line),
            escape(line),
            escape(&st.name),
            st.state,
            escape(st.unit.as_deref().unwrap_or("")),
            st.passed,
            st.failed
        ));
    }
    out.push_str("</table><h2>Failure causes</h2><div id=\"failures\">");
    let most = s.failures.iter().map(|f| f.count).max().unwrap_or(1).max(1);
    if s.failures.is_empty() {
        out.push_str("<p>none</p>");
    }
    for f in &s.failures {
        out.push_str(&format!(
            "<div class=\"bar\" data-cause=\"{}\"><span class=\"label\">{}</span><span class=\"fill\" style=\"width:{}%\"></span><span class=\"count\">{}</span></div>",
            escape(&f.label),
            escape(&f.label),
            f.count * 100 / most,
            f.count
        ));
    }
    out.push_str("</div><h2>Last units</h2><table id=\"last\"><tr><th>unit</th><th>station</th><th>result</th><th>certificate SHA-256</th><th>finished</th></tr>");
    for u in &s.last_units {
        let fp = u.cert_sha256.as_deref().unwrap_or("");
        out.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td title=\"{}\">{}</td><td>{}</td></tr>",
            escape(&u.result),
            escape(&u.unit),
            escape(&u.station),
            escape(&u.result),
            escape(fp),
            escape(&fp.chars().take(16).collect::<String>()),
            escape(&u.finished_at)
        ));
    }
    out.push_str(&format!("</table><p id=\"at\">as of {}</p>", escape(&s.at)));
    out
}

/// The whole page: no external assets; its script listens to `events` (server-sent events
/// whose data is the live part's HTML) and replaces the live part with each.
pub fn page(s: &Summary, events: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>atprov line</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
#figures {{ display: flex; gap: 1em; flex-wrap: wrap; }}
.fig {{ border: 1px solid #ccc; border-radius: 6px; padding: .6em 1em; }}
.fig b {{ font-size: 1.6em; display: block; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: left; }}
tr.working td:nth-child(2) {{ color: #06c; font-weight: bold; }}
tr.fail td, tr.interrupted td {{ color: #b00; }}
.bar {{ display: flex; align-items: center; gap: .5em; margin: .2em 0; }}
.bar .label {{ width: 10em; }}
.bar .fill {{ display: inline-block; height: 1em; background: #c33; min-width: 2px; }}
</style></head>
<body><h1>atprov factory line</h1>
<div id="live">{}</div>
<script>
const live = document.getElementById("live");
const source = new EventSource({events:?});
source.addEventListener("summary", (e) => {{ live.innerHTML = e.data; }});
</script>
</body></html>
"#,
        render(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(station: &str, unit: &str, result: &str, code: Option<u8>, finished: &str) -> ReportRow {
        ReportRow {
            attempt: 0,
            line: Some("pc-1".into()),
            station: station.into(),
            port: "/dev/x".into(),
            unit: Some(unit.into()),
            unit_id: Some(unit.into()),
            mac: None,
            imei: None,
            iccid: None,
            firmware: None,
            thing_name: None,
            cert_sha256: Some("ab".repeat(32)),
            started_at: "2026-12-03T10:00:00.000Z".into(),
            finished_at: (!finished.is_empty()).then(|| finished.into()),
            result: result.into(),
            exit_code: code,
            reason: None,
            stages: String::new(),
            tool: "atprov".into(),
            profile: "esp32-at".into(),
        }
    }

    #[test]
    fn yield_counts_first_attempts_and_causes_are_counted_by_code() {
        let rows = vec![
            row("s1", "u1", "pass", None, "2026-12-03T10:01:00.000Z"),
            row("s1", "u2", "fail", Some(13), "2026-12-03T10:02:00.000Z"),
            row("s2", "u2", "pass", None, "2026-12-03T10:03:00.000Z"),
            row("s2", "u3", "fail", Some(13), "2026-12-03T08:00:00.000Z"),
            row("s2", "u4", "fail", Some(9), "2026-12-03T10:04:00.000Z"),
            row("s1", "u5", "running", None, ""),
        ];
        let pool = PoolStatus {
            free: 7,
            assigned: 5,
            rejected: 0,
            revoked: 0,
        };
        let s = summarize(&rows, pool, "2026-12-03T10:30:00.000Z");
        assert_eq!((s.units_tried, s.units_passed), (4, 2));
        // u1 passed at once; u2 failed first; u3 and u4 failed.
        assert!((s.first_pass_yield - 0.25).abs() < 1e-9);
        // u3's failure was more than an hour ago, but only passes count per hour.
        assert_eq!(s.units_last_hour, 2);
        assert_eq!(s.failures[0].label, "13 connect");
        assert_eq!(s.failures[0].count, 2);
        assert_eq!(s.failures[1].label, "9 module reset");
        assert_eq!(s.stations[0].state, "working");
        assert_eq!(s.stations[0].unit.as_deref(), Some("u5"));
        assert_eq!(s.stations[1].state, "idle");
        assert_eq!(s.last_units[0].unit, "u4");
        // The same station name on another PC is another station.
        let mut other = row("s1", "u9", "pass", None, "2026-12-03T10:05:00.000Z");
        other.line = Some("pc-2".into());
        let two = summarize(&[rows[0].clone(), other], pool, "2026-12-03T10:30:00.000Z");
        assert_eq!(two.stations.len(), 2);
        assert_eq!(two.stations[1].line.as_deref(), Some("pc-2"));
        let html = page(&s, "/events");
        assert!(html.contains("id=\"yield\">25.0 %<"), "{html}");
        assert!(html.contains("data-cause=\"13 connect\""));
        assert!(!html.contains("<script src"), "no external assets");
    }

    #[test]
    fn names_are_escaped() {
        let rows = vec![row("<s1>", "u&1", "pass", None, "2026-12-03T10:01:00.000Z")];
        let s = summarize(&rows, PoolStatus::default(), "2026-12-03T10:30:00.000Z");
        let html = render(&s);
        assert!(html.contains("&lt;s1&gt;") && html.contains("u&amp;1"));
        assert!(!html.contains("<s1>"));
    }
}
