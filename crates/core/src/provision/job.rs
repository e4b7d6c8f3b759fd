//! A job: what to provision on one unit. It comes from a TOML file (`--job unit.toml`) and/or
//! flags; flags win over the file, the file over the profile's defaults. Values are templates
//! that may use what identify captured (`{mac}`, `{imei}`, `{unit_id}`); they become the
//! variables profile steps use (`{wifi.ssid}`, `{mqtt.client_id}` ...). Secrets (the Wi-Fi and
//! MQTT passwords) come from the file, an environment variable or a file of their own, and are
//! marked secret so that no transcript, log or report shows them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::InputError;
use crate::profile::{Template, TemplateError, Value, Vars};

pub use crate::profile::VARIABLES;

/// Why a job cannot be built; each says which file, flag or field is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The job file cannot be read, does not parse, or one of its fields is wrong.
    #[error(transparent)]
    File(#[from] InputError),
    /// A `--set` that is not `NAME=VALUE`, or names no job variable.
    #[error("--set {0}")]
    Set(String),
    /// A secret (password, device or product secret) could not be read.
    #[error("{what}: {why}")]
    Secret {
        /// Which secret.
        what: String,
        /// Why not.
        why: String,
    },
    /// A job value is not a valid template.
    #[error("job value {name} = {text:?}: {error}")]
    Value {
        /// The variable.
        name: String,
        /// What was written.
        text: String,
        /// What is wrong with it.
        error: TemplateError,
    },
    /// The `[aliyun]` section is inconsistent.
    #[error("job file [aliyun] {0}")]
    Aliyun(String),
    /// A job that writes credentials names none (or not all three).
    #[error(
        "credentials missing: give {0} (flags --ca/--cert/--key or [credentials] in the job file)"
    )]
    MissingCredentials(String),
}

/// Where a registered device's secret is kept unless the job says: next to the job file.
const DEFAULT_SECRET_FILE: &str = "aliyun-{unit_id}.secret";

/// The job file. Every field is optional; `atprov` says which one is missing when a step
/// needs it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// How the unit is named (default `{mac|nocolon}`).
    pub unit_id: Option<String>,
    #[serde(default)]
    /// `[credentials]`.
    pub credentials: CredentialPaths,
    #[serde(default)]
    /// `[wifi]`.
    pub wifi: Wifi,
    #[serde(default)]
    /// `[mqtt]`.
    pub mqtt: Mqtt,
    #[serde(default)]
    /// `[smoke]`.
    pub smoke: Smoke,
    #[serde(default)]
    /// `[time]`.
    pub time: Time,
    #[serde(default)]
    /// `[tls]`.
    pub tls: Tls,
    #[serde(default)]
    /// `[serial]`.
    pub serial: SerialSection,
    /// Aliyun IoT Platform one-device-one-secret: the MQTT client id, username and password are
    /// derived from these at run time (after identify, so names may use `{imei}`).
    pub aliyun: Option<Aliyun>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// A job's `[aliyun]` section.
