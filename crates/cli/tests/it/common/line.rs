//! A production line made of emulators, for factory tests and the factory benchmark: each
//! station is a symlink (like a udev name) that points at the pseudo-terminal of the unit
//! currently "plugged in" (an `atprov sim` process with its own MAC and `--state` directory).
//! The line reacts to the factory's JSON-lines events the way an operator does: when a
//! station reports a verdict, that unit is unplugged and the next one is plugged in.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use atprov_core::pki::generate::{self, KeyKind};

/// One unit: its MAC, its flash and how its emulator is started.
#[derive(Debug, Clone)]
pub struct Unit {
    pub mac: String,
    pub state: PathBuf,
    /// More `atprov sim` arguments for this unit only.
    pub extra: Vec<String>,
}

impl Unit {
    pub fn new(dir: &Path, mac: &str, extra: &[&str]) -> Unit {
        Unit {
            mac: mac.into(),
            state: dir.join(format!("unit-{}", mac.replace(':', ""))),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The client certificate the unit holds, if any.
    pub fn stored_cert(&self) -> Option<Vec<u8>> {
        std::fs::read(self.state.join("mfg_nvs/mqtt_cert/mqtt_cert.blob")).ok()
    }

    pub fn unit_id(&self) -> String {
        self.mac.replace(':', "")
    }
}

struct Bay {
    name: String,
    link: PathBuf,
    queue: VecDeque<Unit>,
    current: Option<(Unit, super::SimProcess)>,
}

/// The stations and their queues of units.
pub struct Conveyor {
    bays: Vec<Bay>,
    sim_args: Vec<String>,
    pub plugged: Vec<Unit>,
}

impl Conveyor {
    /// `stations` stations named s1, s2 ... with `units_each` units queued at each; units get
    /// MACs 24:0a:c4:00:SS:UU and state directories under `dir`.
    pub fn new(dir: &Path, stations: usize, units_each: usize, sim_args: &[&str]) -> Conveyor {
        Conveyor::numbered(dir, 1, stations, units_each, sim_args)
    }

    /// Like [`Conveyor::new`], stations numbered from `first` (a second PC's line).
    pub fn numbered(
        dir: &Path,
        first: usize,
        stations: usize,
        units_each: usize,
        sim_args: &[&str],
    ) -> Conveyor {
        let bays = (first..first + stations)
            .map(|s| Bay {
                name: format!("s{s}"),
                link: dir.join(format!("tty-s{s}")),
                queue: (1..=units_each)
                    .map(|u| Unit::new(dir, &format!("24:0a:c4:00:{s:02x}:{u:02x}"), &[]))
                    .collect(),
                current: None,
            })
            .collect();
        Conveyor {
            bays,
            sim_args: sim_args.iter().map(|s| s.to_string()).collect(),
            plugged: Vec::new(),
        }
    }

    /// `[[station]]` tables for the factory config.
    pub fn stations_toml(&self) -> String {
        self.bays
            .iter()
            .map(|b| {
                format!(
                    "[[station]]\nname = \"{}\"\nport = \"{}\"\n",
                    b.name,
                    b.link.display()
                )
            })
            .collect()
    }

    fn bay(&mut self, station: &str) -> &mut Bay {
        self.bays
            .iter_mut()
            .find(|b| b.name == station)
            .unwrap_or_else(|| panic!("no station {station}"))
    }

    /// Plugs the next queued unit into every empty station.
    pub fn fill(&mut self) {
        let names: Vec<String> = self.bays.iter().map(|b| b.name.clone()).collect();
        for n in names {
            if self.bay(&n).current.is_none() {
                self.plug_next(&n);
            }
        }
    }

    /// Plugs the next queued unit into `station`; false when its queue is empty.
    pub fn plug_next(&mut self, station: &str) -> bool {
        let Some(unit) = self.bay(station).queue.pop_front() else {
            return false;
        };
        self.plug(station, unit);
        true
    }

    /// Plugs `unit` into `station` (which must be empty).
    pub fn plug(&mut self, station: &str, unit: Unit) {
        let args = self.sim_args.clone();
        let bay = self.bay(station);
        assert!(bay.current.is_none(), "{station} is occupied");
        let link = bay.link.clone();
        let mut sim_args: Vec<&str> = vec!["--link", link.to_str().unwrap(), "--mac", &unit.mac];
        sim_args.extend(["--state", unit.state.to_str().unwrap()]);
        sim_args.extend(args.iter().map(String::as_str));
        sim_args.extend(unit.extra.iter().map(String::as_str));
        let sim = super::SimProcess::start("esp32-at", &sim_args);
        self.plugged.push(unit.clone());
        self.bay(station).current = Some((unit, sim));
    }

    /// Takes the unit out of `station`: the name disappears first, then the device.
    pub fn unplug(&mut self, station: &str) -> Option<Unit> {
        let bay = self.bay(station);
        let _ = std::fs::remove_file(&bay.link);
        // Dropping the emulator kills it and waits for it.
        let (unit, _sim) = bay.current.take()?;
        Some(unit)
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the unit in `station`: a module that holds its
    /// answer, for as long as the test needs, like one still booting.
    pub fn freeze(&mut self, station: &str, frozen: bool) {
        let (_, sim) = self
            .bay(station)
            .current
            .as_ref()
            .expect("a unit is plugged in");
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(sim.child.id() as i32, signal);
        }
    }

    /// The unit in `station` now.
    pub fn current(&mut self, station: &str) -> Option<Unit> {
        self.bay(station).current.as_ref().map(|(u, _)| u.clone())
    }

    pub fn queued(&self) -> usize {
        self.bays.iter().map(|b| b.queue.len()).sum()
    }
}

impl Drop for Conveyor {
    fn drop(&mut self) {
        let names: Vec<String> = self.bays.iter().map(|b| b.name.clone()).collect();
        for n in names {
            self.unplug(&n);
        }
    }
}

/// A CA and `n` device credentials signed by it, with a CSV manifest.
pub fn make_pool(dir: &Path, n: usize) -> PathBuf {
    let pool = dir.join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    let ca = generate::ca("factory test CA", 10).unwrap();
    std::fs::write(pool.join("ca.pem"), &ca.cert_pem).unwrap();
    let mut manifest = String::from("thing_name,certificate,key\n");
    for i in 1..=n {
        let name = format!("thing-{i:03}");
        let dev =
            generate::device(&ca.cert_pem, &ca.key_pem, &name, 10, KeyKind::P256, None).unwrap();
        std::fs::write(pool.join(format!("{name}.crt")), &dev.cert_pem).unwrap();
        std::fs::write(pool.join(format!("{name}.key")), &dev.key_pem).unwrap();
        manifest.push_str(&format!("{name},{name}.crt,{name}.key\n"));
    }
    std::fs::write(pool.join("manifest.csv"), manifest).unwrap();
    pool
}

/// Writes the job and factory config; returns the config path.
pub fn write_config(dir: &Path, conveyor: &Conveyor, policy: &str) -> PathBuf {
    std::fs::write(
        dir.join("unit.toml"),
        "[wifi]\nssid = \"atprov-lab\"\npassword = \"correct horse battery\"\n\
         [mqtt]\nhost = \"broker.test\"\n[smoke]\ntimeout = \"1s\"\n",
    )
    .unwrap();
    let config = format!(
        "profile = \"esp32-at\"\njob = \"unit.toml\"\njournal = \"journal.db\"\nlog_dir = \"logs\"\n\
         [pool]\nmanifest = \"pool/manifest.csv\"\nca = \"pool/ca.pem\"\n\
         [policy]\npoll = \"20ms\"\n{policy}\n{}",
        conveyor.stations_toml()
    );
    let path = dir.join("factory.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Points a config written by [`write_config`] at a journal shared by several PCs
/// (`journal_lines` replaces its `journal = ...` line) and at the pool in `pool`, by absolute
/// paths.
pub fn share_pool(config: &Path, journal_lines: &str, pool: &Path) {
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("journal = \"journal.db\"", journal_lines)
        .replace(
            "manifest = \"pool/manifest.csv\"",
            &format!("manifest = \"{}\"", pool.join("manifest.csv").display()),
        )
        .replace(
            "ca = \"pool/ca.pem\"",
            &format!("ca = \"{}\"", pool.join("ca.pem").display()),
        );
    std::fs::write(config, text).unwrap();
}

/// A running `atprov factory` whose events arrive on a channel.
pub struct Factory {
    pub child: Child,
    pub events: mpsc::Receiver<serde_json::Value>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Factory {
    pub fn start(config: &Path, extra: &[&str]) -> Factory {
        Factory::start_with(config, extra, &[])
    }

    /// Starts a factory with more environment (a journal password).
    pub fn start_with(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Factory {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atprov"))
            .envs(env.iter().copied())
            .args(["factory", "--config"])
            .arg(config)
            .args(["--events", "-"])
            .args(extra)
            .args(std::env::var("ATPROV_TEST_VERBOSE").ok().map(|_| "-vv"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start atprov factory");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            use std::io::Read;
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("event is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Factory {
            child,
            events: rx,
            stderr: Some(stderr),
        }
    }

    /// The next event, or `None` once the factory closed stdout.
    pub fn next(&mut self, within: Duration) -> Option<serde_json::Value> {
        match self.events.recv_timeout(within) {
            Ok(v) => Some(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|t| t.join().unwrap_or_default());
                panic!(
                    "no factory event within {within:?}; its stderr:\n{}",
                    err.unwrap_or_default()
                );
            }
        }
    }

    /// Asks the factory to stop after the units in progress, as systemd or Ctrl-C would.
    pub fn terminate(&self) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the exit; returns the code and stderr.
    pub fn wait(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        let err = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Factory {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plays the operator until the factory exits: on each verdict, the unit is swapped for the
/// next one. Returns every event seen.
pub fn operate(factory: &mut Factory, conveyor: &mut Conveyor) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    while let Some(ev) = factory.next(Duration::from_secs(120)) {
        react(conveyor, &ev, false);
        seen.push(ev);
    }
    seen
}

/// The operator's reaction to one event: after a verdict the unit comes out and the next goes
/// in; with `retry_failed` a failed unit is power-cycled and put back instead.
pub fn react(conveyor: &mut Conveyor, ev: &serde_json::Value, retry_failed: bool) {
    if std::env::var_os("ATPROV_TEST_EVENTS").is_some() {
        eprintln!("{ev}");
    }
    let verdict = ev["event"].as_str().unwrap_or("");
    if !matches!(verdict, "unit_passed" | "unit_failed") {
        return;
    }
    let station = ev["station"].as_str().unwrap().to_string();
    let unit = conveyor.unplug(&station);
    match unit {
        Some(unit) if retry_failed && verdict == "unit_failed" => conveyor.plug(&station, unit),
        _ => {
            conveyor.plug_next(&station);
        }
    }
}

/// `atprov factory report --journal F --json` (a file, or a PostgreSQL URL whose password is
/// the test server's).
pub fn report(journal: impl AsRef<std::ffi::OsStr>) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_atprov"))
        .env("ATPROV_JOURNAL_PASSWORD", super::postgres::PASSWORD)
        .args(["factory", "report", "--json", "--journal"])
        .arg(journal)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A factory config on a PostgreSQL journal, the pool shared by both PCs.
pub fn pg_config(dir: &Path, conveyor: &Conveyor, pool: &Path, url: &str, line: &str) -> PathBuf {
    let config = write_config(dir, conveyor, "");
    share_pool(
        &config,
        &format!("journal = \"{url}\"\nline = \"{line}\""),
        pool,
    );
    config
}

/// One PC of a line of several on one PostgreSQL journal: its conveyor, its factory process
/// (restarted by the test when killed), the units that passed. Its operator swaps units after
/// each verdict (a failed unit goes back in) and stops the factory once all its own units
/// passed.
pub struct Pc {
    pub name: String,
    pub config: PathBuf,
    pub conveyor: Conveyor,
    pub factory: Option<Factory>,
    /// The units that passed.
    pub passed: std::collections::BTreeSet<String>,
    /// Its units in all.
    pub units: usize,
    /// Asked to stop (every unit of its own passed).
    pub stopping: bool,
    pub stderr: String,
    pub events: Vec<serde_json::Value>,
}

impl Pc {
    /// PC number `n` (line `PCn`) with `stations` stations of `each` units in `root/pcN`, on
    /// the journal `url` and the shared `pool`.
    pub fn new(
        root: &Path,
        n: usize,
        pool: &Path,
        url: &str,
        stations: usize,
        each: usize,
        sim_args: &[&str],
    ) -> Pc {
        let d = root.join(format!("pc{n}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut conveyor = Conveyor::numbered(&d, 1 + stations * (n - 1), stations, each, sim_args);
        let config = pg_config(&d, &conveyor, pool, url, &format!("PC{n}"));
        conveyor.fill();
        Pc {
            name: format!("PC{n}"),
            config,
            conveyor,
            factory: None,
            passed: Default::default(),
            units: stations * each,
            stopping: false,
            stderr: String::new(),
            events: Vec::new(),
        }
    }

    /// Starts (or starts again) its factory process.
    pub fn start(&mut self) {
        self.factory = Some(Factory::start_with(
            &self.config,
            &[],
            &[("ATPROV_JOURNAL_PASSWORD", super::postgres::PASSWORD)],
        ));
    }

    /// Handles what the factory said within `within`; false once it has exited.
    pub fn pump(&mut self, within: Duration) -> bool {
        let Some(f) = self.factory.as_mut() else {
            return false;
        };
        match f.events.recv_timeout(within) {
            Ok(ev) => {
                react(&mut self.conveyor, &ev, true);
                if ev["event"] == "unit_passed" {
                    self.passed
                        .insert(ev["unit"].as_str().unwrap_or_default().to_string());
                    if self.passed.len() == self.units && !self.stopping {
                        f.terminate();
                        self.stopping = true;
                    }
                }
                self.events.push(ev);
                true
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => true,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let (code, stderr) = self.factory.take().unwrap().wait();
                assert_eq!(code, 0, "{} exited {code}: {stderr}", self.name);
                self.stderr.push_str(&stderr);
                false
            }
        }
    }

    /// SIGKILLs its factory process: no chance to clean up.
    pub fn kill(&mut self) {
        let f = self.factory.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(f.child.id() as i32, libc::SIGKILL);
        }
        let (_, stderr) = f.wait();
        self.stderr.push_str(&stderr);
    }
}

/// Lets every PC handle what its factory said in the next few milliseconds; returns how many
/// are still running.
pub fn pump_all(pcs: &mut [Pc]) -> usize {
    pcs.iter_mut()
        .filter_map(|pc| pc.pump(Duration::from_millis(10)).then_some(()))
        .count()
}
