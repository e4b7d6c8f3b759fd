//! A PostgreSQL server of its own for a test: Debian's `postgresql-15` binaries
//! (`/usr/lib/postgresql/15/bin`, not on PATH), a cluster made by `initdb` in a temporary
//! directory, listening on a free loopback port, password (SCRAM) authentication over TCP.
//! `initdb` and the server refuse to run as root, so as root they run as `postgres`.
//! Stopped (fast shutdown) when dropped; [`Postgres::stop`] and [`Postgres::start_again`]
//! let a test take the server away mid-batch.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The journal user's password: tests pass it in `ATPROV_JOURNAL_PASSWORD` and check that it
/// never shows.
pub const PASSWORD: &str = "pg-journal-Secret-7c1e";

pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// More `-c name=value` settings for the server.
    settings: Vec<String>,
}

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `cmd` run as the `postgres` user when we are root.
fn as_postgres(program: &str) -> Command {
    if as_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
            program,
        ]);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// A new cluster with the role `atprov` (password [`PASSWORD`]) owning the database
    /// `journal`.
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// [`Postgres::start`] with TLS on: the server presents `server-chain.pem` and
    /// `server.key` from `pki` (made by `openssl::aws_shaped`), whose root is `ca.pem`.
    pub fn start_tls(pki: &Path) -> Postgres {
        Postgres::start_with(Some(pki))
    }

    fn start_with(pki: Option<&Path>) -> Postgres {
        let initdb = Path::new(BIN).join("initdb");
        assert!(
            initdb.exists(),
            "{} is missing (apt-get install postgresql-15)",
            initdb.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("atprov-pg")
            .tempdir_in("/tmp")
            .unwrap();
        if as_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let pwfile = dir.path().join("superuser-password");
        std::fs::write(&pwfile, "superuser-secret\n").unwrap();
        if as_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pwfile)
                .status()
                .unwrap();
        }
        let out = as_postgres(initdb.to_str().unwrap())
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-N",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut settings = Vec::new();
        if let Some(pki) = pki {
            // The server reads its key as itself, and refuses a key others may read.
            for (from, to) in [("server-chain.pem", "tls.crt"), ("server.key", "tls.key")] {
                let target = dir.path().join(to);
                std::fs::copy(pki.join(from), &target).unwrap();
                if as_root() {
                    Command::new("chown")
                        .args(["postgres:postgres"])
                        .arg(&target)
                        .status()
                        .unwrap();
                }
                Command::new("chmod")
                    .arg("600")
                    .arg(&target)
                    .status()
                    .unwrap();
                let name = if to == "tls.crt" {
                    "ssl_cert_file"
                } else {
                    "ssl_key_file"
                };
                settings.push(format!("{name}={}", target.display()));
            }
            settings.push("ssl=on".into());
        }
        let mut pg = Postgres {
            child: None,
            port: 0,
            dir,
            settings,
        };
        for _ in 0..5 {
            pg.port = super::mosquitto::free_port();
            if pg.launch() {
                pg.psql(
                    "postgres",
                    &[
                        &format!("CREATE ROLE atprov LOGIN PASSWORD '{PASSWORD}'"),
                        "CREATE DATABASE journal OWNER atprov",
                    ],
                );
                return pg;
            }
        }
        panic!("postgres: no free port after 5 tries");
    }

    /// Starts the server on `self.port`; false when the port was taken.
    fn launch(&mut self) -> bool {
        let mut child = as_postgres(&format!("{BIN}/postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-c", "listen_addresses=127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "fsync=off"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postgres");
        let (up, log) = super::await_ready(
            child.stderr.take().unwrap(),
            "database system is ready to accept connections",
            self.dir.path().join("server.log"),
        );
        if up {
            self.child = Some(child);
            return true;
        }
        let _ = child.wait();
        if log.contains("Address already in use") || log.contains("could not bind") {
            return false;
        }
        panic!("postgres did not start:\n{log}");
    }

    /// Runs SQL as the superuser over the server's socket, in database `db`.
    pub fn psql(&self, db: &str, statements: &[&str]) -> String {
        let mut c = Command::new("psql");
        c.arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d"])
            .arg(db)
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-A", "-t"]);
        for s in statements {
            c.args(["-c", s]);
        }
        let out = c
            .output()
            .expect("psql (apt-get install postgresql-client)");
        assert!(
            out.status.success(),
            "psql {statements:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new empty database owned by `atprov`; its URL.
    pub fn database(&self, name: &str) -> String {
        self.psql(
            "postgres",
            &[&format!("CREATE DATABASE {name} OWNER atprov")],
        );
        format!("postgresql://atprov@127.0.0.1:{}/{name}", self.port)
    }

    /// The journal's URL (no password: that comes from the environment).
    pub fn url(&self) -> String {
        format!("postgresql://atprov@127.0.0.1:{}/journal", self.port)
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&mut self) {
        assert!(self.launch(), "port {} was taken meanwhile", self.port);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of the server that can cut a connection just after the server
/// answered a chosen command (`COMMIT`, `INSERT 0 1`), before the client hears the answer:
/// the work is done on the server, the client only knows its connection went away. That is
/// the case a journal must survive without doing the work twice.
pub struct CuttingProxy {
    pub port: u16,
    armed: std::sync::Arc<std::sync::Mutex<Option<&'static [u8]>>>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingProxy {
    /// Listens on a free loopback port and forwards to the server's `port`.
    pub fn start(port: u16) -> CuttingProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let armed: std::sync::Arc<std::sync::Mutex<Option<&'static [u8]>>> = Default::default();
        let cuts: std::sync::Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let proxy = CuttingProxy {
            port: listener.local_addr().unwrap().port(),
            armed: armed.clone(),
            cuts: cuts.clone(),
        };
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                let (armed, cuts) = (armed.clone(), cuts.clone());
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    // The end of the previous read, so that an answer split across two reads
                    // is still seen.
                    let mut tail: Vec<u8> = Vec::new();
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut seen = std::mem::take(&mut tail);
                        let old = seen.len();
                        seen.extend_from_slice(&buf[..n]);
                        {
                            let mut armed = armed.lock().unwrap();
                            // Only an answer that ends in what was just read counts: the
                            // tail was forwarded already.
                            if let Some(needle) = *armed
                                && seen[old.saturating_sub(needle.len() - 1)..]
                                    .windows(needle.len())
                                    .any(|w| w == needle)
                            {
                                *armed = None;
                                cuts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let _ = c_out.shutdown(Shutdown::Both);
                                let _ = s_in.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        tail = seen[seen.len().saturating_sub(16)..].to_vec();
                    }
                    let _ = c_out.shutdown(Shutdown::Both);
                });
            }
        });
        proxy
    }

    /// Cuts the connection that next carries the server's answer `tag` (e.g. `b"COMMIT\0"`,
    /// the command-complete tag as the protocol sends it).
    pub fn arm(&self, tag: &'static [u8]) {
        *self.armed.lock().unwrap() = Some(tag);
    }

    /// How many connections were cut.
    pub fn cuts(&self) -> usize {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }
}
