//! The demo's real broker: Debian's `mosquitto`, when it is on the PATH, started on a free
//! loopback port with mutual TLS (the demo's server certificate; client certificates checked
//! against the demo's device CA) and stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running mosquitto.
pub struct Mosquitto {
    child: Child,
    /// Its mutual-TLS listener on 127.0.0.1.
    pub port: u16,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a program named `mosquitto` is on the PATH.
pub fn installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("mosquitto").is_file()))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts mosquitto with the files in `dir` (`device-ca.pem`, `server.pem`, `server.key`),
/// retrying on another port when the chosen one was taken meanwhile. The error is the line
/// to show.
pub fn start(dir: &Path) -> Result<Mosquitto, String> {
    let p = |n: &str| dir.join(n).display().to_string();
    for _attempt in 0..5 {
        let port = free_port().map_err(|e| format!("no free loopback port: {e}"))?;
        // `user root` matters only when started as root (mosquitto then keeps root to read the
        // 0600 key); as anyone else it is ignored.
        let conf = format!(
            "user root\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username true\n",
            p("device-ca.pem"),
            p("server.pem"),
            p("server.key"),
        );
        let conf_path = dir.join("mosquitto.conf");
        crate::files::write(
            &conf_path,
            conf.as_bytes(),
            crate::files::Access::Private,
            crate::files::Existing::Replace,
        )
        .map_err(|e| e.to_string())?;
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("mosquitto did not start: {e}"))?;
        // Its log, line by line, read on a thread so a silent broker cannot hang the demo.
        let reader = BufReader::new(child.stderr.take().expect("piped stderr"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end even after the start, so the broker never blocks on a full pipe.
            for line in reader.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut log = String::new();
        while let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(10)) {
            let running = line.contains(" running");
            log.push_str(&line);
            log.push('\n');
            if running {
                return Ok(Mosquitto { child, port });
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        if !log.contains("Address already in use") {
            let last = log.lines().last().unwrap_or("no output").to_string();
            return Err(format!("mosquitto did not start: {last}"));
        }
    }
    Err("mosquitto did not start: no free port after 5 tries".into())
}
