//! The ESP-AT credential store (reference esp-at.md §1, §2, §4, §5). Two generations:
//!
//! - ESP-AT 3.1+: `mfg_nvs`, raw PEM as type-8 blobs, namespace and key both the slot name:
//!   `AT+SYSMFG=2,"mqtt_ca","mqtt_ca",8,<len>`, `OK` then `>`, the bytes, `OK`; read back with
//!   `AT+SYSMFG=1,"mqtt_ca","mqtt_ca"` (a counted payload).
//! - ESP-AT 2.x: raw partitions holding one AtPKI bin each: size checked against
//!   `AT+SYSFLASH?`, erased, written with `AT+SYSFLASH=1` in chunks (a bare `>`), read back with
//!   `AT+SYSFLASH=2`.
//!
//! The generation is probed (`AT+SYSMFG?`, then `AT+SYSFLASH?`), never guessed from versions.

use std::time::Duration;

use super::{Action, Generation, Item, ItemReport, PROMPT_WITHIN, StoreInfo, mismatch, must};
use crate::at::{Command, Engine};
use crate::error::{Code, Failure};
use crate::pki::Credentials;
use crate::pki::atpki::{self, ItemType};
use crate::profile::Store;

/// Finds out the store generation: `AT+SYSMFG?`, else `AT+SYSFLASH?` and its partitions.
pub async fn probe(engine: &Engine, store: &Store) -> Result<StoreInfo, Failure> {
    let resp = engine.run(Command::new("AT+SYSMFG?")).await?;
    // Only an answer says the firmware lacks SYSMFG; a restart or silence says nothing.
    if matches!(
        resp.status,
        crate::at::Status::Reset | crate::at::Status::Timeout { .. }
    ) {
        return Err(super::failure(engine, &resp, "identify the store").await);
    }
    if resp.is_ok() {
        let slots = resp
            .info
            .iter()
            .filter_map(|l| l.strip_prefix("+SYSMFG:"))
            .map(|s| s.trim_matches('"').to_string())
            .collect();
        return Ok(StoreInfo {
            generation: Generation::MfgNvs,
            slots,
            sizes: Vec::new(),
        });
    }
    let resp = must(engine, Command::new("AT+SYSFLASH?"), "list partitions").await?;
    let sizes: Vec<(String, usize)> = resp
        .info
        .iter()
        .filter_map(|l| l.strip_prefix("+SYSFLASH:"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let size = f.get(4)?.trim();
            let size = usize::from_str_radix(size.trim_start_matches("0x"), 16).ok()?;
            Some((f.first()?.trim_matches('"').to_string(), size))
        })
        .collect();
    let missing: Vec<&str> = [&store.ca, &store.cert, &store.key]
        .into_iter()
        .filter(|s| !sizes.iter().any(|(n, _)| n == *s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Failure::new(
            Code::AtError,
            format!(
                "this firmware has no AT+SYSMFG and no partition {} (AT+SYSFLASH? lists {}): it cannot store MQTT certificates; flash an ESP-AT build with MQTT (2.2+)",
                missing.join(", "),
                sizes
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(StoreInfo {
        generation: Generation::Partitions,
        slots: sizes.iter().map(|(n, _)| n.clone()).collect(),
        sizes,
    })
}

/// Writes the three credentials (unless identical and not forced) and verifies them.
pub async fn write(
    engine: &Engine,
    store: &Store,
    info: &StoreInfo,
    creds: &Credentials,
    force: bool,
    on_item: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<ItemReport>, Failure> {
    let items = super::items(store, creds)
        .into_iter()
        .map(|(item, slot, bytes)| {
            let kind = match item {
                Item::Ca => ItemType::Ca,
                Item::Cert => ItemType::Cert,
                Item::Key => ItemType::Key,
            };
            (item, slot, bytes, kind)
        });
    let legacy = info.generation == Generation::Partitions;
    // Legacy: every bin must fit before anything is touched.
    let mut contents = Vec::new();
    for (item, slot, bytes, kind) in items {
        let content = if legacy {
            let bin = atpki::encode(&[(kind, slot.to_string(), bytes.to_vec())])
                .map_err(|e| Failure::new(Code::Credentials, format!("{slot}: {e}")))?;
            let size = info
                .sizes
                .iter()
                .find(|(n, _)| n == slot)
                .map_or(0, |(_, s)| *s);
            if bin.len() > size {
                return Err(Failure::new(
                    Code::Credentials,
                    format!(
                        "the {item} takes {} bytes as a PKI bin, over the {size} of partition {slot}: use a smaller file (e.g. Amazon Root CA 1 alone, an EC key); nothing was written",
                        bin.len()
                    ),
                ));
            }
            bin
        } else {
            bytes.to_vec()
        };
        contents.push((item, slot, content, item == Item::Key));
    }
    let mut reports = Vec::new();
    for (item, slot, content, secret) in contents {
        on_item(slot);
        let action = if legacy {
            write_partition(engine, slot, &content, secret, store.chunk, force).await?
        } else {
            write_nvs(engine, slot, &content, secret, force).await?
        };
        reports.push(ItemReport {
            item,
            slot: slot.to_string(),
            bytes: content.len(),
            action,
        });
    }
    Ok(reports)
}

/// Erases each slot (the NVS key, or the whole partition) and checks it reads back empty
/// (no key; a partition of 0xFF).
pub async fn erase(engine: &Engine, info: &StoreInfo, slots: &[&str]) -> Result<(), Failure> {
    for slot in slots {
        if info.generation == Generation::Partitions {
            let cmd =
                Command::new(format!("AT+SYSFLASH=0,\"{slot}\"")).timeout(Duration::from_secs(10));
            must(engine, cmd, &format!("erase {slot}")).await?;
            let size = info
                .sizes
                .iter()
                .find(|(n, _)| n == slot)
                .map_or(0, |(_, s)| *s);
            let back = read_partition(engine, slot, size, true, 4096).await?;
            if let Some(at) = back.iter().position(|&b| b != 0xFF) {
                return Err(Failure::new(
                    Code::VerifyMismatch,
                    format!(
                        "erase {slot}: byte {at} still reads {:#04x} after the erase",
                        back[at]
                    ),
                ));
            }
        } else {
            let cmd = Command::new(format!("AT+SYSMFG=0,\"{slot}\",\"{slot}\""));
            let resp = engine.run(cmd).await?;
            // Erasing a key that is not there answers ERROR: what matters is the read-back.
            if !resp.is_ok() && !matches!(resp.status, crate::at::Status::Error { .. }) {
                return Err(Failure::new(
                    crate::error::code_for_status(&resp.status),
                    format!("erase {slot}: {}", resp.summary()),
                ));
            }
            if let Some(left) = read_nvs(engine, slot, true).await? {
                return Err(Failure::new(
                    Code::VerifyMismatch,
                    format!(
                        "erase {slot}: {} bytes still read back after the erase",
                        left.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What a slot holds: the NVS blob, or the first item of the partition's AtPKI bin; `None`
/// when it is empty (an absent key, an erased partition).
pub(crate) async fn read(
    engine: &Engine,
    store: &Store,
    info: &StoreInfo,
    slot: &str,
    secret: bool,
) -> Result<Option<Vec<u8>>, Failure> {
    if info.generation != Generation::Partitions {
        return read_nvs(engine, slot, secret).await;
    }
    let chunk = store.chunk.max(1);
    let header = read_partition(engine, slot, 8, false, chunk).await?;
    if header[..2] != atpki::MAGIC {
        return Ok(None);
    }
    let body = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let size = info
        .sizes
        .iter()
        .find(|(n, _)| n == slot)
        .map_or(usize::MAX, |(_, s)| *s);
    if 8 + body > size {
        return Err(Failure::new(
            Code::VerifyMismatch,
            format!(
                "read {slot}: its PKI bin header announces {body} bytes, more than the partition holds"
            ),
        ));
    }
    let bin = read_partition(engine, slot, 8 + body, secret, chunk).await?;
    let items = atpki::decode(&bin)
        .map_err(|e| Failure::new(Code::VerifyMismatch, format!("read {slot}: {e}")))?;
    Ok(items.into_iter().next().map(|i| i.content))
}

async fn read_nvs(engine: &Engine, slot: &str, secret: bool) -> Result<Option<Vec<u8>>, Failure> {
    let mut cmd = Command::new(format!("AT+SYSMFG=1,\"{slot}\",\"{slot}\""));
    if secret {
        cmd = cmd.secret_response();
    }
    let resp = engine.run(cmd).await?;
    match resp.status {
        crate::at::Status::Ok => Ok(resp.payloads.into_iter().next().map(|p| p.data)),
        // Absent key: ERROR.
        crate::at::Status::Error { .. } => Ok(None),
        _ => Err(Failure::new(
            crate::error::code_for_status(&resp.status),
            format!("read {slot}: {}", resp.summary()),
        )),
    }
}

async fn write_nvs(
    engine: &Engine,
    slot: &str,
    content: &[u8],
    secret: bool,
    force: bool,
) -> Result<Action, Failure> {
    if !force && read_nvs(engine, slot, secret).await?.as_deref() == Some(content) {
        return Ok(Action::Unchanged);
    }
    let mut cmd = Command::new(format!(
        "AT+SYSMFG=2,\"{slot}\",\"{slot}\",8,{}",
        content.len()
    ))
    .payload(content.to_vec())
    .prompt_within(PROMPT_WITHIN)
    .timeout(Duration::from_secs(10));
    if secret {
        cmd = cmd.secret_payload();
    }
    must(engine, cmd, &format!("write {slot}")).await?;
    let back = read_nvs(engine, slot, secret).await?.unwrap_or_default();
    if back != content {
        return Err(mismatch(slot, content, &back));
    }
    Ok(Action::Written)
}

async fn read_partition(
    engine: &Engine,
    slot: &str,
    len: usize,
    secret: bool,
    chunk: usize,
) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = chunk.min(len - out.len());
        let mut cmd = Command::new(format!("AT+SYSFLASH=2,\"{slot}\",{},{n}", out.len()));
        if secret {
            cmd = cmd.secret_response();
        }
        let resp = must(engine, cmd, &format!("read {slot}")).await?;
        let data = resp.payloads.into_iter().next().map(|p| p.data);
        match data {
            Some(d) if d.len() == n => out.extend_from_slice(&d),
            _ => {
                return Err(Failure::new(
                    Code::VerifyMismatch,
                    format!("read {slot}: the module did not return the {n} bytes asked for"),
                ));
            }
        }
    }
    Ok(out)
}

async fn write_partition(
    engine: &Engine,
    slot: &str,
    bin: &[u8],
    secret: bool,
    chunk: usize,
    force: bool,
) -> Result<Action, Failure> {
    let chunk = chunk.clamp(4, 4096);
    if !force && read_partition(engine, slot, bin.len(), secret, chunk).await? == bin {
        return Ok(Action::Unchanged);
    }
    // NOR flash: erase first, the firmware does not.
    let erase = Command::new(format!("AT+SYSFLASH=0,\"{slot}\"")).timeout(Duration::from_secs(10));
    must(engine, erase, &format!("erase {slot}")).await?;
    for (i, part) in bin.chunks(chunk).enumerate() {
        let mut cmd = Command::new(format!(
            "AT+SYSFLASH=1,\"{slot}\",{},{}",
            i * chunk,
            part.len()
        ))
        .payload(part.to_vec())
        .prompt_within(PROMPT_WITHIN)
        .timeout(Duration::from_secs(10));
        if secret {
            cmd = cmd.secret_payload();
        }
        must(engine, cmd, &format!("write {slot}")).await?;
    }
    let back = read_partition(engine, slot, bin.len(), secret, chunk).await?;
    if back != bin {
        return Err(mismatch(slot, bin, &back));
    }
    Ok(Action::Written)
}