pub struct Aliyun {
    /// The product key.
    pub product_key: String,
    /// Template, e.g. `{imei}`.
    pub device_name: String,
    /// Template (default: the device name).
    pub client_id: Option<String>,
    /// The device secret inline (a file is better).
    pub device_secret: Option<String>,
    /// An environment variable holding the device secret.
    pub device_secret_env: Option<String>,
    /// A file holding the device secret.
    pub device_secret_file: Option<PathBuf>,
    /// hmacmd5 (default), hmacsha1 or hmacsha256.
    pub method: Option<String>,
    /// 2 (TLS, default) or 3 (TCP).
    pub securemode: Option<u8>,
    /// One-type-one-secret: `https` or `mqtt` registers the device with the product secret when
    /// its secret file does not exist yet, and keeps what the platform returns in that file
    /// (the profile's `[[register]]` steps say which transport the module uses).
    pub register: Option<String>,
    /// The product secret inline (a file is better).
    pub product_secret: Option<String>,
    /// An environment variable holding the product secret.
    pub product_secret_env: Option<String>,
    /// A file holding the product secret.
    pub product_secret_file: Option<PathBuf>,
    /// Template of the file that keeps a registered device's secret (readable by its owner
    /// only); default `aliyun-{unit_id}.secret`.
    pub secret_file: Option<String>,
    /// Region of the registration and auth endpoints (default cn-shanghai).
    pub region: Option<String>,
    /// `https`: sign in over HTTPS first (`/auth/devicename`) and connect MQTT with the
    /// returned iotId and iotToken instead of a signed password.
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// A job's `[credentials]`.
pub struct CredentialPaths {
    /// The CA the module verifies the broker with (AWS: Amazon Root CA 1).
    pub ca: Option<PathBuf>,
    /// The device certificate.
    pub cert: Option<PathBuf>,
    /// The device's private key.
    pub key: Option<PathBuf>,
    /// The CA that issued the device certificate; when given, the certificate is checked
    /// against it. AWS IoT issues device certificates from a CA of its own: leave it out.
    pub device_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// A job's `[wifi]`.
pub struct Wifi {
    /// The network's name.
    pub ssid: Option<String>,
    /// Its password inline (an environment variable or a file is better).
    pub password: Option<String>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password (first line).
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// A job's `[mqtt]`.
pub struct Mqtt {
    /// The broker's host name.
    pub host: Option<String>,
    /// The broker's port.
    pub port: Option<u16>,
    /// The client id (AWS: the thing name).
    pub client_id: Option<String>,
    /// The user name.
    pub username: Option<String>,
    /// The password inline (an environment variable or a file is better).
    pub password: Option<String>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// ESP-AT's MQTT scheme (1 TCP ... 5 mutual TLS).
    pub scheme: Option<u8>,
    /// ALPN protocols (AWS on 443: `x-amzn-mqtt-ca`).
    pub alpn: Option<Vec<String>>,
    /// TLS server name, when not the host.
    pub sni: Option<String>,
    /// Keepalive, seconds.
    pub keepalive: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// A job's `[smoke]`.
pub struct Smoke {
    /// The topic published to and subscribed to.
    pub topic: Option<String>,
    /// How long to wait for the message to come back.
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// A job's `[time]`.
pub struct Time {
    /// The NTP server.
    pub server: Option<String>,
    /// The clock is synced once it shows this year or later.
    pub min_year: Option<u16>,
    /// How long to wait for the clock.
    pub within: Option<String>,
}

/// A job's `[tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// What the module checks (cellular profiles): 0 nothing, 1 the server against the CA
    /// (server-only TLS: no device certificate or key needed), 2 mutual TLS (the default).
    pub seclevel: Option<u8>,
}

/// A job's `[serial]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSection {
    /// The line rate for the credential transfer: `off`, `auto` or a rate (overrides the
    /// profile's; `--flash-baud` overrides this).
    pub flash_baud: Option<crate::units::FlashBaud>,
}

/// Job settings given as flags; they override the job file.
#[derive(Debug, Clone, Default)]
pub struct JobSettings {
    /// Job file (TOML): credentials, Wi-Fi, MQTT endpoint, smoke topic.
    pub job: Option<PathBuf>,
    /// Server CA certificate (PEM) the module verifies the broker with, e.g. AmazonRootCA1.pem.
    pub ca: Option<PathBuf>,
    /// CA that issued the device certificate (PEM); when given, the certificate must be
    /// signed by it. Not needed for AWS IoT certificates.
    pub device_ca: Option<PathBuf>,
    /// Device certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Device private key (PEM).
    pub key: Option<PathBuf>,
    /// Wi-Fi network name.
    pub wifi_ssid: Option<String>,
    /// Environment variable holding the Wi-Fi password (default ATPROV_WIFI_PASSWORD).
    pub wifi_password_env: Option<String>,
    /// File holding the Wi-Fi password (first line).
    pub wifi_password_file: Option<PathBuf>,
    /// MQTT broker host name (e.g. abc123-ats.iot.eu-west-1.amazonaws.com).
    pub mqtt_host: Option<String>,
    /// MQTT broker port.
    pub mqtt_port: Option<u16>,
    /// MQTT client id (AWS: the thing name); may use {unit_id}, {mac}.
    pub client_id: Option<String>,
    /// ALPN protocol (repeat for several), e.g. x-amzn-mqtt-ca on port 443.
    pub alpn: Vec<String>,
    /// TLS server name indication, when it differs from the host.
    pub sni: Option<String>,
    /// MQTT keepalive in seconds.
    pub keepalive: Option<u16>,
    /// Topic the smoke test publishes to and subscribes to.
    pub smoke_topic: Option<String>,
    /// Any job variable: NAME=VALUE (e.g. --set time.server=ntp.example.com).
    pub sets: Vec<String>,
    /// The line rate for the credential transfer (`--flash-baud`).
    pub flash_baud: Option<crate::units::FlashBaud>,
}

/// A job ready to render: templates per variable, secrets resolved.
#[derive(Debug, Clone)]
pub struct Job {
    /// The credential files.
    pub credentials: CredentialPaths,
    values: BTreeMap<String, JobValue>,
    lists: BTreeMap<String, Vec<String>>,
    aliyun: Option<AliyunSignIn>,
    /// The line rate for the credential transfer, when the job or a flag chose one (else the
    /// profile's).
    pub flash_baud: Option<crate::units::FlashBaud>,
}

/// One job value: a template rendered with what identify captured, or a secret taken as is.
#[derive(Debug, Clone)]
enum JobValue {
    Template(Template),
    Secret(String),
}

/// A job's Aliyun settings, checked, with the secret resolved.
#[derive(Clone)]
struct AliyunSignIn {
    product_key: String,
    device_name: String,
    client_id: String,
    /// The device secret, unless it comes from a registration.
    secret: Option<String>,
    method: crate::cloud::aliyun::Method,
    securemode: u8,
    registration: Option<AliyunRegistration>,
    /// Region for HTTPS auth, when the job signs in over HTTPS first.
    https_auth: Option<String>,
}

#[derive(Clone)]
struct AliyunRegistration {
    product_secret: String,
    secret_file: String,
    region: String,
}

impl std::fmt::Debug for AliyunSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AliyunSignIn {{ product_key: {}, device_name: {}, secret: not shown }}",
            self.product_key, self.device_name
        )
    }
}

