//! Device profiles: everything that varies between module families, as data. A profile holds
//! the serial defaults, the response grammar (finals, busy, boot and URC tables), the
//! credential store kind and its parameters, and the flows (init, identify, connect, smoke,
//! cleanup) as lists of [`Step`]s. Logic that is not data (a store's erase/write/verify loop,
//! escaping) lives in Rust and is named by the profile (`[store] kind`).
//!
//! Built-in profiles are the TOML files in `profiles/`, embedded in the binary; `--profile`
//! takes a built-in name or a file path. `profiles/README.md` documents the schema. A wrong
//! profile is reported as `file:line:column: field: problem`.

pub mod template;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use template::{Condition, Pattern, Template, TemplateError, Value, Vars};

/// Every variable a job defines; profiles may use these and what their steps capture.
pub const VARIABLES: &[&str] = &[
    "unit_id",
    "wifi.ssid",
    "wifi.password",
    "mqtt.host",
    "mqtt.port",
    "mqtt.client_id",
    "mqtt.username",
    "mqtt.password",
    "mqtt.scheme",
    "mqtt.alpn",
    "mqtt.sni",
    "mqtt.keepalive",
    "smoke.topic",
    "smoke.payload",
    "smoke.timeout",
    "time.server",
    "time.min_year",
    "time.within",
    "aliyun.auth_url",
    "aliyun.auth_body",
    "aliyun.register_url",
    "aliyun.register_body",
    "aliyun.register_client_id",
    "aliyun.register_username",
    "aliyun.register_password",
    "aliyun.secret_file",
];

/// The built-in profiles: name and TOML text.
pub const BUILTIN: &[(&str, &str)] = &[
    ("esp32-at", include_str!("../../profiles/esp32-at.toml")),
    ("quectel", include_str!("../../profiles/quectel.toml")),
    ("air780ep", include_str!("../../profiles/air780ep.toml")),
];

/// A device profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name (`esp32-at`).
    pub name: String,
    /// Which module family the Rust parts should expect.
    pub family: Family,
    /// One line for `atprov profiles`.
    pub description: String,
    #[serde(default)]
    /// Serial defaults.
    pub serial: Serial,
    #[serde(default)]
    /// Additions to the engine's response tables.
    pub grammar: Grammar,
    /// Where the module keeps credentials.
    pub store: Store,
    /// Default values of job variables (`mqtt.scheme = "5"`); the job overrides them.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Sent once after opening, and again after the module resets.
    #[serde(default)]
    pub init: Vec<Step>,
    /// Firmware, chip, identity: captures variables such as `mac`, `firmware`.
    #[serde(default)]
    pub identify: Vec<Step>,
    /// Network and MQTT bring-up.
    #[serde(default)]
    pub connect: Vec<Step>,
    /// Publish a unique message and wait for it to come back.
    #[serde(default)]
    pub smoke: Vec<Step>,
    /// Best-effort teardown after smoke (errors are reported, not fatal).
    #[serde(default)]
    pub cleanup: Vec<Step>,
    /// One-type-one-secret registration, run before connect when a job asks for it and the
    /// unit has no device secret yet; must capture `{aliyun.device_secret}`.
    #[serde(default)]
    pub register: Vec<Step>,
    /// HTTPS sign-in before MQTT (Aliyun iotId/iotToken), run when a job asks; must capture
    /// `{aliyun.iot_id}` and `{aliyun.iot_token}`.
    #[serde(default)]
    pub auth: Vec<Step>,
}

/// A string or a list of strings (`completes_on = "SUBACK"` or `["CONNACK OK", "CLOSED"]`).
#[derive(Debug, Clone, Default)]
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::One(s) => OneOrMany(vec![s]),
            Raw::Many(v) => OneOrMany(v),
        })
    }
}

/// Module families atprov has Rust logic for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Espressif ESP-AT.
    EspAt,
    /// Quectel standard AT firmware.
    Quectel,
    /// Hezhou/Luat AT firmware.
    Luat,
}

