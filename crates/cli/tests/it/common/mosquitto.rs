//! Debian's mosquitto, started by a test on a free loopback port and stopped when dropped:
//! mutual TLS with the openssl bundle of [`super::openssl`] (its server chain from the root the
//! module stores, client certificates from the separate device CA, `require_certificate`), an
//! ACL, and optionally a TLS listener with a password file (the Aliyun-style logins).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running broker.
pub struct Mosquitto {
    child: Child,
    /// The mutual-TLS listener.
    pub port: u16,
    /// The TLS listener that takes user names and passwords instead of client certificates.
    pub password_port: Option<u16>,
    pub dir: PathBuf,
}

/// What the broker allows.
pub struct Setup<'a> {
    /// The openssl bundle's folder.
    pub pki: &'a Path,
    /// The ACL file's text (mosquitto's syntax); `None`: everything allowed.
    pub acl: Option<&'a str>,
    /// `user:password` lines for the password listener.
    pub passwords: &'a [(&'a str, &'a str)],
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Mosquitto {
    /// mosquitto with the mutual-TLS listener only, everything allowed.
    pub fn mutual_tls(pki: &Path) -> Mosquitto {
        Mosquitto::start(Setup {
            pki,
            acl: None,
            passwords: &[],
        })
    }

    /// Starts mosquitto; panics with its log when it does not come up.
    pub fn start(setup: Setup<'_>) -> Mosquitto {
        let dir = setup.pki.join(format!("mosquitto-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let acl = dir.join("acl");
        std::fs::write(
            &acl,
            setup
                .acl
                .unwrap_or("pattern readwrite #\ntopic readwrite #\n"),
        )
        .unwrap();
        let passwd = dir.join("passwd");
        if !setup.passwords.is_empty() {
            std::fs::write(&passwd, "").unwrap();
            for (user, pass) in setup.passwords {
                let ok = Command::new("mosquitto_passwd")
                    .args(["-b"])
                    .arg(&passwd)
                    .args([user, pass])
                    .status()
                    .expect("mosquitto_passwd (apt-get install mosquitto)");
                assert!(ok.success());
            }
        }
        let p = |n: &str| setup.pki.join(n).display().to_string();
        for _attempt in 0..5 {
            let port = free_port();
            let password_port = (!setup.passwords.is_empty()).then(free_port);
            let mut conf = format!(
                "user root\nper_listener_settings true\nlog_dest stderr\nlog_type all\n\n\
                 listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n\
                 acl_file {}\n",
                p("dev-ca.pem"),
                p("server-chain.pem"),
                p("server.key"),
                acl.display()
            );
            if let Some(pp) = password_port {
                conf.push_str(&format!(
                    "\nlistener {pp} 127.0.0.1\ncertfile {}\nkeyfile {}\nallow_anonymous false\n\
                     password_file {}\nacl_file {}\n",
                    p("server-chain.pem"),
                    p("server.key"),
                    passwd.display(),
                    acl.display()
                ));
            }
            let conf_path = dir.join("mosquitto.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let mut child = Command::new("mosquitto")
                .arg("-c")
                .arg(&conf_path)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start mosquitto (apt-get install mosquitto)");
            let (up, log) = super::await_ready(
                child.stderr.take().unwrap(),
                " running",
                dir.join("broker.log"),
            );
            if up {
                return Mosquitto {
                    child,
                    port,
                    password_port,
                    dir,
                };
            }
            let _ = child.wait();
            if !log.contains("Address already in use") {
                panic!("mosquitto did not start:\n{log}");
            }
        }
        panic!("mosquitto: no free port after 5 tries");
    }

    /// `127.0.0.1:PORT` of the mutual-TLS listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// A `mosquitto_sub` with the device certificate, waiting for one message on `topic`;
    /// returns once it is subscribed.
    pub fn subscriber(&self, topic: &str, pki: &Path) -> Subscriber {
        let out = self.dir.join(format!("sub-{}.out", free_port()));
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("--cafile")
            .arg(pki.join("ca.pem"))
            .arg("--cert")
            .arg(pki.join("dev.pem"))
            .arg("--key")
            .arg(pki.join("dev.key"))
            .args(["-t", topic, "-C", "1", "-W", "30", "-v", "-d"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)");
        let sub = Subscriber { child, out };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sub.output().contains("Subscribed") {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto_sub did not subscribe"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        sub
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host-side `mosquitto_sub`.
pub struct Subscriber {
    child: Child,
    out: PathBuf,
}

impl Subscriber {
    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for it to end (one message, or its timeout) and returns what it printed.
    pub fn wait(mut self) -> String {
        let _ = self.child.wait();
        self.output()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
