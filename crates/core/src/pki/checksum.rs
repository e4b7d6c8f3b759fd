//! Quectel's `+QFUPL: <size>,<checksum>`: the XOR of 16-bit big-endian words; an odd final byte
//! is the high byte of a last word whose low byte is 0.

/// The checksum Quectel modules print after `AT+QFUPL`.
pub fn qfupl_checksum(data: &[u8]) -> u16 {
    data.chunks(2).fold(0u16, |acc, pair| {
        let word = u16::from(pair[0]) << 8 | u16::from(*pair.get(1).unwrap_or(&0));
        acc ^ word
    })
}

/// Lower-case hex without padding, as the modules print it.
pub fn qfupl_hex(data: &[u8]) -> String {
    format!("{:x}", qfupl_checksum(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_lengths_pad_the_low_byte() {
        assert_eq!(qfupl_checksum(b""), 0);
        assert_eq!(qfupl_checksum(b"A"), 0x4100);
        assert_eq!(qfupl_checksum(b"AB"), 0x4142);
        assert_eq!(qfupl_checksum(b"ABC"), 0x0242);
        assert_eq!(qfupl_hex(b"ABC"), "242");
    }
}