/// Serial defaults (the command line overrides them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Serial {
    /// Default line rate (`--baud` overrides it).
    pub baud: u32,
    /// Time a command may take unless its step says otherwise.
    pub timeout: Dur,
    /// How long the module may take to answer again after a restart: commands that restart
    /// it (`AT+RST`, `AT+CFUN=1,1`) wait this long, and after a timeout the engine keeps
    /// trying for this long before it declares the module dead.
    pub boot_window: Dur,
    /// The line rate for the credential transfer (`off`, `auto` or a rate; `--flash-baud`
    /// and a job's `[serial] flash_baud` override it).
    pub flash_baud: crate::units::FlashBaud,
    /// How long to wait after a rate switch before the next command (the family's documented
    /// settle time; ESP-AT documents none, esptool waits 50 ms).
    pub rate_settle: Dur,
}

impl Default for Serial {
    fn default() -> Self {
        Serial {
            baud: 115_200,
            timeout: Dur(Duration::from_secs(5)),
            boot_window: Dur(Duration::from_secs(10)),
            flash_baud: crate::units::FlashBaud::Off,
            rate_settle: Dur(Duration::from_millis(50)),
        }
    }
}

/// The response grammar, added to the built-in tables of the engine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grammar {
    /// Extra success finals.
    pub ok: Vec<String>,
    /// Extra error finals.
    pub error: Vec<String>,
    /// Lines meaning "busy, resend later".
    pub busy: Vec<String>,
    /// Boot banners (the module reset).
    pub boot: Vec<String>,
    /// Prefixes of lines that explain the error that follows.
    pub error_details: Vec<String>,
    /// Exact unsolicited lines.
    pub urc_lines: Vec<String>,
    /// Prefixes of unsolicited lines.
    pub urc_prefixes: Vec<String>,
    /// Prefixes of unsolicited lines that carry a secret: transcripts show their length only.
    pub secret_urcs: Vec<String>,
}

/// Where and how credentials are stored on the module.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// The Rust store logic: `esp-at` probes `AT+SYSMFG?` then `AT+SYSFLASH?` and writes PEM
    /// blobs (v3.1+) or AtPKI bins in raw partitions (2.x).
    pub kind: StoreKind,
    /// Names of the CA, certificate and key slots (namespace/key or partition).
    pub ca: String,
    /// The slot of the device certificate.
    pub cert: String,
    /// The slot of the private key.
    pub key: String,
    /// Largest write in one command.
    #[serde(default = "default_chunk")]
    pub chunk: usize,
}

fn default_chunk() -> usize {
    4096
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
/// The Rust store logic a profile names.
pub enum StoreKind {
    /// ESP-AT: mfg_nvs or PKI partitions, probed.
    EspAt,
    /// Quectel UFS files: `AT+QFDEL`, `AT+QFUPL` (size and XOR-16 checked), `AT+QFLST`.
    QuectelUfs,
    /// Luat files: `AT+FSDEL`, `AT+FSCREATE`, `AT+FSWRITE` (≤10,240 bytes a call), `AT+FSFLSIZE`.
    LuatFs,
}

/// What a failed step means, which picks the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailKind {
    /// The module said ERROR (exit 7).
    At,
    /// Wi-Fi, cellular registration, DNS, clock (exit 12).
    Network,
    /// The broker or TLS session (exit 13).
    Connect,
    /// The message did not come back (exit 14).
    Smoke,
}

