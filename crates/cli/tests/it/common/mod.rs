//! Helpers shared by the integration tests: an emulator in its own process on a PTY.

#![allow(dead_code)]

pub mod line;
pub mod mosquitto;
pub mod openssl;
pub mod postgres;

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

/// A small deterministic generator (xorshift) for tests that act at random moments; the seed
/// is printed so that a failing run can be repeated with `ATPROV_CRASH_SEED`.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `ATPROV_CRASH_SEED`, else the clock.
    pub fn seeded() -> Rng {
        let seed = std::env::var("ATPROV_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("ATPROV_CRASH_SEED={seed}");
        Rng(seed)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Reads a server's log (its stderr) until a line contains `ready`, then keeps draining it,
/// appended to `keep`, so that the server never blocks on a full pipe. Returns whether the
/// server came up (false: the log ended, it exited) and what it logged until then.
pub fn await_ready(
    stderr: std::process::ChildStderr,
    ready: &str,
    keep: std::path::PathBuf,
) -> (bool, String) {
    let mut reader = BufReader::new(stderr);
    let mut log = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return (false, log);
        }
        log.push_str(&line);
        if line.contains(ready) {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(keep)
            .unwrap();
        let _ = std::io::copy(&mut reader, &mut out);
    });
    (true, log)
}
