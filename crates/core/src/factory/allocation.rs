//! Allocation: which credential a unit gets. The journal decides (the unit's own credential
//! again, else the next free one, else a new one generated from the manufacturer CA); every
//! credential passes its check before it goes out, and one that fails is rejected in the
//! journal and the next taken.

use super::journal::{AllocateError, Allocation, PoolRecord, UnitIdentity};
use super::pool;
use super::station::{Line, Source, journal_failure};
use crate::error::{Code, Failure};
use crate::pki::Credentials;
use crate::profile::Vars;

/// The journal's name for a unit: its IMEI, else its MAC.
pub(super) fn unit_identity(
    found: &std::collections::BTreeMap<String, String>,
) -> Result<UnitIdentity, String> {
    let get = |k: &str| found.get(k).filter(|v| !v.is_empty()).cloned();
    let key = match (get("imei"), get("mac")) {
        (Some(imei), _) => format!("imei:{imei}"),
        (None, Some(mac)) => format!("mac:{}", mac.to_ascii_lowercase()),
        (None, None) => {
            return Err(
                "identify found neither a MAC nor an IMEI; the profile's identify steps must capture {mac} or {imei}".into(),
            );
        }
    };
    Ok(UnitIdentity {
        key,
        unit_id: get("unit_id").unwrap_or_default(),
        mac: get("mac"),
        imei: get("imei"),
        iccid: get("iccid"),
        firmware: get("firmware"),
        chip: get("chip"),
    })
}

/// The unit's credential, checked: the one it holds, else a new one. A credential that fails
/// its check is rejected in the journal and the next is taken. Also returns how long the
/// station waited for the journal's allocations (the figure a shared database is judged by).
pub(super) async fn credential_for(
    line: &Line,
    attempt: i64,
    unit: &UnitIdentity,
) -> Result<(Allocation, Credentials, std::time::Duration), Failure> {
    let mut waited = std::time::Duration::ZERO;
    loop {
        let who = unit.clone();
        let asked = std::time::Instant::now();
        let got = line.journal(move |j| j.allocate(attempt, &who)).await;
        waited += asked.elapsed();
        let allocation = match got {
            Ok(a) => a,
            Err(AllocateError::Journal(e)) => return Err(journal_failure(e)),
            Err(AllocateError::Revoked { thing_name }) => {
                return Err(Failure::new(
                    Code::Credentials,
                    format!(
                        "this unit holds credential {thing_name}, which was revoked: it is not written again; take the unit off the line (atprov factory pool status)"
                    ),
                ));
            }
            Err(AllocateError::Exhausted { assigned, rejected }) => match &line.source {
                Source::Manifest => {
                    return Err(Failure::new(
                        Code::Credentials,
                        format!(
                            "credential pool exhausted ({assigned} assigned, {rejected} rejected): add credentials to the manifest and restart; nothing was written to this unit"
                        ),
                    ));
                }
                Source::Generate {
                    ca_cert_pem,
                    ca_key_pem,
                    dir,
                    thing_name,
                    days,
                } => {
                    let mut vars = Vars::default();
                    vars.set_text("unit_id", unit.unit_id.clone());
                    vars.set_text("mac", unit.mac.clone().unwrap_or_default());
                    vars.set_text("imei", unit.imei.clone().unwrap_or_default());
                    let name = thing_name
                        .render(&vars)
                        .map_err(|e| Failure::usage(format!("pool.generate.thing_name: {e}")))?
                        .text;
                    let record: PoolRecord =
                        pool::generate(ca_cert_pem, ca_key_pem, dir, &name, *days).map_err(
                            |e| {
                                Failure::new(
                                    Code::Credentials,
                                    format!("generating a certificate: {e}"),
                                )
                            },
                        )?;
                    let who = unit.clone();
                    line.journal(move |j| j.add_assigned(attempt, &who, &record))
                        .await
                        .map_err(journal_failure)?
                }
            },
        };
        // A file that cannot be read says nothing against the credential: the station stops
        // with one line and the credential stays the unit's, to be fixed and retried.
        for path in [&allocation.record.cert, &allocation.record.key] {
            if let Err(e) = std::fs::metadata(path) {
                let mut f = Failure::unreadable(path.display(), &e);
                f.message += &format!(
                    " (credential {} of the pool; not rejected: fix the file or its path, then run again)",
                    allocation.record.thing_name
                );
                return Err(f);
            }
        }
        match pool::load_credentials(
            &allocation.record,
            &line.ca,
            line.device_ca.as_ref(),
            line.target,
        ) {
            Ok(creds) => return Ok((allocation, creds, waited)),
            Err(problem) => {
                let reason = format!("pki check: {problem}");
                tracing::warn!(
                    "credential {} rejected: {reason}",
                    allocation.record.thing_name
                );
                let id = allocation.credential;
                line.journal(move |j| j.reject(id, &reason))
                    .await
                    .map_err(journal_failure)?;
            }
        }
    }
}
