//! One-time start tokens and session tokens for guest agents.
//!
//! A token is 32 random bytes, hex. The host agent keeps only the SHA-256
//! digest of a start token (the guest agent received the token itself in its
//! environment), and compares digests in constant time, so neither the
//! comparison's timing nor a memory dump of the table reveals a usable token.

use ring::digest::{SHA256, digest as sha256};
use ring::rand::{SecureRandom, SystemRandom};

/// SHA-256 of a token.
pub type TokenDigest = [u8; 32];

/// A fresh random token: 32 bytes from the OS generator, lowercase hex.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random generator failed");
    hex(&bytes)
}

/// The digest the host agent stores instead of the token.
pub fn digest(token: &str) -> TokenDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(sha256(&SHA256, token.as_bytes()).as_ref());
    out
}

/// Whether `presented` is the token whose digest is `expected`, in time
/// independent of where they differ.
pub fn matches(expected: &TokenDigest, presented: &str) -> bool {
    let presented = digest(presented);
    expected
        .iter()
        .zip(presented.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// SHA-256 fingerprint of DER bytes, lowercase hex (as the guest agent
/// reports its transfer certificate's).
pub fn fingerprint(der: &[u8]) -> String {
    hex(sha256(&SHA256, der).as_ref())
}

/// A digest as lowercase hex (for the VM's on-disk record).
pub fn digest_hex(digest: &TokenDigest) -> String {
    hex(digest)
}

/// The digest written by [`digest_hex`]; `None` unless 64 hex digits.
pub fn parse_digest(text: &str) -> Option<TokenDigest> {
    let bytes = unhex(text)?;
    bytes.try_into().ok()
}

/// Lowercase or uppercase hex to bytes; `None` if malformed.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_match_only_themselves() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(matches(&digest(&a), &a));
        assert!(!matches(&digest(&a), &b));
        assert!(!matches(&digest(&a), ""));
        assert_eq!(parse_digest(&digest_hex(&digest(&a))), Some(digest(&a)));
        assert_eq!(parse_digest("abc"), None);
        assert_eq!(unhex("0aFf"), Some(vec![0x0a, 0xff]));
    }
}
