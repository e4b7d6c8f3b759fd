//! Rendering command results for people and for JSON.

use serde_json::{Value, json};

use crate::at::{Response, Status};

/// Whether a JSON document went to stdout in this run (so a failure is not reported twice).
static JSON_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints one JSON document (one line: JSON lines) on stdout.
pub fn json_line(v: impl std::fmt::Display) {
    println!("{v}");
    JSON_PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Prints one JSON document, indented, on stdout.
pub fn json_pretty(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => json_line(s),
        Err(e) => tracing::error!("JSON: {e}"),
    }
}

/// Whether [`json_line`] or [`json_pretty`] printed anything yet.
pub fn json_printed() -> bool {
    JSON_PRINTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The JSON object of one command (the replay schema plus status and timing), secrets hidden.
pub fn response_json(r: &Response) -> Value {
    let r = &crate::at::redact::response(r);
    json!({
        "command": r.command,
        "echo": r.echo,
        "final": r.final_line,
        "prompt": r.prompt,
        "info": r.info,
        "urcs": r.urcs.iter().map(|u| u.line.clone()).collect::<Vec<_>>(),
        "timeout": matches!(r.status, Status::Timeout { .. }),
        "status": r.status.word(),
        "completion": r.completion,
        "busy_retries": r.busy_retries,
        "elapsed_ms": (r.elapsed.as_secs_f64() * 1e6).round() / 1e3,
    })
}

/// A readable block for one command, secrets hidden.
pub fn response_text(r: &Response) -> String {
    let r = &crate::at::redact::response(r);
    let mut s = format!("{}\n", r.command);
    for l in &r.info {
        s.push_str(&format!("  | {l}\n"));
    }
    if let Some(p) = &r.prompt {
        s.push_str(&format!("  > prompt {p}\n"));
    }
    for u in &r.urcs {
        s.push_str(&format!("  ~ urc {}\n", u.line));
    }
    let summary = r.summary();
    let end = match &r.status {
        Status::Ok => r.final_line.clone().unwrap_or_else(|| "OK".into()),
        _ => summary
            .strip_prefix(&format!("{}: ", r.command))
            .unwrap_or(&summary)
            .to_string(),
    };
    s.push_str(&format!(
        "  = {end}  ({:.1} ms)\n",
        r.elapsed.as_secs_f64() * 1e3
    ));
    s
}
