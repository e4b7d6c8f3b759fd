//! `factory.toml`: the stations, the profile and job every unit gets, the credential pool, the
//! journal, the log directory and the policy. Relative paths are relative to the config file.
//! Errors name the file, line, column and field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::InputError;
use crate::provision::Stage;

/// The config file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    profile: Option<String>,
    job: Option<PathBuf>,
    journal: String,
    journal_password_file: Option<PathBuf>,
    line: Option<String>,
    #[serde(default)]
    events_table: bool,
    log_dir: Option<PathBuf>,
    pool: PoolFile,
    #[serde(default)]
    policy: PolicyFile,
    #[serde(default, rename = "station")]
    stations: Vec<StationFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    manifest: Option<PathBuf>,
    ca: Option<PathBuf>,
    device_ca: Option<PathBuf>,
    generate: Option<GenerateFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateFile {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    dir: PathBuf,
    thing_name: Option<String>,
    days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    steps: Option<String>,
    retries: Option<u32>,
    on_failure: Option<String>,
    removal: Option<String>,
    poll: Option<String>,
    answer_within: Option<String>,
    flash_baud: Option<crate::units::FlashBaud>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StationFile {
    name: String,
    port: String,
}

/// A checked factory configuration with absolute paths.
#[derive(Debug, Clone)]
pub struct FactoryConfig {
    /// The config file itself.
    pub path: PathBuf,
    /// The device profile every unit gets.
    pub profile: String,
    /// The job file every unit gets.
    pub job: Option<PathBuf>,
    /// The journal: a SQLite file, or a PostgreSQL database several PCs share.
    pub journal: crate::factory::journal::Location,
    /// The line's name in the journal (`line = "L2"`; default: the host name): which PC's
    /// process ran an attempt.
    pub line: Option<String>,
    /// Also write every event into the journal's `events` table (for an MES).
    pub events_table: bool,
    /// Where per-unit transcripts go.
    pub log_dir: Option<PathBuf>,
    /// Where credentials come from.
    pub pool: Pool,
    /// How units are treated.
    pub policy: Policy,
    /// The stations, in order.
    pub stations: Vec<Station>,
}

/// The credential pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The CA certificate written to every unit (the one the module verifies the broker with).
    pub ca: PathBuf,
    /// The CA that issued the manifest's device certificates, when given: each is checked
    /// against it before it goes out. A generated pool is checked against its own CA.
    pub device_ca: Option<PathBuf>,
    /// Where per-unit certificates and keys come from.
    pub source: PoolSource,
}

/// Where per-unit certificates and keys come from.
#[derive(Debug, Clone)]
pub enum PoolSource {
    /// Ready-made files listed in a manifest (CSV or JSON).
    Manifest(PathBuf),
    /// A certificate made per unit from a manufacturer CA; files kept in `dir`.
    Generate {
        /// The manufacturer CA's certificate.
        ca_cert: PathBuf,
        /// The manufacturer CA's key.
        ca_key: PathBuf,
        /// Where generated certificates and keys are written.
        dir: PathBuf,
        /// Template for the thing name (default `{unit_id}`).
        thing_name: String,
        /// Validity of each generated certificate.
        days: u32,
    },
}

/// What happens to a failed unit's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// It stays with the unit: the unit gets it again when it comes back, no other unit ever.
    Keep,
    /// It goes back to the pool (only when failed units are wiped or scrapped).
    Release,
}

/// How the station knows the unit was taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The port disappears (USB module or adapter unplugged).
    Port,
    /// The port stays (a jig); a different unit answers on it.
    Identity,
}

/// How far each unit goes; every unit is identified, flashed and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steps {
    /// Identify, flash and verify.
    Flash,
    /// And connect MQTT.
    Connect,
    /// And smoke (a message round trip).
    Provision,
}

