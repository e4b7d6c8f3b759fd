//! Showing device bytes to people: valid UTF-8 stays as it is, everything else is escaped.

/// Renders device bytes as a string: printable UTF-8 kept, control bytes as `\r`, `\n`, `\0`,
/// `\t` or `\xNN`, invalid UTF-8 as `\xNN` per byte. Never fails, never loses a byte's identity.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn keeps_text_and_escapes_the_rest() {
        assert_eq!(escape(b"OK"), "OK");
        assert_eq!(escape(b"a\r\nb\0"), "a\\r\\nb\\0");
        assert_eq!(escape(&[0x41, 0xff, 0x42]), "A\\xffB");
        assert_eq!(escape("温度".as_bytes()), "温度");
        assert_eq!(escape(&[0x1b]), "\\x1b");
    }
}
