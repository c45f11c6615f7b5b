//! Human codes: user codes for the device grant and pairing codes. RFC 8628 §6.1's base-20
//! alphabet (no vowels, so no words; no digits, so no 0/O or 1/I confusion), drawn from the OS
//! CSPRNG by rejection sampling so that every letter is exactly as likely as every other.

use super::ParseError;
use super::secret;

pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;
/// Pairing codes are typed by someone not yet signed in, and a right guess is an account
/// takeover attempt, so they get two more letters (SECURITY.md §1.2: ~43 bits).
pub const PAIRING_CODE_LEN: usize = 10;

/// A random code of `len` letters from [`ALPHABET`].
pub fn generate(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in secret::random_bytes::<32>() {
            // 240 = 12 × 20: bytes at or above it would favour the first 16 letters; drop them.
            if b < 240 && out.len() < len {
                out.push(ALPHABET[(b % 20) as usize] as char);
            }
        }
    }
    out
}

/// Shows a code in groups for reading aloud: `BCDF-GHJK`, `BCDFG-HJKLM`.
pub fn display(code: &str) -> String {
    let half = code.len().div_ceil(2);
    format!("{}-{}", &code[..half], &code[half..])
}

/// Normalises a typed code: case-insensitive, spaces and dashes ignored. Any other character,
/// including Unicode look-alikes, digits and vowels, is rejected, never stripped or guessed at.
pub fn normalize(raw: &str, len: usize) -> Result<String, ParseError> {
    let mut out = String::with_capacity(len);
    for c in raw.chars() {
        match c {
            ' ' | '-' => continue,
            c if c.is_ascii_alphabetic() => {
                let u = c.to_ascii_uppercase();
                if !ALPHABET.contains(&(u as u8)) {
                    return Err(ParseError::new("code", "contains a character that is never part of a code"));
                }
                out.push(u);
            }
            _ => return Err(ParseError::new("code", "contains a character that is never part of a code")),
        }
        if out.len() > len {
            break;
        }
    }
    if out.len() != len {
        return Err(ParseError::new("code", format!("must be {len} letters")));
    }
    Ok(out)
}

/// The stored form of a human code: HMAC with a server key, so a stolen database does not let
/// anyone enumerate the small code space offline.
pub fn code_hmac(key: &[u8], purpose: &str, normalized: &str) -> Vec<u8> {
    secret::hmac(key, &[purpose.as_bytes(), normalized.as_bytes()]).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn letters_are_uniform() {
        let mut counts: HashMap<char, u64> = HashMap::new();
        let n = 20_000;
        for _ in 0..n {
            for c in generate(USER_CODE_LEN).chars() {
                *counts.entry(c).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 20, "every letter of the alphabet, and nothing else");
        let total = (n * USER_CODE_LEN) as f64;
        let expected = total / 20.0;
        let chi2: f64 = counts.values().map(|&o| (o as f64 - expected).powi(2) / expected).sum();
        // 19 degrees of freedom: p = 0.001 at 43.8. A modulo bias would push this into the thousands.
        assert!(chi2 < 43.8, "chi-square {chi2} over {counts:?}");
    }

    #[test]
    fn no_duplicates_in_a_large_sample() {
        let codes: HashSet<String> = (0..100_000).map(|_| generate(USER_CODE_LEN)).collect();
        // 1e5 codes in 2.56e10: a collision has probability ~0.2; a broken generator collides a lot.
        assert!(codes.len() >= 99_998, "{} distinct", codes.len());
    }

    #[test]
    fn display_groups() {
        assert_eq!(display("BCDFGHJK"), "BCDF-GHJK");
        assert_eq!(display("BCDFGHJKLM"), "BCDFG-HJKLM");
    }

    proptest! {
        #[test]
        fn generated_codes_have_the_right_shape(len in 4usize..16) {
            let c = generate(len);
            prop_assert_eq!(c.len(), len);
            prop_assert!(c.bytes().all(|b| ALPHABET.contains(&b)));
            prop_assert_eq!(normalize(&c, len).unwrap(), c.clone());
            prop_assert_eq!(normalize(&display(&c).to_lowercase(), len).unwrap(), c.clone());
            let spaced: String = c.chars().flat_map(|ch| [ch, ' ']).collect();
            prop_assert_eq!(normalize(&spaced, len).unwrap(), c);
        }

        #[test]
        fn anything_outside_the_alphabet_is_rejected(code in "[BCDFGHJKLMNPQRSTVWXZ]{8}", pos in 0usize..8, bad in "[AEIOUY0-9_.!@éΒСＢ]") {
            let mut s: Vec<char> = code.chars().collect();
            s.insert(pos, bad.chars().next().unwrap());
            let s: String = s.into_iter().collect();
            prop_assert!(normalize(&s, 8).is_err());
        }

        #[test]
        fn normalize_never_panics(s in "\\PC{0,40}") {
            let _ = normalize(&s, 8);
        }
    }

    #[test]
    fn lookalikes_are_rejected_not_mapped() {
        for s in ["BCDF-GHJ0", "BCDF-GHJO", "BCDF-GHJ1", "BCDF-GHJI", "ВСDF-GHJK", "BCDFGHJ", "BCDFGHJKL"] {
            assert!(normalize(s, 8).is_err(), "{s}");
        }
        assert_eq!(normalize(" bcdf - ghjk ", 8).unwrap(), "BCDFGHJK");
    }
}
