//! Credential stores: where a module keeps its CA, certificate and key, and the Rust logic that
//! a profile names to write them (`[store] kind`). Every store reads back what it wrote and
//! compares it byte for byte; content already identical is not rewritten unless forced.

pub mod esp_at;
pub mod luat;
pub mod quectel;

use crate::at::{Command, Engine, Response};
use crate::error::{Code, Failure};
use crate::pki::Credentials;
use crate::profile::{Store, StoreKind};

/// Which kind of store a module has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Generation {
    /// ESP-AT 3.1+: PEM blobs in the `mfg_nvs` partition.
    #[serde(rename = "mfg_nvs")]
    MfgNvs,
    /// ESP-AT 2.x: one AtPKI bin per raw partition.
    #[serde(rename = "partitions")]
    Partitions,
    /// Quectel: files in UFS.
    #[serde(rename = "ufs")]
    Ufs,
    /// Luat: files in the module's file system.
    #[serde(rename = "fs")]
    Fs,
}

impl Generation {
    /// How reports and profiles name it (`{store}`).
    pub fn name(self) -> &'static str {
        match self {
            Generation::MfgNvs => "mfg_nvs",
            Generation::Partitions => "partitions",
            Generation::Ufs => "ufs",
            Generation::Fs => "fs",
        }
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One of the three credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Item {
    /// The server CA the module verifies the broker with.
    Ca,
    /// The device certificate.
    Cert,
    /// The device's private key (a secret: never shown).
    Key,
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Item::Ca => "ca",
            Item::Cert => "cert",
            Item::Key => "key",
        })
    }
}

/// What a write did to one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Written and read back (or checksummed) equal.
    Written,
    /// Already there, byte for byte: left alone.
    Unchanged,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Written => "written",
            Action::Unchanged => "unchanged",
        })
    }
}

/// What a probe found out about the module's store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreInfo {
    /// Which kind of store.
    pub generation: Generation,
    /// Namespaces or partitions the module lists.
    pub slots: Vec<String>,
    /// Partition sizes (legacy), by name.
    #[serde(skip)]
    pub sizes: Vec<(String, usize)>,
}

/// What happened to one credential.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemReport {
    /// Which credential.
    pub item: Item,
    /// Where it went (namespace/key or partition).
    pub slot: String,
    /// Bytes stored (the AtPKI bin for legacy partitions).
    pub bytes: usize,
    /// What was done.
    pub action: Action,
}

/// Finds out which store the module has.
pub async fn probe(engine: &Engine, store: &Store) -> Result<StoreInfo, Failure> {
    match store.kind {
        StoreKind::EspAt => esp_at::probe(engine, store).await,
        StoreKind::QuectelUfs => quectel::probe(engine).await,
        StoreKind::LuatFs => Ok(StoreInfo {
            generation: Generation::Fs,
            slots: Vec::new(),
            sizes: Vec::new(),
        }),
    }
}

