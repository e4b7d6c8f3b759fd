//! Quectel UFS (reference `cellular.md` §3.4): each credential is a file, deleted first
//! (`AT+QFDEL`, a missing file is fine), uploaded with `AT+QFUPL="UFS:name",size,100`
//! (`CONNECT`, exactly `size` raw bytes, then `+QFUPL: <size>,<xor16>`), and accepted only when
//! the size and the XOR-16 checksum the module reports equal the host's, and `AT+QFLST` lists
//! the file with that size. `+CME ERROR: 407` (the file exists) is answered with a delete and
//! one retry. The module cannot cheaply read a file back, so every flash uploads.

use std::time::Duration;

use super::{Action, Generation, Item, ItemReport, StoreInfo, must};
use crate::at::{Command, Engine};
use crate::error::{Code, Failure};
use crate::pki::Credentials;
use crate::pki::checksum::qfupl_checksum;
use crate::profile::Store;

/// Lists the UFS files.
pub async fn probe(engine: &Engine) -> Result<StoreInfo, Failure> {
    let resp = must(engine, Command::new(r#"AT+QFLST="*""#), "listing UFS files").await?;
    let slots = resp
        .info
        .iter()
        .filter_map(|l| l.strip_prefix("+QFLST: "))
        .filter_map(|l| l.split(',').next())
        .map(|n| n.trim_matches('"').to_string())
        .collect();
    Ok(StoreInfo {
        generation: Generation::Ufs,
        slots,
        sizes: Vec::new(),
    })
}

pub(crate) fn ufs(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("UFS:{name}")
    }
}

/// Uploads and verifies the three files.
pub async fn write(
    engine: &Engine,
    store: &Store,
    creds: &Credentials,
    force: bool,
    on_item: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<ItemReport>, Failure> {
    let items = super::items(store, creds);
    let mut out = Vec::new();
    for (item, name, bytes) in items {
        let file = ufs(name);
        on_item(&file);
        // Already there, byte for byte (size and checksum): nothing to write.
        let same = !force
            && download(engine, &file)
                .await?
                .is_some_and(|d| d.size == bytes.len() && d.checksum == qfupl_checksum(bytes));
        let action = if same {
            Action::Unchanged
        } else {
            upload(engine, &file, bytes, item == Item::Key).await?;
            Action::Written
        };
        out.push(ItemReport {
            item,
            slot: file,
            bytes: bytes.len(),
            action,
        });
    }
    Ok(out)
}

/// A file read back with `AT+QFDWL`.
pub(crate) struct Downloaded {
    /// The size the module reports.
    pub size: usize,
    /// The XOR-16 checksum the module reports.
    pub checksum: u16,
    /// The file's text lines joined with `\n` (PEM files).
    pub text: Vec<u8>,
}

/// Downloads a file (`CONNECT`, its bytes, `+QFDWL: <size>,<checksum>`, `OK`); `None` when it
/// does not exist. Read as a secret response: it may be the key.
pub(crate) async fn download(engine: &Engine, file: &str) -> Result<Option<Downloaded>, Failure> {
    let cmd = Command::new(format!("AT+QFDWL={file:?}"))
        .secret_response()
        .timeout(Duration::from_secs(30));
    let resp = engine.run(cmd).await?;
    if let crate::at::Status::Error { .. } = resp.status {
        return Ok(None);
    }
    if !resp.is_ok() {
        return Err(super::failure(engine, &resp, &format!("reading {file}")).await);
    }
    let mut lines: Vec<&str> = resp
        .info
        .iter()
        .map(String::as_str)
        .skip_while(|l| *l == "CONNECT")
        .collect();
    // The summary line ends the data; a file without a final line end has it glued on.
    let summary = lines.pop().unwrap_or_default();
    let (data_tail, report) = match summary.find("+QFDWL: ") {
        Some(i) => (&summary[..i], &summary[i + "+QFDWL: ".len()..]),
        None => {
            return Err(Failure::new(
                Code::AtError,
                format!("reading {file}: no `+QFDWL: <size>,<checksum>` line"),
            ));
        }
    };
    if !data_tail.is_empty() {
        lines.push(data_tail);
    }
    let (size, sum) = report.split_once(',').unwrap_or((report, ""));
    let (Ok(size), Ok(checksum)) = (
        size.trim().parse::<usize>(),
        u16::from_str_radix(sum.trim(), 16),
    ) else {
        return Err(Failure::new(
            Code::AtError,
            format!("reading {file}: `+QFDWL: {report}` is not <size>,<checksum>"),
        ));
    };
    Ok(Some(Downloaded {
        size,
        checksum,
        text: lines.join("\n").into_bytes(),
    }))
}

/// Deletes the three files and checks `AT+QFLST` no longer lists them.
pub async fn erase(engine: &Engine, names: &[&str]) -> Result<(), Failure> {
    for name in names {
        let file = ufs(name);
        delete(engine, &file).await?;
        let listed = engine
            .run(Command::new(format!("AT+QFLST={file:?}")))
            .await?;
        if listed.info.iter().any(|l| l.starts_with("+QFLST: ")) {
            return Err(Failure::new(
                Code::VerifyMismatch,
                format!("erase {file}: AT+QFLST still lists it after AT+QFDEL"),
            ));
        }
    }
    Ok(())
}

async fn delete(engine: &Engine, file: &str) -> Result<(), Failure> {
    let resp = engine
        .run(Command::new(format!("AT+QFDEL={file:?}")))
        .await?;
    let missing = resp
        .final_line
        .as_deref()
        .is_some_and(|l| l.ends_with(": 405"));
    if resp.is_ok() || missing {
        return Ok(());
    }
    Err(Failure::new(
        crate::error::code_for_status(&resp.status),
        format!("deleting {file}: {}", resp.summary()),
    ))
}

async fn upload(engine: &Engine, file: &str, bytes: &[u8], secret: bool) -> Result<(), Failure> {
    delete(engine, file).await?;
    // 100 s for the module to receive the bytes; the wire at 9600 baud needs ~1 s per KiB.
    let line = format!("AT+QFUPL={file:?},{},100", bytes.len());
    let mut retried = false;
    let resp = loop {
        let mut cmd = Command::new(line.clone())
            .payload(bytes.to_vec())
            .prompt_within(super::PROMPT_WITHIN)
            .timeout(Duration::from_secs(30));
        if secret {
            cmd = cmd.secret_payload();
        }
        let resp = engine.run(cmd).await?;
        let exists = resp
            .final_line
            .as_deref()
            .is_some_and(|l| l.ends_with(": 407"));
        if exists && !retried {
            retried = true;
            delete(engine, file).await?;
            continue;
        }
        if !resp.is_ok() {
            return Err(super::failure(engine, &resp, &format!("uploading {file}")).await);
        }
        break resp;
    };
    let reported = resp
        .info
        .iter()
        .find_map(|l| l.strip_prefix("+QFUPL: "))
        .ok_or_else(|| {
            Failure::new(
                Code::VerifyMismatch,
                format!("uploading {file}: no `+QFUPL: <size>,<checksum>` line; the upload is not verified: run flash again"),
            )
        })?;
    let (size, sum) = reported.split_once(',').unwrap_or((reported, ""));
    let size: usize = size.trim().parse().unwrap_or(usize::MAX);
    let sum = u16::from_str_radix(sum.trim(), 16).ok();
    let host = qfupl_checksum(bytes);
    if size != bytes.len() || sum != Some(host) {
        return Err(Failure::new(
            Code::VerifyMismatch,
            format!(
                "uploading {file}: the module stored {size} bytes with checksum {} but the host sent {} bytes with checksum {host:x}; bytes were lost or changed on the line (flow control?): run flash again",
                sum.map_or("?".into(), |s| format!("{s:x}")),
                bytes.len()
            ),
        ));
    }
    let listed = must(engine, Command::new(format!("AT+QFLST={file:?}")), file).await?;
    let listed_size = listed
        .info
        .iter()
        .find_map(|l| l.strip_prefix("+QFLST: "))
        .and_then(|l| l.rsplit(',').next())
        .and_then(|n| n.trim().parse::<usize>().ok());
    if listed_size != Some(bytes.len()) {
        return Err(Failure::new(
            Code::VerifyMismatch,
            format!(
                "{file}: AT+QFLST lists {} bytes, {} were uploaded: run flash again",
                listed_size.map_or("no file".into(), |n| n.to_string()),
                bytes.len()
            ),
        ));
    }
    Ok(())
}