/// One step of a flow. Exactly one of `send` and `wait_urc` is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawStep")]
pub struct Step {
    /// Shown in progress and errors.
    pub name: String,
    /// What the step does.
    pub action: Action,
    /// Run the step only when this holds.
    pub when: Option<Condition>,
    /// Patterns matched against every line of the response; captured values become variables.
    pub capture: Vec<Pattern>,
    /// For `send`: time for the answer. For `wait_urc`: time for the URC. May use variables
    /// (`{smoke.timeout}`).
    pub timeout: Option<DurSpec>,
    /// Resend after an error this many times.
    pub retries: u32,
    /// Pause before a retry.
    pub retry_delay: Duration,
    /// Poll: resend every `every` until `until` holds, for at most `within`.
    pub poll: Option<Poll>,
    /// Ok when the command ends with this URC after its `OK` (e.g. `+MQTTCONNECTED:`).
    pub completes_on: Vec<String>,
    /// The command succeeded only if a line of its response (info or URC) starts with this
    /// (e.g. `+QMTOPEN: 0,0`); any other outcome is a failure the `explain` table explains.
    pub expect: Option<Template>,
    /// What a failure means, which picks the exit code.
    pub fail: FailKind,
    /// Explanations: the first whose `match` starts a response line or URC is used.
    pub explain: Vec<Explain>,
    /// Said after the error when no explanation matched.
    pub hint: Option<Template>,
    /// Failure is reported but not fatal.
    pub optional: bool,
    /// The response carries a secret: transcripts show its length only and what the step
    /// captures is secret.
    pub secret: bool,
    /// Keep the time this step took, in milliseconds, in this variable.
    pub record_ms: Option<String>,
}

#[derive(Debug, Clone)]
/// What a step does.
pub enum Action {
    /// Send a command, with an optional payload after its prompt.
    Send {
        /// The command.
        line: Template,
        /// Bytes to send after its prompt.
        payload: Option<Template>,
    },
    /// Wait for an unsolicited message starting with `prefix`, optionally carrying `payload`
    /// (chunks of the same message are joined).
    WaitUrc {
        /// How the URC starts.
        prefix: Template,
        /// The payload it must carry.
        payload: Option<Template>,
    },
}

#[derive(Debug, Clone)]
/// Polling: resend until a condition holds.
pub struct Poll {
    /// Stop polling when this holds.
    pub until: Condition,
    /// Pause between tries.
    pub every: Duration,
    /// Give up after this long.
    pub within: Option<DurSpec>,
    /// Stop polling as soon as this URC arrives (e.g. `+TIME_UPDATED`).
    pub or_urc: Option<String>,
    /// Fail at once, without waiting out `within`, when this holds (registration denied).
    pub stop_if: Option<Condition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// An explanation of one way a step fails.
pub struct Explain {
    /// Start of a response line or URC (`+CWJAP:2`, `ERR CODE:0x010a6023`).
    #[serde(rename = "match")]
    pub matches: String,
    /// What to tell the user.
    pub say: Template,
    /// Overrides the step's `fail`.
    pub fail: Option<FailKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    send: Option<Template>,
    payload: Option<Template>,
    wait_urc: Option<Template>,
    when: Option<Condition>,
    #[serde(default)]
    capture: Vec<Pattern>,
    timeout: Option<DurSpec>,
    #[serde(default)]
    retries: u32,
    retry_delay: Option<Dur>,
    until: Option<Condition>,
    every: Option<Dur>,
    within: Option<DurSpec>,
    or_urc: Option<String>,
    stop_if: Option<Condition>,
    #[serde(default)]
    completes_on: OneOrMany,
    expect: Option<Template>,
    fail: Option<FailKind>,
    #[serde(default)]
    explain: Vec<Explain>,
    hint: Option<Template>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    secret: bool,
    record_ms: Option<String>,
}

impl TryFrom<RawStep> for Step {
    type Error = String;

