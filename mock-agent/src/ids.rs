//! Fresh session / thread ids.
//!
//! A run that is not a resume gets a new id, as the real CLIs do, so a daemon
//! test can tell two runs apart and then resume one of them. The id has the
//! UUID v4 shape Claude uses; the random bytes come from `/dev/urandom`
//! because the mock may not depend on a `rand` or `uuid` crate.

use std::fs::File;
use std::io::Read;

use crate::error::Failure;

/// A new random id like `0bdf7bd1-0395-4c85-a67d-d6af4da2d4bb`.
pub fn random_uuid_v4() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Failure::new(1, format!("mock-agent: cannot read /dev/urandom: {e}")))?;
    Ok(format_uuid_v4(bytes))
}

/// Stamps the version (4) and variant (10xx) bits on `bytes` and formats them
/// 8-4-4-4-12 in lowercase hex.
pub fn format_uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_version_and_variant_bits() {
        assert_eq!(
            format_uuid_v4([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        assert_eq!(
            format_uuid_v4([0; 16]),
            "00000000-0000-4000-8000-000000000000"
        );
    }

    #[test]
    fn random_ids_differ_and_have_uuid_shape() {
        let a = random_uuid_v4().expect("urandom");
        let b = random_uuid_v4().expect("urandom");
        assert_ne!(a, b);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "4");
    }
}
