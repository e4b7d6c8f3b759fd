//! Helpers shared by the integration tests: an emulator in its own process on a PTY.

#![allow(dead_code)]

pub mod line;
pub mod mosquitto;
pub mod openssl;

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

/// Writes an AWS-shaped P-256 bundle made by openssl into `dir` (see [`openssl`]): `ca.pem`
/// is the server root the module stores, `dev.pem`/`dev.key` come from `dev-ca.pem`.
pub fn write_credentials(dir: &std::path::Path) {
    openssl::aws_shaped(dir, openssl::Keys::P256);
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
