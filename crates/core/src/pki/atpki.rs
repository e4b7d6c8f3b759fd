//! The ESP-AT PKI bin of legacy firmware (what Espressif's `AtPKI.py generate_bin` writes),
//! byte for byte: an 8-byte header (`F1 F1`, item count, total item length, little-endian)
//! then items `type | id | len | content | 0xFF padding to 4`, regrouped by type in order of
//! first appearance, ids per type in argument order. Where AtPKI.py writes a corrupt or
//! useless file (content over 65,535 bytes, more than 255 items of a type, an empty file),
//! encoding refuses.

/// The kind of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemType {
    /// A CA certificate (type 1).
    Ca,
    /// A certificate (type 2).
    Cert,
    /// A private key (type 3).
    Key,
}

impl ItemType {
    /// The type byte of the bin format.
    pub fn byte(self) -> u8 {
        match self {
            ItemType::Ca => 1,
            ItemType::Cert => 2,
            ItemType::Key => 3,
        }
    }

    /// The type a byte stands for.
    pub fn from_byte(b: u8) -> Option<ItemType> {
        match b {
            1 => Some(ItemType::Ca),
            2 => Some(ItemType::Cert),
            3 => Some(ItemType::Key),
            _ => None,
        }
    }

    /// `ca`, `cert` or `key`, as AtPKI.py's command line names them.
    pub fn parse(s: &str) -> Option<ItemType> {
        match s {
            "ca" => Some(ItemType::Ca),
            "cert" => Some(ItemType::Cert),
            "key" => Some(ItemType::Key),
            _ => None,
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ItemType::Ca => "ca",
            ItemType::Cert => "cert",
            ItemType::Key => "key",
        }
    }
}

/// One item of a PKI bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its type.
    pub kind: ItemType,
    /// Its index within its type.
    pub id: u8,
    /// The input file's bytes, verbatim.
    pub content: Vec<u8>,
}

/// The first two bytes of every bin.
pub const MAGIC: [u8; 2] = [0xF1, 0xF1];

/// Why a bin cannot be made or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BinError {
    #[error("{0}: the file is empty; a PKI bin of it is useless")]
    /// An empty input file.
    EmptyInput(String),
    #[error(
        "{0}: {1} bytes is over the 65,535 an item can hold (AtPKI.py would write a corrupt bin)"
    )]
    /// An input over 65,535 bytes (the format's length field).
    TooBig(String, usize),
    #[error("more than 255 items of type {0} (AtPKI.py would wrap the ids)")]
    /// Over 255 items of one type.
    TooMany(&'static str),
    #[error("nothing to encode: give TYPE FILE pairs")]
    /// No items to encode.
    NoItems,
    #[error("not a PKI bin: {0}")]
    /// Bytes that are not a bin.
    Malformed(String),
}