    fn try_from(r: RawStep) -> Result<Step, String> {
        let (action, default_name) = match (r.send, r.wait_urc) {
            (Some(line), None) => {
                let name = line.source().to_string();
                (
                    Action::Send {
                        line,
                        payload: r.payload,
                    },
                    name,
                )
            }
            (None, Some(prefix)) => {
                let name = format!("wait for {}", prefix.source());
                (
                    Action::WaitUrc {
                        prefix,
                        payload: r.payload,
                    },
                    name,
                )
            }
            (Some(_), Some(_)) => {
                return Err("a step has either `send` or `wait_urc`, not both".into());
            }
            (None, None) => return Err("a step needs `send` or `wait_urc`".into()),
        };
        let poll = match (r.until, r.every, r.within, r.or_urc, r.stop_if) {
            (Some(until), every, within, or_urc, stop_if) => Some(Poll {
                until,
                every: every.map_or(Duration::from_secs(1), |d| d.0),
                within,
                or_urc,
                stop_if,
            }),
            (None, None, None, None, None) => None,
            _ => return Err("`every`, `within`, `or_urc` and `stop_if` need `until`".into()),
        };
        if poll.is_some() && matches!(action, Action::WaitUrc { .. }) {
            return Err("`until` polls a command; it does not go with `wait_urc`".into());
        }
        Ok(Step {
            name: r.name.unwrap_or(default_name),
            action,
            when: r.when,
            capture: r.capture,
            timeout: r.timeout,
            retries: r.retries,
            retry_delay: r.retry_delay.map_or(Duration::from_millis(500), |d| d.0),
            poll,
            completes_on: r.completes_on.0,
            expect: r.expect,
            fail: r.fail.unwrap_or(FailKind::At),
            explain: r.explain,
            hint: r.hint,
            optional: r.optional,
            secret: r.secret,
            record_ms: r.record_ms,
        })
    }
}

/// A duration written as text (`500ms`, `20s`, `2m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::units::parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration that may come from a variable (`{time.within}`), checked at load time when it
/// has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurSpec(pub Template);

impl DurSpec {
    /// Parses a duration or a template of one; a fixed one is checked now.
    pub fn parse(s: &str) -> Result<DurSpec, TemplateError> {
        let t = Template::parse(s)?;
        if t.variables().next().is_none() {
            crate::units::parse_duration(s)?;
        }
        Ok(DurSpec(t))
    }

    /// The duration, with variables rendered.
    pub fn resolve(&self, vars: &Vars) -> Result<Duration, TemplateError> {
        Ok(crate::units::parse_duration(&self.0.render(vars)?.text)?)
    }
}

macro_rules! parsed_from_string {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
parsed_from_string!(Template);
parsed_from_string!(Pattern);
parsed_from_string!(Condition);
parsed_from_string!(DurSpec);

/// A profile that could not be loaded: where and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProfileError(pub String);

impl Profile {
    /// Loads a built-in profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Profile::parse(text, &format!("built-in profile {name_or_path}"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(ProfileError(format!(
                "profile `{name_or_path}`: no such built-in profile or file (built-in: {}; `atprov profiles` lists them)",
                BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProfileError(format!("profile {name_or_path}: cannot read it: {e}")))?;
        Profile::parse(&text, name_or_path)
    }