impl Steps {
    /// The stages after identify, in order.
    pub fn after_identify(self) -> &'static [Stage] {
        match self {
            Steps::Flash => &[Stage::Flash],
            Steps::Connect => &[
                Stage::Flash,
                Stage::Register,
                Stage::Connect,
                Stage::Cleanup,
            ],
            Steps::Provision => &[
                Stage::Flash,
                Stage::Register,
                Stage::Connect,
                Stage::Smoke,
                Stage::Cleanup,
            ],
        }
    }
}

#[derive(Debug, Clone)]
/// How units are treated.
pub struct Policy {
    /// How far each unit goes.
    pub steps: Steps,
    /// Extra tries of a failed unit before it is declared failed.
    pub retries: u32,
    /// What happens to a failed unit's credential.
    pub on_failure: OnFailure,
    /// How a station knows its unit was taken away.
    pub removal: Removal,
    /// How often a station looks for a unit.
    pub poll: Duration,
    /// How long a newly seen unit may take to answer `AT`.
    pub answer_within: Duration,
    /// The line rate for the credential transfer (default `auto`: switch where it pays;
    /// a job's `[serial] flash_baud` wins).
    pub flash_baud: crate::units::FlashBaud,
}

#[derive(Debug, Clone)]
/// One station.
pub struct Station {
    /// Its name (in events, transcripts and the journal).
    pub name: String,
    /// Its port selector.
    pub port: String,
}

impl FactoryConfig {
    /// Loads and checks `path`.
    pub fn load(path: &Path) -> Result<FactoryConfig, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InputError::new(
                format!("factory config {}", path.display()),
                format!("cannot read it: {e}"),
            )
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<FactoryConfig, InputError> {
        let shown = path.display().to_string();
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| InputError::from_toml(&shown, text, &e))?;

