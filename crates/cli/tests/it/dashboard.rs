//! `atprov factory dashboard` in a real browser: headless Chromium (Debian's `chromium`) loads
//! the page while a line runs, the DOM is checked (stations, counts, the failure chart) and a
//! screenshot is kept in `target/tmp/dashboard.png`; `GET /api/summary` is checked against the
//! factory's own verdicts.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::line::Unit;

/// A dashboard process on a free loopback port; killed on drop.
pub(crate) struct Dashboard {
    child: Child,
    pub(crate) base: String,
}

impl Dashboard {
    /// On `journal` (a file, or a URL of the test PostgreSQL server).
    pub(crate) fn start(journal: impl AsRef<std::ffi::OsStr>, extra: &[&str]) -> Dashboard {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atprov"))
            .env("ATPROV_JOURNAL_PASSWORD", crate::common::postgres::PASSWORD)
            .args(["factory", "dashboard", "--journal"])
            .arg(journal)
            .args(["--listen", "127.0.0.1:0", "--every", "100ms"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the dashboard");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("dashboard on ")
            .unwrap_or_else(|| panic!("dashboard said `{line}`"))
            .trim_end_matches('/')
            .to_string();
        Dashboard { child, base }
    }

    /// `GET path`: the status code and the body.
    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        let host = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs headless Chromium with `args` on `url`; returns its stdout.
pub(crate) fn chromium(args: &[&str], url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--log-level=3",
        ])
        .args(["--virtual-time-budget=5000"])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run chromium (Debian's `chromium` package)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_dashboard_shows_a_running_line_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let units = vec![
        // Fails smoke (exit 14): its broker never delivers.
        Unit::new(dir.path(), "24:0a:c4:00:00:0a", &["--deny-receive"]),
        Unit::new(dir.path(), "24:0a:c4:00:00:0b", &[]),
        // Frozen (SIGSTOP) as soon as its attempt begins, and thawed once the browser has
        // looked: it is under way however long the browser takes.
        Unit::new(dir.path(), "24:0a:c4:00:00:0c", &[]),
    ];
    let mut dashboard: Option<Dashboard> = None;
    let mut dom = String::new();
    let mut verdicts_seen = 0;
    // The frozen unit answers its first AT only when thawed: the station waits for it.
    let policy = "answer_within = \"120s\"";
    let (verdicts, code, stderr) =
        crate::factory::one_station_with(dir.path(), 4, policy, units, |ev, conveyor| {
            if matches!(ev["event"].as_str(), Some("unit_passed" | "unit_failed")) {
                verdicts_seen += 1;
            }
            // The third unit is under way: load the page now, mid-batch.
            if ev["event"] == "unit_detected" && verdicts_seen == 2 && dashboard.is_none() {
                conveyor.freeze("s1", true);
                let d = Dashboard::start(&journal, &[]);
                dom = chromium(&["--dump-dom"], &format!("{}/?limit=1", d.base));
                let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
                let _ = std::fs::remove_file(&shot);
                chromium(
                    &[
                        "--window-size=1000,800",
                        &format!("--screenshot={}", shot.display()),
                    ],
                    &format!("{}/?limit=1", d.base),
                );
                let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
                assert!(png.starts_with(b"\x89PNG"), "not a PNG");
                dashboard = Some(d);
                conveyor.freeze("s1", false);
            }
        });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(verdicts.len(), 3);
    // The DOM the browser built: the station, the counts so far, the failure chart.
    assert!(dom.contains("data-station=\"s1\""), "{dom}");
    assert!(dom.contains("class=\"station working\""), "{dom}");
    assert!(dom.contains("id=\"passed\">1<"), "{dom}");
    assert!(dom.contains("data-cause=\"14 smoke\""), "{dom}");
    assert!(dom.contains("id=\"yield\">50.0 %<"), "{dom}");
    // After the batch, the JSON for an MES agrees with the factory's verdicts.
    let d = dashboard.expect("the page was loaded during the batch");
    let (status, body) = d.get("/api/summary");
    assert_eq!(status, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    let passed = verdicts
        .iter()
        .filter(|v| v["event"] == "unit_passed")
        .count();
    assert_eq!(s["units_passed"], passed as u64);
    assert_eq!(s["units_tried"], 3);
    // Each station is shown with its line (the factory process's name, its host by default).
    let line = s["stations"][0]["line"].as_str().unwrap_or("");
    assert!(!line.is_empty(), "{s}");
    assert_eq!(s["failures"][0]["exit_code"], 14);
    assert_eq!(s["failures"][0]["count"], 1);
    assert_eq!(s["pool"]["free"], 1);
    let last = &s["last_units"][0];
    let fingerprint = last["cert_sha256"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 64, "{last}");
}

#[test]
fn off_loopback_the_dashboard_needs_a_token_and_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let (code, _, err) = crate::common::atprov(&[
        "factory",
        "dashboard",
        "--journal",
        journal.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs --token"), "{err}");
    // A journal that does not exist is said before anything is served.
    let (code, _, err) = crate::common::atprov(&[
        "factory",
        "dashboard",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert_eq!(code, 15, "{err}");
    assert!(err.contains("journal.db"), "{err}");
    // The token from the environment is never shown, not even by --help.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(["factory", "dashboard", "--help"])
        .env("ATPROV_DASHBOARD_TOKEN", "s3cret-token")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("ATPROV_DASHBOARD_TOKEN") && !help.contains("s3cret-token"),
        "{help}"
    );
    // With a token, requests without it are refused.
    rusqlite::Connection::open(&journal).unwrap();
    let d = Dashboard::start(&journal, &["--token", "s3cret-token"]);
    assert_eq!(d.get("/api/summary").0, 401);
    assert_eq!(d.get("/?token=wrong").0, 401);
    let (status, body) = d.get("/api/summary?token=s3cret-token");
    assert_eq!(status, 200, "{body}");
}
