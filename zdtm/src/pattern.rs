//! Pseudo-random data patterns and checksums.

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The byte at `offset` of the pattern `seed`: each position has its own
/// value, so a page moved to the wrong place is caught too.
pub fn byte_at(seed: u64, offset: usize) -> u8 {
    let word = mix(seed ^ mix(offset as u64 / 8));
    word.to_le_bytes()[offset % 8]
}

/// Fill `buf` with the pattern `seed`, as if `buf` started at offset 0.
pub fn fill(seed: u64, buf: &mut [u8]) {
    fill_at(seed, 0, buf)
}

/// Fill `buf` with the pattern `seed` starting at pattern offset `base`.
pub fn fill_at(seed: u64, base: usize, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let off = base + i;
        let word = mix(seed ^ mix(off as u64 / 8)).to_le_bytes();
        let start = off % 8;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
    }
}

/// Check `buf` against the pattern `seed`; Err(first bad offset).
pub fn check(seed: u64, buf: &[u8]) -> Result<(), usize> {
    check_at(seed, 0, buf)
}

/// Check `buf` against the pattern `seed` starting at pattern offset `base`.
pub fn check_at(seed: u64, base: usize, buf: &[u8]) -> Result<(), usize> {
    let mut expect = [0u8; 4096];
    let mut i = 0;
    while i < buf.len() {
        let n = expect.len().min(buf.len() - i);
        fill_at(seed, base + i, &mut expect[..n]);
        if buf[i..i + n] != expect[..n] {
            let bad = (0..n).find(|&k| buf[i + k] != expect[k]).unwrap_or(0);
            return Err(i + bad);
        }
        i += n;
    }
    Ok(())
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE 802.3, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn patterns_differ_by_seed_and_position() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        fill(1, &mut a);
        fill(2, &mut b);
        assert_ne!(a, b);
        assert_ne!(a[..8], a[8..16]);
    }

    #[test]
    fn check_reports_first_bad_offset() {
        let mut buf = vec![0u8; 10000];
        fill(7, &mut buf);
        assert_eq!(check(7, &buf), Ok(()));
        buf[5000] ^= 1;
        buf[9000] ^= 1;
        assert_eq!(check(7, &buf), Err(5000));
        assert!(check(8, &buf).is_err());
    }

    proptest! {
        #[test]
        fn fill_at_agrees_with_byte_at(seed: u64, base in 0usize..100_000, len in 0usize..300) {
            let mut buf = vec![0u8; len];
            fill_at(seed, base, &mut buf);
            for (i, &b) in buf.iter().enumerate() {
                prop_assert_eq!(b, byte_at(seed, base + i));
            }
            prop_assert_eq!(check_at(seed, base, &buf), Ok(()));
        }

        #[test]
        fn any_flip_is_found(seed: u64, len in 1usize..9000, pos: usize, bit in 0u8..8) {
            let mut buf = vec![0u8; len];
            fill(seed, &mut buf);
            let p = pos % len;
            buf[p] ^= 1 << bit;
            prop_assert_eq!(check(seed, &buf), Err(p));
        }
    }
}