        // Paths in the config are relative to the config file, made absolute so that nothing
        // (the journal's pool paths least of all) depends on the folder atprov ran in.
        let config_path = crate::files::absolute(path);
        let base = config_path.parent().unwrap_or(Path::new("."));
        let abs = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let bad = |field: &str, why: String| InputError {
            origin: shown.clone(),
            at: None,
            field: Some(field.to_string()),
            message: why,
        };
        let source = match (&file.pool.manifest, &file.pool.generate) {
            (Some(m), None) => PoolSource::Manifest(abs(m)),
            (None, Some(g)) => PoolSource::Generate {
                ca_cert: abs(&g.ca_cert),
                ca_key: abs(&g.ca_key),
                dir: abs(&g.dir),
                thing_name: g.thing_name.clone().unwrap_or_else(|| "{unit_id}".into()),
                days: match g.days.unwrap_or(3650) {
                    d @ 1..=crate::pki::generate::MAX_DAYS => d,
                    d => {
                        return Err(bad(
                            "pool.generate.days",
                            format!(
                                "{d}: give 1 to {} days of validity",
                                crate::pki::generate::MAX_DAYS
                            ),
                        ));
                    }
                },
            },
            _ => {
                return Err(bad(
                    "pool",
                    "give either `manifest` or a [pool.generate] table (and `ca` in both cases)"
                        .into(),
                ));
            }
        };
        let ca = file.pool.ca.as_deref().ok_or_else(|| {
            bad(
                "pool.ca",
                "missing: the CA certificate written to every unit".into(),
            )
        })?;
        if file.pool.device_ca.is_some() && matches!(source, PoolSource::Generate { .. }) {
            return Err(bad(
                "pool.device_ca",
                "a generated pool's device certificates are checked against [pool.generate] ca_cert; leave device_ca out".into(),
            ));
        }
        let pool = Pool {
            ca: abs(ca),
            device_ca: file.pool.device_ca.as_deref().map(abs),
            source,
        };
        if let PoolSource::Generate { thing_name, .. } = &pool.source {
            crate::profile::Template::parse(thing_name)
                .map_err(|e| bad("pool.generate.thing_name", e.to_string()))?;
        }
        let p = &file.policy;
        let steps = match p.steps.as_deref().unwrap_or("provision") {
            "flash" => Steps::Flash,
            "connect" => Steps::Connect,
            "provision" => Steps::Provision,
            other => {
                return Err(bad(
                    "policy.steps",
                    format!(
                        "`{other}`: use flash (identify, flash, verify), connect (and connect MQTT) or provision (and smoke)"
                    ),
                ));
            }
        };
        let on_failure = match p.on_failure.as_deref().unwrap_or("keep") {
            "keep" => OnFailure::Keep,
            "release" => OnFailure::Release,
            other => {
                return Err(bad(
                    "policy.on_failure",
                    format!("`{other}`: use keep or release"),
                ));
            }
        };
        let removal = match p.removal.as_deref().unwrap_or("port") {
            "port" => Removal::Port,
            "identity" => Removal::Identity,
            other => {
                return Err(bad(
                    "policy.removal",
                    format!("`{other}`: use port or identity"),
                ));
            }
        };
        let duration = |field: &str, v: &Option<String>, default: u64| match v {
            None => Ok(Duration::from_millis(default)),
            Some(s) => crate::units::parse_timeout(s).map_err(|e| bad(field, e.to_string())),
        };
        let policy = Policy {
            steps,
            retries: match p.retries.unwrap_or(0) {
                n @ 0..=100 => n,
                n => return Err(bad("policy.retries", format!("{n}: give 0 to 100"))),
            },
            on_failure,
            removal,
            poll: duration("policy.poll", &p.poll, 100)?,
            answer_within: duration("policy.answer_within", &p.answer_within, 10_000)?,
            flash_baud: p.flash_baud.unwrap_or(crate::units::FlashBaud::Auto),
        };
        if file.stations.is_empty() {
            return Err(bad(
                "station",
                "no station: add [[station]] tables with a name and a port".into(),
            ));
        }
        let mut stations = Vec::new();
        for s in &file.stations {
            if s.name.contains(' ') || crate::files::safe_component(&s.name).is_err() {
                return Err(bad(
                    "station.name",
                    format!("`{}`: use a short name without spaces or slashes", s.name),
                ));
            }
            if stations.iter().any(|o: &Station| o.name == s.name) {
                return Err(bad("station.name", format!("`{}` is used twice", s.name)));
            }
            crate::port::Selector::parse(&s.port)
                .map_err(|e| bad(&format!("station `{}` port", s.name), e.to_string()))?;
            stations.push(Station {
                name: s.name.clone(),
                port: s.port.clone(),
            });
        }
        let mut journal = crate::factory::journal::Location::parse(&file.journal, Some(base))
            .map_err(|e| bad("journal", e))?;
        if let Some(password_file) = &file.journal_password_file {
            match journal {
                crate::factory::journal::Location::Postgres(target) => {
                    journal = crate::factory::journal::Location::Postgres(Box::new(
                        target.with_password_file(abs(password_file)),
                    ));
                }
                crate::factory::journal::Location::Sqlite(_) => {
                    return Err(bad(
                        "journal_password_file",
                        "is for a postgresql:// journal; a SQLite file has no password".into(),
                    ));
                }
            }
        }
        if let Some(line) = &file.line
            && (line.is_empty() || line.contains([' ', ':']) || line.len() > 64)
        {
            return Err(bad(
                "line",
                format!("`{line}`: use a short name without spaces or colons, e.g. \"L2\""),
            ));
        }
        Ok(FactoryConfig {
            path: path.to_path_buf(),
            profile: file.profile.unwrap_or_else(|| "esp32-at".into()),
            job: file.job.as_deref().map(abs),
            journal,
            line: file.line,
            events_table: file.events_table,
            log_dir: file.log_dir.as_deref().map(abs),
            pool,
            policy,
            stations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
profile = "esp32-at"
job = "unit.toml"
journal = "line.db"
log_dir = "logs"
[pool]
manifest = "pool/manifest.csv"
ca = "pool/ca.pem"
[policy]
steps = "flash"
on_failure = "release"
poll = "50ms"
[[station]]
name = "s1"
port = "/dev/ttyUSB0"
[[station]]
name = "s2"
port = "usb:10c4:ea60"
"#;

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = FactoryConfig::parse(GOOD, Path::new("/line/factory.toml")).unwrap();
        assert!(
            matches!(&c.journal, crate::factory::journal::Location::Sqlite(p) if p == Path::new("/line/line.db"))
        );
        assert_eq!(c.job.as_deref(), Some(Path::new("/line/unit.toml")));
        let PoolSource::Manifest(manifest) = &c.pool.source else {
            panic!("manifest pool")
        };
        assert_eq!(manifest, Path::new("/line/pool/manifest.csv"));
        assert_eq!(c.pool.ca, Path::new("/line/pool/ca.pem"));
        assert_eq!(c.policy.steps, Steps::Flash);
        assert_eq!(c.policy.on_failure, OnFailure::Release);
        assert_eq!(c.policy.poll, Duration::from_millis(50));
        assert_eq!(c.policy.flash_baud, crate::units::FlashBaud::Auto);
        assert_eq!(c.stations.len(), 2);
        let fixed = GOOD.replace("poll = \"50ms\"", "poll = \"50ms\"\nflash_baud = 460800");
        let c = FactoryConfig::parse(&fixed, Path::new("/line/factory.toml")).unwrap();
        assert_eq!(c.policy.flash_baud, crate::units::FlashBaud::Rate(460_800));
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let text = GOOD.replace("steps = \"flash\"", "steps = \"paint\"");
        let e = FactoryConfig::parse(&text, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f.toml: field `policy.steps`: `paint`"),
            "{e}"
        );
        let text = GOOD.replace("name = \"s2\"", "name = \"s1\"");
        let e = FactoryConfig::parse(&text, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`s1` is used twice"), "{e}");
        let text = GOOD.replace("poll = \"50ms\"", "poll = 5");
        let e = FactoryConfig::parse(&text, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml:12:8: field `poll`:"), "{e}");
        let text = GOOD.replace("poll = \"50ms\"", "flash_baud = \"fast\"");
        let e = FactoryConfig::parse(&text, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `flash_baud`") && e.contains("off, auto"),
            "{e}"
        );
        let text = GOOD.replace("ca = \"pool/ca.pem\"\n", "");
        let e = FactoryConfig::parse(&text, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `pool.ca`"), "{e}");
    }

    #[test]
    fn a_line_names_itself_and_its_journal_may_be_a_database() {
        let text = GOOD.replace(
            "journal = \"line.db\"",
            "journal = \"postgresql://atprov@db.lan:5432/line\"\nline = \"L2\"",
        );
        let c = FactoryConfig::parse(&text, Path::new("/line/factory.toml")).unwrap();
        assert_eq!(c.line.as_deref(), Some("L2"));
        assert!(matches!(
            &c.journal,
            crate::factory::journal::Location::Postgres(t) if t.shown() == "postgresql://atprov@db.lan:5432/line"
        ));
        let bad = |journal: &str, line: &str| {
            let text = GOOD.replace(
                "journal = \"line.db\"",
                &format!("journal = \"{journal}\"\nline = \"{line}\""),
            );
            FactoryConfig::parse(&text, Path::new("/line/factory.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = bad("line.db", "L 2");
        assert!(e.contains("line") && e.contains("without spaces"), "{e}");
        let e = bad("postgresql://atprov:hunter2@db/line", "L2");
        assert!(
            e.contains("journal") && e.contains("ATPROV_JOURNAL_PASSWORD"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = bad("mysql://db/line", "L2");
        assert!(e.contains("a SQLite file or a postgresql:// URL"), "{e}");
    }
}
