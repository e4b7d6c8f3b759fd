//! Luat file system (reference `cellular.md` §2.4): each credential is a file, deleted first
//! (`AT+FSDEL`; `ERROR` when it did not exist is fine), created (`AT+FSCREATE`), written with
//! `AT+FSWRITE="name",<0 from start|1 append>,<len>,<timeout s>` (a bare `>` prompt, at most
//! 10,240 bytes a call, `TimeOut` when fewer bytes arrive), and accepted only when
//! `AT+FSFLSIZE` reports the size written. Luat offers no checksum.

use super::{Action, Item, ItemReport, must};
use crate::at::{Command, Engine};
use crate::error::{Code, Failure};
use crate::pki::Credentials;
use crate::profile::Store;

/// The most `AT+FSWRITE` takes in one call.
pub const MAX_WRITE: usize = 10_240;

/// Deletes the three files and checks `AT+FSFLSIZE` no longer finds them.
pub async fn erase(engine: &Engine, names: &[&str]) -> Result<(), Failure> {
    for name in names {
        // A missing file answers ERROR: the size query below is what counts.
        engine
            .run(Command::new(format!("AT+FSDEL={name:?}")))
            .await?;
        let size = engine
            .run(Command::new(format!("AT+FSFLSIZE={name:?}")))
            .await?;
        if size.is_ok() {
            return Err(Failure::new(
                Code::VerifyMismatch,
                format!("erase {name}: AT+FSFLSIZE still finds it after AT+FSDEL"),
            ));
        }
    }
    Ok(())
}

/// Writes and checks the three files.
pub async fn write(
    engine: &Engine,
    store: &Store,
    creds: &Credentials,
    force: bool,
    on_item: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<ItemReport>, Failure> {
    let items = super::items(store, creds);
    let chunk = store.chunk.clamp(1, MAX_WRITE);
    let mut out = Vec::new();
    for (item, name, bytes) in items {
        on_item(name);
        // Already there: the same size and the same lines read back (Luat has no checksum).
        if !force
            && read(engine, name).await?.is_some_and(|(size, text)| {
                size == bytes.len() && super::text_lines(&text) == super::text_lines(bytes)
            })
        {
            out.push(ItemReport {
                item,
                slot: name.to_string(),
                bytes: bytes.len(),
                action: Action::Unchanged,
            });
            continue;
        }
        // A missing file answers ERROR: nothing to delete.
        engine
            .run(Command::new(format!("AT+FSDEL={name:?}")))
            .await?;
        must(engine, Command::new(format!("AT+FSCREATE={name:?}")), name).await?;
        for (i, part) in bytes.chunks(chunk).enumerate() {
            let mode = u8::from(i > 0);
            let mut cmd = Command::new(format!("AT+FSWRITE={name:?},{mode},{},15", part.len()))
                .payload(part.to_vec())
                .prompt_within(super::PROMPT_WITHIN);
            if item == Item::Key {
                cmd = cmd.secret_payload();
            }
            must(engine, cmd, name).await?;
        }
        let size = must(engine, Command::new(format!("AT+FSFLSIZE={name:?}")), name).await?;
        let stored = size
            .value("+FSFLSIZE:")
            .and_then(|v| v.trim().parse::<usize>().ok());
        if stored != Some(bytes.len()) {
            return Err(Failure::new(
                Code::VerifyMismatch,
                format!(
                    "{name}: AT+FSFLSIZE reports {} bytes, {} were written: bytes were lost on the line: run flash again",
                    stored.map_or("no size".into(), |n| n.to_string()),
                    bytes.len()
                ),
            ));
        }
        out.push(ItemReport {
            item,
            slot: name.to_string(),
            bytes: bytes.len(),
            action: Action::Written,
        });
    }
    Ok(out)
}

/// Reads a file back: `AT+FSFLSIZE`, then `AT+FSREAD` of that many bytes, as text lines
/// (a secret response: it may be the key): the size the module reports and the lines joined
/// with `\n`. `None` when the file does not exist.
pub(crate) async fn read(engine: &Engine, name: &str) -> Result<Option<(usize, Vec<u8>)>, Failure> {
    let size = engine
        .run(Command::new(format!("AT+FSFLSIZE={name:?}")))
        .await?;
    if !size.is_ok() {
        return Ok(None);
    }
    let Some(len) = size
        .value("+FSFLSIZE:")
        .and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return Ok(None);
    };
    let mut lines = Vec::new();
    let mut from = 0;
    while from < len {
        let n = (len - from).min(MAX_WRITE);
        let cmd = Command::new(format!("AT+FSREAD={name:?},{from},{n},0")).secret_response();
        let resp = must(engine, cmd, name).await?;
        lines.extend(resp.info);
        from += n;
    }
    Ok(Some((len, lines.join("\n").into_bytes())))
}
