//! The emulated ESP32's persistent storage: raw flash partitions (legacy PKI partitions of
//! ESP-AT 2.x) and the `mfg_nvs` entries of ESP-AT 3.x. With a state directory every change is
//! written through as plain files, so anyone can inspect what a provisioning run wrote:
//!
//! - `partitions/<name>.bin`: the whole partition image (erased bytes are `FF`);
//! - `mfg_nvs/<namespace>/<key>.<type>`: one NVS entry, its raw value; the extension is the
//!   AT type (`blob` 8, `str` 7, `u8` 1, `i8` 2, `u16` 3, `i16` 4, `u32` 5, `i32` 6).
//!
//! A state directory left by an earlier run is loaded at start, like flash surviving power-off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A partition of the emulated flash.
#[derive(Debug, Clone)]
pub struct Partition {
    /// The partition table's name.
    pub name: &'static str,
    /// Its type (0x40 for user partitions).
    pub kind: u8,
    /// Its subtype.
    pub subtype: u8,
    /// Its flash address.
    pub addr: u32,
    /// Its bytes (erased bytes are 0xFF).
    pub data: Vec<u8>,
}

/// Flash and NVS, optionally mirrored in a directory.
#[derive(Debug, Clone)]
pub struct Flash {
    /// The partitions AT+SYSFLASH can reach.
    pub partitions: Vec<Partition>,
    /// mfg_nvs: (namespace, key) → (AT type, value).
    pub nvs: BTreeMap<(String, String), (u8, Vec<u8>)>,
    dir: Option<PathBuf>,
}

const TYPE_EXT: &[(u8, &str)] = &[
    (1, "u8"),
    (2, "i8"),
    (3, "u16"),
    (4, "i16"),
    (5, "u32"),
    (6, "i32"),
    (7, "str"),
    (8, "blob"),
];

impl Flash {
    /// Flash with these partitions and an empty NVS, kept in memory only.
    pub fn new(partitions: Vec<Partition>) -> Flash {
        Flash {
            partitions,
            nvs: BTreeMap::new(),
            dir: None,
        }
    }