impl Job {
    /// Merges profile defaults, the job file and flags. Errors name the file or flag.
    pub fn build(args: &JobSettings, defaults: &BTreeMap<String, String>) -> Result<Job, JobError> {
        let file = match &args.job {
            Some(path) => load_file(path)?,
            None => JobFile::default(),
        };
        let mut t: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                t.insert(k.to_string(), (v, false));
            }
        };
        put("unit_id", Some("{mac|nocolon}".into()));
        put("mqtt.client_id", Some("{unit_id}".into()));
        put("smoke.topic", Some("atprov/{unit_id}/smoke".into()));
        for (k, v) in defaults {
            put(k, Some(v.clone()));
        }
        let f = &file;
        put("unit_id", f.unit_id.clone());
        put("wifi.ssid", f.wifi.ssid.clone());
        put("mqtt.host", f.mqtt.host.clone());
        put("mqtt.port", f.mqtt.port.map(|p| p.to_string()));
        put("mqtt.client_id", f.mqtt.client_id.clone());
        put("mqtt.username", f.mqtt.username.clone());
        put("mqtt.scheme", f.mqtt.scheme.map(|p| p.to_string()));
        put("mqtt.sni", f.mqtt.sni.clone());
        put("mqtt.keepalive", f.mqtt.keepalive.map(|p| p.to_string()));
        put("smoke.topic", f.smoke.topic.clone());
        put("smoke.timeout", f.smoke.timeout.clone());
        put("time.server", f.time.server.clone());
        put("time.min_year", f.time.min_year.map(|p| p.to_string()));
        put("tls.seclevel", f.tls.seclevel.map(|p| p.to_string()));
        put("time.within", f.time.within.clone());
        put("wifi.ssid", args.wifi_ssid.clone());
        put("mqtt.host", args.mqtt_host.clone());
        put("mqtt.port", args.mqtt_port.map(|p| p.to_string()));
        put("mqtt.client_id", args.client_id.clone());
        put("mqtt.sni", args.sni.clone());
        put("mqtt.keepalive", args.keepalive.map(|p| p.to_string()));
        put("smoke.topic", args.smoke_topic.clone());
        // `--set mqtt.alpn=a,b` names the list; the other variables are single values.
        let mut set_alpn = None;
        for s in &args.sets {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| JobError::Set(format!("{s}: write NAME=VALUE")))?;
            let k = k.trim();
            if !(VARIABLES.contains(&k) || defaults.contains_key(k)) || k.ends_with("password") {
                return Err(JobError::Set(format!(
                    "{k}: not a job variable (passwords come from --wifi-password-env/-file or the job file); known: {}",
                    VARIABLES.join(", ")
                )));
            }
            if k == "mqtt.alpn" {
                set_alpn = Some(
                    v.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
                continue;
            }
            put(k, Some(v.to_string()));
        }
        // Secrets: flags, then the job file, then the default environment variable.
        let wifi_password = secret(
            "Wi-Fi password",
            args.wifi_password_env
                .as_deref()
                .or(f.wifi.password_env.as_deref()),
            args.wifi_password_file
                .as_deref()
                .or(f.wifi.password_file.as_deref()),
            f.wifi.password.clone(),
            "ATPROV_WIFI_PASSWORD",
        )?;
        if let Some(p) = wifi_password {
            t.insert("wifi.password".into(), (p, true));
        }
        let mqtt_password = secret(
            "MQTT password",
            f.mqtt.password_env.as_deref(),
            f.mqtt.password_file.as_deref(),
            f.mqtt.password.clone(),
            "ATPROV_MQTT_PASSWORD",
        )?;
        if let Some(p) = mqtt_password {
            t.insert("mqtt.password".into(), (p, true));
        }
        let mut lists = BTreeMap::new();
        let alpn = if !args.alpn.is_empty() {
            args.alpn.clone()
        } else {
            set_alpn.or_else(|| f.mqtt.alpn.clone()).unwrap_or_default()
        };
        lists.insert("mqtt.alpn".to_string(), alpn);
        let mut values = BTreeMap::new();
        for (k, (v, secret)) in t {
            let value = if secret {
                JobValue::Secret(v)
            } else {
                JobValue::Template(Template::parse(&v).map_err(|error| JobError::Value {
                    name: k.clone(),
                    text: v.clone(),
                    error,
                })?)
            };
            values.insert(k, value);
        }
        let credentials = CredentialPaths {
            ca: args.ca.clone().or(file.credentials.ca.clone()),
            cert: args.cert.clone().or(file.credentials.cert.clone()),
            key: args.key.clone().or(file.credentials.key.clone()),
            device_ca: args
                .device_ca
                .clone()
                .or(file.credentials.device_ca.clone()),
        };
        let aliyun = match &file.aliyun {
            None => None,
            Some(a) => Some(aliyun_sign_in(a)?),
        };
        Ok(Job {
            credentials,
            values,
            lists,
            aliyun,
            flash_baud: args.flash_baud.or(file.serial.flash_baud),
        })
    }

    /// Whether the job chose server-only TLS (`tls.seclevel` 0 or 1, a cellular profile's
    /// setting): the module then needs the server CA alone, no device certificate or key
    /// (Aliyun's device-secret sign-in over TLS).
    pub fn server_only_tls(&self) -> bool {
        matches!(
            self.values.get("tls.seclevel"),
            Some(JobValue::Template(t)) if matches!(t.source().trim(), "0" | "1")
        )
    }

    /// The credential paths, or one line saying which is missing.
    pub fn credential_paths(&self) -> Result<(&Path, &Path, &Path), JobError> {
        let c = &self.credentials;
        match (&c.ca, &c.cert, &c.key) {
            (Some(a), Some(b), Some(k)) => Ok((a, b, k)),
            _ => Err(JobError::MissingCredentials(
                [("ca", &c.ca), ("cert", &c.cert), ("key", &c.key)]
                    .iter()
                    // Server-only TLS needs the CA alone.
                    .filter(|(n, p)| p.is_none() && (*n == "ca" || !self.server_only_tls()))
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Renders the job's variables into `vars`, which already holds what identify captured.
    /// `unit_id` comes first so that the others may use it. A value that uses a variable
    /// nobody captured is left unset (the step that needs it says so).
    pub fn apply(&self, vars: &mut Vars) {
        let order = std::iter::once("unit_id").chain(
            self.values
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "unit_id"),
        );
        for k in order {
            self.render_into(k, vars);
        }
        for (k, items) in &self.lists {
            vars.set(k.clone(), Value::list(items.clone()));
        }
        self.refresh_sign_in(vars);
    }

    /// After `changed` was set (the factory's `thing_name`): renders again only the values that
    /// use it, and the cloud sign-in.
    pub fn apply_changed(&self, vars: &mut Vars, changed: &str) {
        let using: Vec<&String> = self
            .values
            .iter()
            .filter(
                |(_, v)| matches!(v, JobValue::Template(t) if t.variables().any(|n| n == changed)),
            )
            .map(|(k, _)| k)
            .collect();
        for k in using {
            self.render_into(k, vars);
        }
        self.refresh_sign_in(vars);
    }

    /// Derives the cloud sign-in again (after a registration kept a new device secret).
    pub fn refresh_sign_in(&self, vars: &mut Vars) {
        if let Some(a) = &self.aliyun {
            apply_aliyun(a, vars);
        }
    }

    fn render_into(&self, k: &str, vars: &mut Vars) {
        match self.values.get(k) {
            None => {}
            Some(JobValue::Secret(v)) => vars.set(k, Value::secret(v.clone())),
            Some(JobValue::Template(t)) => {
                if let Ok(r) = t.render(vars) {
                    vars.set_text(k, r.text);
                }
            }
        }
    }
}

impl Job {
    /// The first job value (after [`Job::apply`] into `vars`) that did not render, as one
    /// line naming the value and the variable it uses that nobody sets.
    pub fn unrendered(&self, vars: &Vars) -> Option<String> {
        self.values.iter().find_map(|(k, v)| {
            let JobValue::Template(t) = v else {
                return None;
            };
            if vars.get(k).is_some() {
                return None;
            }
            let e = t.render(vars).err()?;
            Some(format!("job value {k} = {:?}: {e}", t.source()))
        })
    }
}

/// What a registration request consists of; present exactly while a unit needs registering.
const REGISTRATION: [&str; 5] = [
    "aliyun.register_url",
    "aliyun.register_body",
    "aliyun.register_client_id",
    "aliyun.register_username",
    "aliyun.register_password",
];

/// Which extra sign-in flows a unit needs before MQTT, as [`Job::apply`] left `vars`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignIn {
    /// One type, one secret: register the device first (no device secret yet).
    pub register: bool,
    /// Sign in over HTTPS for an iotId and iotToken.
    pub https_auth: bool,
}

impl SignIn {
    /// What `vars` (after [`Job::apply`]) asks for.
    pub fn of(vars: &Vars) -> SignIn {
        SignIn {
            register: vars.get("aliyun.register_body").is_some(),
            https_auth: vars.get("aliyun.auth_body").is_some(),
        }
    }
}

/// How a user sets a job variable, for "missing" messages.
pub fn how_to_set(name: &str) -> String {
    match name {
        "wifi.ssid" => "--wifi-ssid NAME or [wifi] ssid in the job file".into(),
        "wifi.password" => "--wifi-password-env VAR, --wifi-password-file FILE, [wifi] password_file in the job file, or ATPROV_WIFI_PASSWORD".into(),
        "mqtt.host" => "--mqtt-host HOST or [mqtt] host in the job file".into(),
        "mqtt.password" => "[mqtt] password_env or password_file in the job file, or ATPROV_MQTT_PASSWORD".into(),
        other => format!("--set {other}=VALUE or the job file"),
    }
}

/// Derives the MQTT sign-in from the device secret (given, kept in the secret file, or just
/// registered), or prepares the registration request when there is no secret yet.
fn apply_aliyun(a: &AliyunSignIn, vars: &mut Vars) {
    use crate::cloud::aliyun;
    let render = |t: &str, vars: &Vars| {
        Template::parse(t)
            .ok()
            .and_then(|t| t.render(vars).ok())
            .map(|r| r.text)
    };
    let (Some(dn), Some(cid)) = (render(&a.device_name, vars), render(&a.client_id, vars)) else {
        return;
    };
    let device = aliyun::Device {
        product_key: &a.product_key,
        device_name: &dn,
    };
    let mut secret = vars
        .get("aliyun.device_secret")
        .map(Value::as_text)
        .or_else(|| a.secret.clone());
    if let Some(r) = &a.registration {
        let Some(file) = render(&r.secret_file, vars) else {
            return;
        };
        if secret.is_none() {
            secret = std::fs::read_to_string(&file)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
        }
        vars.set_text("aliyun.secret_file", file);
        if secret.is_some() {
            for k in REGISTRATION {
                vars.remove(k);
            }
        } else {
            let random = format!(
                "{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or_default()
            );
            let req = aliyun::register_https(&device, &r.product_secret, &random, a.method);
            vars.set_text(
                "aliyun.register_url",
                format!(
                    "https://iot-auth.{}.aliyuncs.com/auth/register/device",
                    r.region
                ),
            );
            // The body carries a signature made with the product secret: kept out of logs.
            vars.set("aliyun.register_body", Value::secret(req.body));
            let mqtt =
                aliyun::register_mqtt(&device, &r.product_secret, &random, a.method, false, None);
            vars.set_text("aliyun.register_client_id", mqtt.client_id);
            vars.set_text("aliyun.register_username", mqtt.username);
            vars.set("aliyun.register_password", Value::secret(mqtt.password));
        }
    }
    let Some(secret) = secret else {
        return;
    };
    if let Some(region) = &a.https_auth {
        // §4.4: the same signature as a direct connect, posted as a form; MQTT then uses the
        // plain client id with the returned iotId / iotToken.
        let sign = a.method.sign(
            secret.as_bytes(),
            aliyun::sign_content(&device, &cid, None).as_bytes(),
        );
        let body = format!(
            "productKey={}&sign={sign}&clientId={}&deviceName={}&signmethod={}",
            aliyun::url_encode(&a.product_key),
            aliyun::url_encode(&cid),
            aliyun::url_encode(&dn),
            a.method.name()
        );
        vars.set_text(
            "aliyun.auth_url",
            format!("https://iot-auth.{region}.aliyuncs.com/auth/devicename"),
        );
        vars.set("aliyun.auth_body", Value::secret(body));
        vars.set_text("mqtt.client_id", cid);
        return;
    }
    let s = aliyun::mqtt_direct(&device, &secret, &cid, a.method, None, a.securemode);
    vars.set_text("mqtt.client_id", s.client_id);
    vars.set_text("mqtt.username", s.username);
    vars.set("mqtt.password", Value::secret(s.password));
}

fn aliyun_sign_in(a: &Aliyun) -> Result<AliyunSignIn, JobError> {
    use crate::cloud::aliyun::Method;
    let method = match a.method.as_deref() {
        None => Method::Hmacmd5,
        Some(m) => Method::parse(m).ok_or_else(|| {
            JobError::Aliyun(format!("method `{m}`: use hmacmd5, hmacsha1 or hmacsha256"))
        })?,
    };
    let securemode = a.securemode.unwrap_or(2);
    if !(2..=3).contains(&securemode) {
        return Err(JobError::Aliyun(format!(
            "securemode {securemode}: use 2 (TLS) or 3 (TCP)"
        )));
    }
    for (field, t) in [
        ("device_name", Some(&a.device_name)),
        ("client_id", a.client_id.as_ref()),
    ] {
        if let Some(t) = t {
            Template::parse(t).map_err(|e| JobError::Aliyun(format!("{field} = {t:?}: {e}")))?;
        }
    }
    let device_secret = secret(
        "Aliyun device secret",
        a.device_secret_env.as_deref(),
        a.device_secret_file.as_deref(),
        a.device_secret.clone(),
        "ATPROV_DEVICE_SECRET",
    )?;
    let registration = match a.register.as_deref() {
        None => None,
        Some("https" | "mqtt") => {
            let product_secret = secret(
                "Aliyun product secret",
                a.product_secret_env.as_deref(),
                a.product_secret_file.as_deref(),
                a.product_secret.clone(),
                "ATPROV_PRODUCT_SECRET",
            )?
            .ok_or_else(|| {
                JobError::Aliyun("register needs the product secret: product_secret_env, product_secret_file or ATPROV_PRODUCT_SECRET".to_string())
            })?;
            let secret_file = a
                .secret_file
                .clone()
                .unwrap_or_else(|| DEFAULT_SECRET_FILE.into());
            Template::parse(&secret_file)
                .map_err(|e| JobError::Aliyun(format!("secret_file = {secret_file:?}: {e}")))?;
            Some(AliyunRegistration {
                product_secret,
                secret_file,
                region: a.region.clone().unwrap_or_else(|| "cn-shanghai".into()),
            })
        }
        Some(other) => {
            return Err(JobError::Aliyun(format!(
                "register = {other:?}: use \"https\" or \"mqtt\" (one type, one secret; the profile's [[register]] steps use one of them)"
            )));
        }
    };
    if device_secret.is_none() && registration.is_none() {
        return Err(JobError::Aliyun("the device secret is missing: device_secret_env, device_secret_file or ATPROV_DEVICE_SECRET (or register = \"https\" with the product secret)".into()));
    }
    Ok(AliyunSignIn {
        product_key: a.product_key.clone(),
        device_name: a.device_name.clone(),
        client_id: a.client_id.clone().unwrap_or_else(|| a.device_name.clone()),
        secret: device_secret,
        https_auth: match a.auth.as_deref() {
            None => None,
            Some("https") => Some(a.region.clone().unwrap_or_else(|| "cn-shanghai".into())),
            Some(other) => {
                return Err(JobError::Aliyun(format!(
                    "auth = {other:?}: use \"https\" (iotId/iotToken), or leave it out for a signed MQTT password"
                )));
            }
        },
        registration,
        method,
        securemode,
    })
}

/// Reads a job file. Relative paths in it are relative to the file's folder, so a job works
/// from wherever atprov is started (flags stay relative to the working directory).
fn load_file(path: &Path) -> Result<JobFile, JobError> {
    let origin = format!("job file {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::new(&origin, format!("cannot read it: {e}")))?;
    let mut file: JobFile =
        toml::from_str(&text).map_err(|e| InputError::from_toml(&origin, &text, &e))?;
    let base = path.parent().unwrap_or(Path::new(""));
    let rebase = |p: &mut Option<PathBuf>| {
        if let Some(p) = p.as_mut().filter(|p| p.is_relative()) {
            *p = base.join(&*p);
        }
    };
    let c = &mut file.credentials;
    for p in [&mut c.ca, &mut c.cert, &mut c.key, &mut c.device_ca] {
        rebase(p);
    }
    rebase(&mut file.wifi.password_file);
    rebase(&mut file.mqtt.password_file);
    if let Some(a) = file.aliyun.as_mut() {
        rebase(&mut a.device_secret_file);
        rebase(&mut a.product_secret_file);
        if a.register.is_some() {
            // A template: the folder's own braces are escaped.
            let t = a
                .secret_file
                .get_or_insert_with(|| DEFAULT_SECRET_FILE.into());
            if Path::new(t.as_str()).is_relative() {
                let dir = base
                    .display()
                    .to_string()
                    .replace('{', "{{")
                    .replace('}', "}}");
                *t = Path::new(&dir).join(t.as_str()).display().to_string();
            }
        }
    }
    Ok(file)
}

fn secret(
    what: &str,
    env: Option<&str>,
    file: Option<&Path>,
    inline: Option<String>,
    default_env: &str,
) -> Result<Option<String>, JobError> {
    let fail = |why: String| JobError::Secret {
        what: what.to_string(),
        why,
    };
    if let Some(var) = env {
        return std::env::var(var).map(Some).map_err(|_| {
            fail(format!(
                "environment variable {var} is not set (or not UTF-8)"
            ))
        });
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_string()));
    }
    if inline.is_some() {
        return Ok(inline);
    }
    Ok(std::env::var(default_env).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aliyun_section_derives_the_mqtt_sign_in_after_identify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(
            &path,
            "[aliyun]\nproduct_key = \"k1hipglLdjU\"\ndevice_name = \"{imei}\"\n\
             device_secret = \"fef32adf6dad46c2c7cbf335d3a7b021\"\nsecuremode = 3\n",
        )
        .unwrap();
        let args = JobSettings {
            job: Some(path.clone()),
            ..JobSettings::default()
        };
        let job = Job::build(&args, &BTreeMap::new()).unwrap();
        assert!(!format!("{job:?}").contains("fef32adf"));
        let mut vars = Vars::default();
        vars.set_text("imei", "868488076506128");
        job.apply(&mut vars);
        assert_eq!(
            vars.text("mqtt.client_id"),
            "868488076506128|securemode=3,signmethod=hmacmd5|"
        );
        assert_eq!(vars.text("mqtt.username"), "868488076506128&k1hipglLdjU");
        let password = vars.get("mqtt.password").unwrap();
        assert!(password.secret);
        assert_eq!(password.as_text(), "0f655b12adf519b9a7a2b0a990f398b6");

        std::fs::write(&path, "[aliyun]\nproduct_key = \"pk\"\ndevice_name = \"dn\"\ndevice_secret = \"s\"\nmethod = \"md5\"\n").unwrap();
        let e = Job::build(&args, &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("[aliyun] method `md5`"), "{e}");
    }

    #[test]
    fn the_flash_rate_comes_from_the_flag_else_the_job_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, "[serial]\nflash_baud = \"auto\"\n").unwrap();
        let mut args = JobSettings {
            job: Some(path.clone()),
            ..JobSettings::default()
        };
        let job = Job::build(&args, &BTreeMap::new()).unwrap();
        assert_eq!(job.flash_baud, Some(crate::units::FlashBaud::Auto));
        args.flash_baud = Some(crate::units::FlashBaud::Rate(460_800));
        let job = Job::build(&args, &BTreeMap::new()).unwrap();
        assert_eq!(job.flash_baud, Some(crate::units::FlashBaud::Rate(460_800)));
        std::fs::write(&path, "[serial]\nflash_baud = \"quick\"\n").unwrap();
        let e = Job::build(&args, &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("flash_baud") && e.contains("off, auto"), "{e}");
    }

    #[test]
    fn flags_override_file_and_values_use_captures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(
            &path,
            "unit_id = \"u-{mac|nocolon}\"\n[wifi]\nssid = \"lab\"\npassword = \"pw\"\n[mqtt]\nhost = \"h\"\nclient_id = \"thing-{unit_id}\"\n",
        )
        .unwrap();
        let args = JobSettings {
            job: Some(path.clone()),
            mqtt_host: Some("flag-host".into()),
            ..JobSettings::default()
        };
        let job = Job::build(&args, &BTreeMap::new()).unwrap();
        let mut vars = Vars::default();
        vars.set_text("mac", "24:0a:c4:00:00:01");
        job.apply(&mut vars);
        assert_eq!(vars.text("unit_id"), "u-240ac4000001");
        assert_eq!(vars.text("mqtt.client_id"), "thing-u-240ac4000001");
        assert_eq!(vars.text("mqtt.host"), "flag-host");
        assert!(vars.get("wifi.password").unwrap().secret);
        assert!(vars.public().all(|(k, _)| k != "wifi.password"));

        std::fs::write(&path, "[wifi]\nsid = \"lab\"\n").unwrap();
        let e = Job::build(&args, &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("job.toml:2:1") && e.contains("sid"), "{e}");
        let args = JobSettings {
            sets: vec!["wifi.password=x".into()],
            ..JobSettings::default()
        };
        assert!(
            Job::build(&args, &BTreeMap::new())
                .unwrap_err()
                .to_string()
                .contains("--set")
        );
    }
}
