//! Everything checked on the host before a module is touched: the credentials against the
//! family's limits and their trust roles, the whole job against the profile (every variable a
//! step will need, every duration), and, once identify ran, what the module reported against
//! its grammar before it names a file.

use super::job::Job;
use super::{Goal, Stage};
use crate::error::{Code, Failure};
use crate::pki::Credentials;
use crate::profile::{Profile, TemplateError, Value};

/// Checks the whole job against the profile before any byte goes to a module: every variable
/// the goal's steps use is set (or captured on the way), every duration parses, every job value
/// renders. It renders the flows with placeholders for what the module will report; `preset`
/// names variables the caller sets at run time (the factory's `thing_name`).
pub fn job(job: &Job, profile: &Profile, goal: Goal, preset: &[&str]) -> Result<(), Failure> {
    use crate::profile::{Action, Step, Vars};
    let flows_of = |stage: Stage, vars: &Vars| -> Vec<(&'static str, &[Step])> {
        match stage {
            Stage::Init => vec![("init", profile.init.as_slice())],
            Stage::Identify => vec![("identify", profile.identify.as_slice())],
            Stage::Flash => vec![],
            Stage::Register => {
                let mut v = Vec::new();
                if crate::provision::job::SignIn::of(vars).register {
                    v.push(("register", profile.register.as_slice()));
                }
                if crate::provision::job::SignIn::of(vars).https_auth {
                    v.push(("auth", profile.auth.as_slice()));
                }
                v
            }
            Stage::Connect => vec![("connect", profile.connect.as_slice())],
            Stage::Smoke => vec![("smoke", profile.smoke.as_slice())],
            Stage::Cleanup => vec![("cleanup", profile.cleanup.as_slice())],
        }
    };
    // What the module will report, and what atprov sets as it goes, as placeholders.
    let mut vars = Vars::default();
    let all = [
        &profile.init,
        &profile.identify,
        &profile.register,
        &profile.auth,
        &profile.connect,
        &profile.smoke,
        &profile.cleanup,
    ];
    let mut later: Vec<String> = preset.iter().map(|s| s.to_string()).collect();
    later.extend(["store", "smoke.payload"].map(String::from));
    for step in all.into_iter().flatten() {
        later.extend(
            step.capture
                .iter()
                .flat_map(|p| p.names().map(str::to_string)),
        );
        later.extend(step.record_ms.clone());
    }
    for name in &later {
        let placeholder = match name.as_str() {
            "mac" => "24:0a:c4:00:00:00",
            "imei" => "000000000000000",
            "iccid" => "00000000000000000000",
            "year" => "2026",
            "store" => "mfg_nvs",
            _ => "0",
        };
        vars.set_text(name.clone(), placeholder);
    }
    job.apply(&mut vars);
    if let Some(line) = job.unrendered(&vars) {
        return Err(Failure::usage(format!(
            "{line}; nothing was written to the module"
        )));
    }
    for &stage in goal.stages() {
        for (flow, steps) in flows_of(stage, &vars) {
            for step in steps {
                let at = |e: TemplateError| {
                    let said = match e {
                        TemplateError::Unset(name) => format!(
                            "needs `{name}`, which the job does not set: give {}",
                            crate::provision::job::how_to_set(&name)
                        ),
                        other => other.to_string(),
                    };
                    Failure::usage(format!(
                        "[[{flow}]] step `{}` of profile {}: {said}; nothing was written to the module",
                        step.name, profile.name
                    ))
                };
                if let Some(cond) = &step.when
                    && !cond.eval(&vars).map_err(at)?
                {
                    continue;
                }
                let mut templates = Vec::new();
                match &step.action {
                    Action::Send { line, payload } => {
                        templates.push(line);
                        templates.extend(payload);
                    }
                    Action::WaitUrc { prefix, payload } => {
                        templates.push(prefix);
                        templates.extend(payload);
                    }
                }
                templates.extend(&step.expect);
                for t in templates {
                    t.render(&vars).map_err(at)?;
                }
                let durations = step
                    .timeout
                    .iter()
                    .chain(step.poll.as_ref().and_then(|p| p.within.as_ref()));
                for d in durations {
                    d.resolve(&vars).map_err(|e| match e {
                        TemplateError::Value(v) => at(TemplateError::Syntax(format!(
                            "duration {}: {v}",
                            d.0.source()
                        ))),
                        other => at(other),
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Checks credentials on the host, before any module is touched, against the limits of the
/// profile's module family (a Luat module takes RSA keys only) and, when the job names one, the
/// CA that issued the device certificate.
pub fn credentials(job: &Job, profile: &Profile) -> Result<Credentials, Failure> {
    credentials_for(job, Some(crate::pki::check::Target::of(profile.family)))
}

/// The credentials' checks that hold for every module family: what can be refused before
/// the module is even asked which family it is.
pub fn credentials_for_any_family(job: &Job) -> Result<Credentials, Failure> {
    credentials_for(job, None)
}

fn credentials_for(
    job: &Job,
    target: Option<crate::pki::check::Target>,
) -> Result<Credentials, Failure> {
    // Server-only TLS (Aliyun's device secret over TLS): the CA alone, when the job gives no
    // device certificate and key.
    let c = &job.credentials;
    if job.server_only_tls()
        && c.cert.is_none()
        && c.key.is_none()
        && let Some(ca) = c.ca.as_deref()
    {
        if let Err(e) = std::fs::metadata(ca) {
            let mut f = Failure::unreadable(ca.display(), &e);
            f.message += " (the job's credentials.ca; nothing was written to the module)";
            return Err(f);
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        return crate::pki::check::check_server_ca(ca, target, now).map_err(problems_failure);
    }
    let (ca, cert, key) = job.credential_paths()?;
    let device_ca_path = job.credentials.device_ca.as_deref();
    for (role, path) in [("ca", Some(ca)), ("cert", Some(cert)), ("key", Some(key))]
        .into_iter()
        .chain([("device_ca", device_ca_path)])
    {
        if let Some(path) = path
            && let Err(e) = std::fs::metadata(path)
        {
            let mut f = Failure::unreadable(path.display(), &e);
            f.message +=
                &format!(" (the job's credentials.{role}; nothing was written to the module)");
            return Err(f);
        }
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let device_ca = job.credentials.device_ca.as_deref();
    crate::pki::check::check(ca, cert, key, device_ca, target, now).map_err(problems_failure)
}

/// The first problem of a credential check, as the one line of an exit 10.
fn problems_failure(crate::pki::check::Problems(problems): crate::pki::check::Problems) -> Failure {
    Failure::new(
        Code::Credentials,
        format!(
            "{}{}; nothing was written to the module",
            problems[0],
            if problems.len() > 1 {
                format!(
                    " (and {} more problems: run atprov pki check)",
                    problems.len() - 1
                )
            } else {
                String::new()
            }
        ),
    )
}

/// Checks what identify captured against its grammar before any of it names a file, a topic
/// or a journal row: a module (or a garbled line) reporting `../../x` as its IMEI must not
/// make atprov write outside the intended folder.
pub(crate) fn identity(vars: &crate::profile::Vars) -> Result<(), Failure> {
    let bad = |what: &str, value: &str, grammar: &str| {
        Failure::new(
            Code::AtError,
            format!(
                "identify: the module reported {what} `{}`, which is not {grammar}; check the firmware and the baud rate (nothing was written)",
                value.escape_debug()
            ),
        )
    };
    if let Some(mac) = vars.get("mac").map(Value::as_text) {
        let hex: String = mac.chars().filter(|c| *c != ':' && *c != '-').collect();
        let separators_ok = mac.len() == 12 || mac.len() == 17;
        if hex.len() != 12 || !separators_ok || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("MAC address", &mac, "12 hexadecimal digits"));
        }
    }
    if let Some(imei) = vars.get("imei").map(Value::as_text)
        && (imei.len() != 15 || !imei.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("IMEI", &imei, "15 digits"));
    }
    if let Some(iccid) = vars.get("iccid").map(Value::as_text) {
        let ok = (18..=22).contains(&iccid.len())
            && iccid
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'F' || b == b'f');
        if !ok {
            return Err(bad("ICCID", &iccid, "18 to 22 digits"));
        }
    }
    if let Some(unit) = vars.get("unit_id").map(Value::as_text) {
        crate::files::safe_component(&unit).map_err(|e| {
            Failure::new(
                Code::AtError,
                format!("identify: the unit id {e}; check the job's unit_id template and what the module reported"),
            )
        })?;
    }
    Ok(())
}