/// Writes the credentials (skipping identical ones unless `force`) and verifies them.
pub async fn write(
    engine: &Engine,
    store: &Store,
    info: &StoreInfo,
    creds: &Credentials,
    force: bool,
    on_item: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<ItemReport>, Failure> {
    match store.kind {
        StoreKind::EspAt => esp_at::write(engine, store, info, creds, force, on_item).await,
        StoreKind::QuectelUfs => quectel::write(engine, store, creds, force, on_item).await,
        StoreKind::LuatFs => luat::write(engine, store, creds, force, on_item).await,
    }
}

/// What one slot holds, read back from the module.
#[derive(Debug, Clone)]
pub struct Held {
    /// Which credential the slot is for.
    pub item: Item,
    /// The slot (namespace/key, partition or file).
    pub slot: String,
    /// Its content; `None` when the slot is empty. For a file read back as text lines (Luat,
    /// Quectel) the lines joined with `\n`.
    pub content: Option<Vec<u8>>,
}

/// Reads back what the three slots hold, for `creds list`. The key travels as a secret
/// response (traces show its length only).
pub async fn read(engine: &Engine, store: &Store, info: &StoreInfo) -> Result<Vec<Held>, Failure> {
    let mut out = Vec::new();
    for (item, slot) in [
        (Item::Ca, &store.ca),
        (Item::Cert, &store.cert),
        (Item::Key, &store.key),
    ] {
        let secret = item == Item::Key;
        let (slot, content) = match store.kind {
            StoreKind::EspAt => (
                slot.clone(),
                esp_at::read(engine, store, info, slot, secret).await?,
            ),
            StoreKind::QuectelUfs => {
                let file = quectel::ufs(slot);
                let held = quectel::download(engine, &file).await?.map(|d| d.text);
                (file, held)
            }
            StoreKind::LuatFs => (
                slot.clone(),
                luat::read(engine, slot).await?.map(|(_, text)| text),
            ),
        };
        out.push(Held {
            item,
            slot,
            content,
        });
    }
    Ok(out)
}

/// The lines of a text file as a module shows them (empty lines dropped, line ends removed):
/// what a read-back of a PEM file can be compared with.
pub(crate) fn text_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split('\n')
        .map(|l| l.trim_end_matches(['\r', ' ', '\t']).to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Erases the three credentials and reads back that they are gone: what a unit must pass
/// before its credential may go to another unit, and what `creds erase` does.
pub async fn erase(engine: &Engine, store: &Store, info: &StoreInfo) -> Result<(), Failure> {
    let slots = [store.ca.as_str(), store.cert.as_str(), store.key.as_str()];
    match store.kind {
        StoreKind::EspAt => esp_at::erase(engine, info, &slots).await,
        StoreKind::QuectelUfs => quectel::erase(engine, &slots).await,
        StoreKind::LuatFs => luat::erase(engine, &slots).await,
    }
}

/// The credentials to write, with their item names and the slots the profile gives them.
/// Server-only TLS has no device certificate or key: those are left out.
pub(crate) fn items<'a>(
    store: &'a Store,
    creds: &'a Credentials,
) -> Vec<(Item, &'a str, &'a [u8])> {
    [
        (Item::Ca, store.ca.as_str(), creds.ca.as_slice()),
        (Item::Cert, store.cert.as_str(), creds.cert.as_slice()),
        (Item::Key, store.key.as_str(), creds.key()),
    ]
    .into_iter()
    .filter(|(item, _, bytes)| *item == Item::Ca || !bytes.is_empty())
    .collect()
}

/// Time for a write's prompt (`>`, `CONNECT`): modules answer at once, so a lost prompt is
/// noticed quickly even where the data itself may take long.
pub(crate) const PROMPT_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs a store command; anything but OK is a failure naming the slot.
pub(crate) async fn must(engine: &Engine, cmd: Command, what: &str) -> Result<Response, Failure> {
    let resp = engine.run(cmd).await?;
    if resp.is_ok() {
        return Ok(resp);
    }
    Err(failure(engine, &resp, what).await)
}

/// The failure of a store command that did not end with OK, saying whether the store may hold
/// a partial write and, after no answer, whether the module answers `AT` again.
pub(crate) async fn failure(engine: &Engine, resp: &Response, what: &str) -> Failure {
    let code = crate::error::code_for_status(&resp.status);
    let lost_prompt = resp.status
        == (crate::at::Status::Timeout {
            phase: crate::at::Phase::Prompt,
        });
    // After no answer, ask `AT` (the engine resynchronises first, patiently for the boot
    // window, and has paid a lost prompt's data with filler) and say where the module is.
    let state = if code == Code::NoAnswer {
        if engine.answers_at().await {
            "; it answers AT again"
        } else {
            "; it does not answer AT"
        }
    } else {
        ""
    };
    let advice = match code {
        Code::ModuleReset => {
            "; the store may hold a partial write: run flash again (it rewrites and verifies)"
        }
        Code::NoAnswer if lost_prompt => {
            "; the module never asked for the data, atprov sent the announced length as filler so that it leaves its data phase: run flash again (it rewrites and verifies)"
        }
        Code::NoAnswer => "; the store may hold a partial write: run flash again",
        _ => "",
    };
    Failure::new(code, format!("{what}: {}{advice}{state}", resp.summary()))
}

/// A read-back that differs from what was written.
pub(crate) fn mismatch(slot: &str, wrote: &[u8], read: &[u8]) -> Failure {
    let first = wrote
        .iter()
        .zip(read)
        .position(|(a, b)| a != b)
        .unwrap_or(wrote.len().min(read.len()));
    Failure::new(
        Code::VerifyMismatch,
        format!(
            "{slot}: read back {} bytes that differ from the {} written (first difference at byte {first}); the module's store is unreliable or another writer interfered: run flash again",
            read.len(),
            wrote.len()
        ),
    )
}