    /// Parses profile text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| {
            ProfileError(crate::error::InputError::from_toml(origin, text, &e).to_string())
        })?;
        profile
            .validate()
            .map_err(|m| ProfileError(format!("{origin}: {m}")))?;
        Ok(profile)
    }

    /// Checks what serde cannot: every variable a step uses is a job variable, a default, or
    /// captured by an earlier flow.
    fn validate(&self) -> Result<(), String> {
        crate::units::parse_baud(&self.serial.baud.to_string())
            .map_err(|e| format!("[serial] baud: {e}"))?;
        if self.serial.timeout.0.is_zero() {
            return Err(
                "[serial] timeout: a timeout of 0 can never be met; give at least 1ms".into(),
            );
        }
        let mut known: Vec<String> = VARIABLES.iter().map(|s| s.to_string()).collect();
        known.extend(self.defaults.keys().cloned());
        let flows: [(&str, &[Step]); 7] = [
            ("init", &self.init),
            ("identify", &self.identify),
            ("register", &self.register),
            ("auth", &self.auth),
            ("connect", &self.connect),
            ("smoke", &self.smoke),
            ("cleanup", &self.cleanup),
        ];
        for (flow, steps) in flows {
            for (i, step) in steps.iter().enumerate() {
                for p in &step.capture {
                    known.extend(p.names().map(str::to_string));
                }
                if let Some(r) = &step.record_ms {
                    known.push(r.clone());
                }
                let mut used: Vec<&Template> = Vec::new();
                match &step.action {
                    Action::Send { line, payload } => {
                        used.push(line);
                        used.extend(payload);
                    }
                    Action::WaitUrc { prefix, payload } => {
                        used.push(prefix);
                        used.extend(payload);
                    }
                }
                used.extend(step.when.as_ref().map(|c| &c.0));
                used.extend(step.timeout.as_ref().map(|d| &d.0));
                used.extend(
                    step.poll
                        .as_ref()
                        .and_then(|p| p.within.as_ref())
                        .map(|d| &d.0),
                );
                used.extend(step.poll.as_ref().map(|p| &p.until.0));
                used.extend(step.hint.as_ref());
                used.extend(step.explain.iter().map(|e| &e.say));
                for t in used {
                    for v in t.variables() {
                        if !known.iter().any(|k| k == v) {
                            return Err(format!(
                                "[[{flow}]] step {} (`{}`): variable `{v}` is neither a job variable, a default nor captured by an earlier step",
                                i + 1,
                                step.name
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Engine settings for this profile: the defaults with its grammar.
    pub fn engine_config(&self) -> crate::at::EngineConfig {
        crate::at::EngineConfig {
            grammar: std::sync::Arc::new(self.engine_grammar()),
            boot_window: self.serial.boot_window.0,
            ..crate::at::EngineConfig::default()
        }
    }

    /// The profile's grammar tables merged into the engine's.
    pub fn engine_grammar(&self) -> crate::at::Grammar {
        let mut g = crate::at::Grammar::builtin();
        g.extend(
            &self.grammar.ok,
            &self.grammar.error,
            &self.grammar.busy,
            &self.grammar.boot,
            &self.grammar.error_details,
            &self.grammar.urc_lines,
            &self.grammar.urc_prefixes,
        );
        g.extend_secret_urcs(&self.grammar.secret_urcs);
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load() {
        for (name, _) in BUILTIN {
            let p = Profile::load(name).unwrap();
            assert_eq!(p.name, *name);
            assert!(!p.identify.is_empty() && !p.connect.is_empty() && !p.smoke.is_empty());
        }
    }

    #[test]
    fn errors_name_line_column_and_field() {
        let base = BUILTIN[0].1;
        let bad = base.replacen("baud = 115200", "baud = \"fast\"", 1);
        let e = Profile::parse(&bad, "p.toml").unwrap_err().0;
        let line = bad.lines().position(|l| l.contains("\"fast\"")).unwrap() + 1;
        assert!(e.starts_with(&format!("p.toml:{line}:")), "{e}");
        assert!(e.contains("field `baud`"), "{e}");
        let bad = base.replacen("timeout = \"20s\"", "timeout = \"soon\"", 1);
        let e = Profile::parse(&bad, "p.toml").unwrap_err().0;
        assert!(e.contains("field `timeout`") && e.contains("soon"), "{e}");
        let bad = format!("{base}\n[[smoke]]\nsend = \"AT+X={{nothing}}\"\n");
        let e = Profile::parse(&bad, "p.toml").unwrap_err().0;
        assert!(e.contains("`nothing`") && e.contains("[[smoke]]"), "{e}");
        let bad = format!("{base}\n[[smoke]]\nsned = \"AT\"\n");
        let e = Profile::parse(&bad, "p.toml").unwrap_err().0;
        assert!(e.contains("sned") && e.starts_with("p.toml:"), "{e}");
        let bad = format!("{base}\n[[smoke]]\nsend = \"AT+X={{a|zap}}\"\n");
        let e = Profile::parse(&bad, "p.toml").unwrap_err().0;
        assert!(e.contains("zap") && e.contains("field `send`"), "{e}");
    }
}
