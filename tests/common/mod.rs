//! Helpers shared by the integration tests: an emulator in its own process on a PTY.

#![allow(dead_code)]

pub mod line;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `atprov sim NAME --pty` running in a child process; killed on drop.
pub struct SimProcess {
    pub child: Child,
    pub path: String,
}

impl SimProcess {
    pub fn start(name: &str, extra: &[&str]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atprov"))
            .args(["sim", name, "--pty"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start atprov sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the PTY path");
        let path = line.trim().to_string();
        assert!(path.starts_with("/dev/"), "sim printed `{path}`");
        SimProcess { child, path }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a throw-away P-256 CA (`ca.pem`, `ca.key`) and a device certificate and key signed
/// by it (`dev.pem`, `dev.key`, CN thing-1) into `dir`.
pub fn write_credentials(dir: &std::path::Path) {
    use atprov::pki::generate::{self, KeyKind};
    let ca = generate::ca("test CA", 10).unwrap();
    let dev = generate::device(
        &ca.cert_pem,
        &ca.key_pem,
        "thing-1",
        10,
        KeyKind::P256,
        None,
    )
    .unwrap();
    for (name, text) in [
        ("ca.pem", &ca.cert_pem),
        ("ca.key", &ca.key_pem),
        ("dev.pem", &dev.cert_pem),
        ("dev.key", &dev.key_pem),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Runs the atprov binary; returns (exit code, stdout, stderr).
pub fn atprov(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run atprov");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
