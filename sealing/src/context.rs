//! The identity a sealed secret is bound to: which VM, and which incarnation of it.
//!
//! A VM is reincarnated (service healing moves it to another server) with a fresh guest agent and
//! a fresh transfer certificate. Binding the VM id and incarnation into the HPKE key schedule means
//! a secret sealed for one VM or one incarnation fails to open anywhere else, even if ciphertexts
//! are replayed or mixed up by a buggy or malicious intermediary.

/// Domain separation: distinguishes these HPKE contexts from any other use of the same key.
const INFO_LABEL: &[u8] = b"fabric/transfer-certificate/seal/v1";

/// The VM and incarnation a secret is sealed to. Both sides must agree on it exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SealContext {
    /// The VM's identifier, as the fabric controller names it.
    pub vm_id: String,
    /// The VM's incarnation; bumped each time the VM is (re)created.
    pub incarnation: u64,
}

impl SealContext {
    /// Builds a context for `vm_id` at `incarnation`.
    pub fn new(vm_id: impl Into<String>, incarnation: u64) -> Self {
        Self {
            vm_id: vm_id.into(),
            incarnation,
        }
    }

    /// The HPKE `info` string for this context.
    ///
    /// Every variable-length field is length-prefixed so that no two distinct contexts encode to
    /// the same bytes (e.g. vm "a1" incarnation 2 vs. vm "a" incarnation 12 cannot collide).
    pub(crate) fn hpke_info(&self) -> Vec<u8> {
        let mut info = Vec::with_capacity(INFO_LABEL.len() + 8 + self.vm_id.len() + 8);
        put_len_prefixed(&mut info, INFO_LABEL);
        put_len_prefixed(&mut info, self.vm_id.as_bytes());
        info.extend_from_slice(&self.incarnation.to_be_bytes());
        info
    }
}

/// The AEAD associated data for a secret called `name`: binds the name to the ciphertext.
pub(crate) fn secret_aad(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + name.len());
    put_len_prefixed(&mut aad, name.as_bytes());
    aad
}

fn put_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // u64 rather than usize so the encoding is the same on every platform.
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_unambiguous() {
        let a = SealContext::new("a1", 2).hpke_info();
        let b = SealContext::new("a", 12).hpke_info();
        assert_ne!(a, b);
        assert_ne!(
            SealContext::new("vm", 1).hpke_info(),
            SealContext::new("vm", 2).hpke_info()
        );
    }
}