    /// Mirrors the storage in `dir`, loading what an earlier run left there.
    pub fn with_state_dir(mut self, dir: &Path) -> std::io::Result<Flash> {
        std::fs::create_dir_all(dir)?;
        for p in &mut self.partitions {
            let path = dir.join("partitions").join(format!("{}.bin", p.name));
            if let Ok(bytes) = std::fs::read(&path) {
                let n = bytes.len().min(p.data.len());
                p.data[..n].copy_from_slice(&bytes[..n]);
            }
        }
        let nvs_dir = dir.join("mfg_nvs");
        if let Ok(namespaces) = std::fs::read_dir(&nvs_dir) {
            for ns in namespaces.flatten() {
                let Ok(entries) = std::fs::read_dir(ns.path()) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let Some((key, ext)) = name.rsplit_once('.') else {
                        continue;
                    };
                    let Some((t, _)) = TYPE_EXT.iter().find(|(_, x)| *x == ext) else {
                        continue;
                    };
                    if let Ok(value) = std::fs::read(e.path()) {
                        let ns = ns.file_name().to_string_lossy().into_owned();
                        self.nvs.insert((ns, key.to_string()), (*t, value));
                    }
                }
            }
        }
        self.dir = Some(dir.to_path_buf());
        // Write every partition once so the directory shows the whole layout.
        for i in 0..self.partitions.len() {
            self.persist_partition(i);
        }
        Ok(self)
    }

    /// Where a partition of this name is.
    pub fn partition_index(&self, name: &str) -> Option<usize> {
        self.partitions.iter().position(|p| p.name == name)
    }

    /// Erases `len` bytes at `offset` of partition `i`.
    pub fn erase(&mut self, i: usize, offset: usize, len: usize) {
        self.partitions[i].data[offset..offset + len].fill(0xFF);
        self.persist_partition(i);
    }

    /// Programs bytes: like NOR flash, a write only clears bits.
    pub fn program(&mut self, i: usize, offset: usize, data: &[u8]) {
        let p = &mut self.partitions[i];
        for (dst, src) in p.data[offset..offset + data.len()].iter_mut().zip(data) {
            *dst &= *src;
        }
        self.persist_partition(i);
    }

    /// Sets an NVS entry (and mirrors it to the state directory).
    pub fn nvs_set(&mut self, ns: String, key: String, kind: u8, value: Vec<u8>) {
        self.nvs.insert((ns.clone(), key.clone()), (kind, value));
        self.persist_nvs(&ns);
    }

    /// Erases a whole NVS namespace.
    pub fn nvs_erase_namespace(&mut self, ns: &str) {
        self.nvs.retain(|(n, _), _| n != ns);
        self.persist_nvs(ns);
    }

    /// Erases one NVS key.
    pub fn nvs_erase_key(&mut self, ns: &str, key: &str) {
        self.nvs.remove(&(ns.to_string(), key.to_string()));
        self.persist_nvs(ns);
    }

    /// The PEM an MQTT TLS setup would load for `slot` (`mqtt_ca` ...): the NVS blob, or item
    /// 0 of the AtPKI bin in the partition, found by position as the firmware does.
    pub fn mqtt_item(&self, slot: &str) -> Option<Vec<u8>> {
        if let Some((8, v)) = self.nvs.get(&(slot.to_string(), slot.to_string())) {
            return Some(v.clone());
        }
        let p = self.partitions.iter().find(|p| p.name == slot)?;
        first_pki_item(&p.data)
    }

    fn persist_partition(&self, i: usize) {
        let Some(dir) = &self.dir else { return };
        let p = &self.partitions[i];
        let path = dir.join("partitions").join(format!("{}.bin", p.name));
        write_file(&path, &p.data);
    }

    fn persist_nvs(&self, ns: &str) {
        let Some(dir) = &self.dir else { return };
        let ns_dir = dir.join("mfg_nvs").join(ns);
        let _ = std::fs::remove_dir_all(&ns_dir);
        for ((n, key), (t, value)) in &self.nvs {
            if n != ns {
                continue;
            }
            let ext = TYPE_EXT
                .iter()
                .find(|(x, _)| x == t)
                .map_or("bin", |(_, e)| e);
            write_file(&ns_dir.join(format!("{key}.{ext}")), value);
        }
    }
}

/// Writes a file whole (temporary file, then rename), so a reader never sees half of it.
fn write_file(path: &Path, bytes: &[u8]) {
    let result = (|| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read(path).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        tracing::error!("emulator state {}: {e}", path.display());
    }
}

/// Item 0 of an AtPKI bin at the start of a partition, read as the firmware reads it
/// (reference esp-at.md §2, "How the firmware consumes it"): magic `F1 F1`, the total length
/// within the partition, at least one item, then the first record's content by its length.
/// The `type` and `id` bytes are never looked at.
fn first_pki_item(partition: &[u8]) -> Option<Vec<u8>> {
    if partition.get(..2)? != [0xF1, 0xF1] {
        return None;
    }
    let count = partition[2] as i8;
    let length = u32::from_le_bytes(partition.get(4..8)?.try_into().ok()?) as usize;
    if count < 1 || length > partition.len() - 8 {
        return None;
    }
    let content_len = u16::from_le_bytes(partition.get(10..12)?.try_into().ok()?) as usize;
    if 4 + content_len > length {
        return None;
    }
    partition.get(12..12 + content_len).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_item_of_every_published_bin_is_its_first_input() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/vectors/esp-at-pki");
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let mut n = 0;
        for line in readme.lines().filter(|l| l.starts_with("| bin/")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let args: Vec<&str> = cells[1].trim_matches('`').split_whitespace().collect();
            // Items are regrouped by type in order of first appearance: item 0 is the first input.
            let first = std::fs::read(dir.join(args[1])).unwrap();
            let mut partition = std::fs::read(dir.join(cells[0])).unwrap();
            partition.resize(8192, 0xFF);
            assert_eq!(
                super::first_pki_item(&partition),
                Some(first),
                "{}",
                cells[0]
            );
            n += 1;
        }
        assert!(n >= 8);
        assert_eq!(super::first_pki_item(&[0xFF; 64]), None);
    }
}
