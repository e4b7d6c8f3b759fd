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

/// What a probe found out about the module's store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreInfo {
    /// `mfg_nvs` (ESP-AT 3.1+), `partitions` (ESP-AT 2.x) or `ufs` (Quectel) or `fs` (Luat).
    pub generation: &'static str,
    /// Namespaces or partitions the module lists.
    pub slots: Vec<String>,
    /// Partition sizes (legacy), by name.
    #[serde(skip)]
    pub sizes: Vec<(String, usize)>,
}

/// What happened to one credential.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemReport {
    /// `ca`, `cert` or `key`.
    pub item: &'static str,
    /// Where it went (namespace/key or partition).
    pub slot: String,
    /// Bytes stored (the AtPKI bin for legacy partitions).
    pub bytes: usize,
    /// `written` or `unchanged`.
    pub action: &'static str,
}

/// Finds out which store the module has.
pub async fn probe(engine: &Engine, store: &Store) -> Result<StoreInfo, Failure> {
    match store.kind {
        StoreKind::EspAt => esp_at::probe(engine, store).await,
        StoreKind::QuectelUfs => quectel::probe(engine).await,
        StoreKind::LuatFs => Ok(StoreInfo {
            generation: "fs",
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
        StoreKind::QuectelUfs => quectel::write(engine, store, creds, on_item).await,
        StoreKind::LuatFs => luat::write(engine, store, creds, on_item).await,
    }
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

/// The three credentials with their item names and the slots the profile gives them.
pub(crate) fn items<'a>(
    store: &'a Store,
    creds: &'a Credentials,
) -> [(&'static str, &'a str, &'a [u8]); 3] {
    [
        ("ca", &store.ca, &creds.ca),
        ("cert", &store.cert, &creds.cert),
        ("key", &store.key, creds.key()),
    ]
}

/// Runs a store command; anything but OK is a failure naming the slot.
pub(crate) async fn must(engine: &Engine, cmd: Command, what: &str) -> Result<Response, Failure> {
    let resp = engine.run(cmd).await?;
    if resp.is_ok() {
        return Ok(resp);
    }
    let code = crate::error::code_for_status(&resp.status);
    let advice = match code {
        Code::ModuleReset => {
            "; the store may hold a partial write: run flash again (it rewrites and verifies)"
        }
        Code::NoAnswer => "; the store may hold a partial write: run flash again",
        _ => "",
    };
    Err(Failure::new(
        code,
        format!("{what}: {}{advice}", resp.summary()),
    ))
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