/// Encodes `(type, name, content)` items as AtPKI.py does; `name` only labels errors.
pub fn encode(inputs: &[(ItemType, String, Vec<u8>)]) -> Result<Vec<u8>, BinError> {
    if inputs.is_empty() {
        return Err(BinError::NoItems);
    }
    let mut order: Vec<ItemType> = Vec::new();
    for (t, name, content) in inputs {
        if content.is_empty() {
            return Err(BinError::EmptyInput(name.clone()));
        }
        if content.len() > usize::from(u16::MAX) {
            return Err(BinError::TooBig(name.clone(), content.len()));
        }
        if !order.contains(t) {
            order.push(*t);
        }
    }
    let mut body = Vec::new();
    let mut count = 0u16;
    for t in order {
        for (id, (_, _, content)) in inputs.iter().filter(|(k, _, _)| *k == t).enumerate() {
            let id = u8::try_from(id)
                .ok()
                .filter(|&id| id < u8::MAX)
                .ok_or(BinError::TooMany(t.name()))?;
            body.push(t.byte());
            body.push(id);
            body.extend_from_slice(&(content.len() as u16).to_le_bytes());
            body.extend_from_slice(content);
            body.resize(body.len() + padding(content.len()), 0xFF);
            count += 1;
        }
    }
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Decodes a PKI bin into its items, checking every length.
pub fn decode(bin: &[u8]) -> Result<Vec<Item>, BinError> {
    let bad = |m: String| BinError::Malformed(m);
    if bin.len() < 8 {
        return Err(bad(format!(
            "{} bytes is shorter than the 8-byte header",
            bin.len()
        )));
    }
    if bin[..2] != MAGIC {
        return Err(bad(format!(
            "magic is {:02X} {:02X}, not F1 F1",
            bin[0], bin[1]
        )));
    }
    let count = u16::from_le_bytes([bin[2], bin[3]]) as usize;
    let length = u32::from_le_bytes([bin[4], bin[5], bin[6], bin[7]]) as usize;
    // A whole partition read back (`esptool read_flash`) is the bin followed by erased
    // flash: 0xFF to the end of the partition.
    let bin = match bin.get(8 + length..) {
        Some(rest) if !rest.is_empty() && rest.iter().all(|&b| b == 0xFF) => &bin[..8 + length],
        _ => bin,
    };
    if length != bin.len() - 8 {
        return Err(bad(format!(
            "the header says {length} bytes of items, the file holds {}",
            bin.len() - 8
        )));
    }
    let mut items = Vec::with_capacity(count.min(1024));
    let mut at = 8;
    for n in 0..count {
        if at + 4 > bin.len() {
            return Err(bad(format!("item {n} starts past the end of the file")));
        }
        let kind = ItemType::from_byte(bin[at])
            .ok_or_else(|| bad(format!("item {n} has unknown type {}", bin[at])))?;
        let id = bin[at + 1];
        let len = u16::from_le_bytes([bin[at + 2], bin[at + 3]]) as usize;
        let end = at + 4 + len;
        if end + padding(len) > bin.len() {
            return Err(bad(format!(
                "item {n} ({len} bytes) runs past the end of the file"
            )));
        }
        items.push(Item {
            kind,
            id,
            content: bin[at + 4..end].to_vec(),
        });
        at = end + padding(len);
    }
    if at != bin.len() {
        return Err(bad(format!(
            "{} bytes follow the last item",
            bin.len() - at
        )));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_image_padded_with_erased_flash_decodes_like_the_bin() {
        let bin = encode(&[(ItemType::Ca, "ca".into(), b"CA bytes".to_vec())]).unwrap();
        let mut image = bin.clone();
        image.resize(8192, 0xFF);
        assert_eq!(decode(&image).unwrap(), decode(&bin).unwrap());
        // Anything but erased flash after the items is still refused.
        image[8000] = 0;
        assert!(decode(&image).is_err());
    }

    #[test]
    fn regroups_by_type_in_order_of_first_appearance() {
        let i = |t, s: &str| (t, s.to_string(), s.as_bytes().to_vec());
        let bin = encode(&[
            i(ItemType::Cert, "A"),
            i(ItemType::Key, "B"),
            i(ItemType::Ca, "C"),
            i(ItemType::Ca, "D"),
            i(ItemType::Cert, "E"),
            i(ItemType::Key, "F"),
        ])
        .unwrap();
        let items = decode(&bin).unwrap();
        let got: Vec<_> = items
            .iter()
            .map(|it| {
                (
                    it.kind,
                    it.id,
                    String::from_utf8(it.content.clone()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (ItemType::Cert, 0, "A".into()),
                (ItemType::Cert, 1, "E".into()),
                (ItemType::Key, 0, "B".into()),
                (ItemType::Key, 1, "F".into()),
                (ItemType::Ca, 0, "C".into()),
                (ItemType::Ca, 1, "D".into()),
            ]
        );
        assert_eq!(bin.len() % 4, 0);
    }

    #[test]
    fn refuses_what_atpki_would_corrupt() {
        let big = vec![b'x'; 65_536];
        assert!(matches!(
            encode(&[(ItemType::Ca, "big".into(), big)]),
            Err(BinError::TooBig(..))
        ));
        assert!(matches!(
            encode(&[(ItemType::Ca, "e".into(), vec![])]),
            Err(BinError::EmptyInput(..))
        ));
        let many: Vec<_> = (0..256)
            .map(|i| (ItemType::Ca, format!("{i}"), vec![1]))
            .collect();
        assert_eq!(encode(&many), Err(BinError::TooMany("ca")));
        assert!(decode(b"\xF1\xF1\x01\x00\x08\x00\x00\x00\x02\x00\xFF\x00").is_err());
    }
}
