//! `atprov factory report`: the journal's attempts as a table, CSV or JSON, for audits and the
//! MES. One row per attempt, with the unit, its credential's thing name and fingerprint.

use super::journal::ReportRow;

/// CSV with a header; fields with commas, quotes or line breaks are quoted.
pub fn csv(rows: &[ReportRow]) -> String {
    let mut out = String::from(
        "attempt,station,port,unit,unit_id,mac,imei,iccid,firmware,thing_name,cert_sha256,started_at,finished_at,result,exit_code,reason,stages,tool,profile\n",
    );
    for r in rows {
        let fields = [
            r.attempt.to_string(),
            r.station.clone(),
            r.port.clone(),
            r.unit.clone().unwrap_or_default(),
            r.unit_id.clone().unwrap_or_default(),
            r.mac.clone().unwrap_or_default(),
            r.imei.clone().unwrap_or_default(),
            r.iccid.clone().unwrap_or_default(),
            r.firmware.clone().unwrap_or_default(),
            r.thing_name.clone().unwrap_or_default(),
            r.cert_sha256.clone().unwrap_or_default(),
            r.started_at.clone(),
            r.finished_at.clone().unwrap_or_default(),
            r.result.clone(),
            r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            r.reason.clone().unwrap_or_default(),
            r.stages.clone(),
            r.tool.clone(),
            r.profile.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A short human table.
pub fn table(rows: &[ReportRow]) -> String {
    let mut out = format!(
        "{:>6}  {:8}  {:14}  {:16}  {:6}  {}\n",
        "#", "station", "unit", "thing", "result", "reason"
    );
    for r in rows {
        out.push_str(&format!(
            "{:>6}  {:8}  {:14}  {:16}  {:6}  {}\n",
            r.attempt,
            r.station,
            r.unit_id.as_deref().or(r.unit.as_deref()).unwrap_or("?"),
            r.thing_name.as_deref().unwrap_or("-"),
            r.result,
            r.reason.as_deref().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
