//! Base layer: digests as the loader writes them: the SHA-256 of a file, and bytes as
//! lowercase hexadecimal.

use std::{fs::File, io, path::Path};

use sha2::{Digest, Sha256};

/// The SHA-256 of the file at `path`.
pub(crate) fn sha256_of(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// Bytes (a SHA-256 digest, a build ID) as lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    text
}

/// The bytes `text` names in hexadecimal (either case), if it does.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    fn digit(byte: u8) -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    }
    // A digit at a time, not through `str` parsing: a cached description
    // is thousands of digits, read for every plugin at every start.
    let mut bytes = Vec::with_capacity(text.len() / 2);
    for pair in text.as_bytes().chunks_exact(2) {
        bytes.push((digit(pair[0])? << 4) | digit(pair[1])?);
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::unhex;

    #[test]
    fn hexadecimal_of_either_case_and_nothing_else_is_read() {
        assert_eq!(
            unhex("00ff7Fa0").as_deref(),
            Some(&[0x00, 0xff, 0x7f, 0xa0][..])
        );
        assert_eq!(unhex("").as_deref(), Some(&[][..]));
        for bad in ["0", "0g", "+1", " 1", "é1"] {
            assert_eq!(unhex(bad), None, "{bad:?}");
        }
    }
}
