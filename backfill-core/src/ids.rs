//! Identifier newtypes: runs, chunks, partitions and deterministic output IDs.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// Identity of a run, such as `bf-2026-07-04-case-sla-v3-001`.
    RunId
);
string_id!(
    /// Identity of a chunk inside a run's plan, derived from the plan (never random).
    ChunkId
);
string_id!(
    /// A publish partition of the target, such as `2025-03`.
    PartitionKey
);

/// Derives a deterministic identifier: lowercase hex of SHA-256 over a domain tag and parts.
///
/// # Encoding
/// The hash input is the ASCII tag `backfill-id/v1`, then the namespace, then each part, every one of
/// them preceded by its byte length as a big-endian `u64`. Length prefixes make `["ab", "c"]` and
/// `["a", "bc"]` hash differently, which a plain `:`-joined string would not.
///
/// ```
/// use backfill_core::ids::derive_id;
/// let a = derive_id("bf-001", &["C-101", "2025-03-01"]);
/// assert_eq!(a, derive_id("bf-001", &["C-101", "2025-03-01"]));
/// assert_ne!(a, derive_id("bf-001", &["C-10", "12025-03-01"]));
/// assert_eq!(a.len(), 64);
/// ```
pub fn derive_id(namespace: &str, parts: &[&str]) -> String {
    hex_lower(&derive_id_bytes(namespace, parts))
}

/// Lowercase hex of 32 bytes, built in one allocation (`hex::encode` pushes char by char, which cost
/// more than the SHA-256 it follows).
fn hex_lower(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    // Always ASCII, so the conversion cannot fail.
    std::str::from_utf8(&buf).unwrap_or_default().to_owned()
}

/// Like [`derive_id`] but returns the 32 raw bytes.
pub fn derive_id_bytes(namespace: &str, parts: &[&str]) -> [u8; 32] {
    const TAG: &[u8] = b"backfill-id/v1";
    // The usual id input is short: lay it out on the stack and hash it in one call, which is cheaper
    // than one `update` per piece. Longer inputs stream; both hash the same bytes.
    let mut buf = [0u8; 256];
    let mut len = TAG.len();
    buf[..len].copy_from_slice(TAG);
    for part in std::iter::once(&namespace).chain(parts) {
        let end = len + 8 + part.len();
        if end > buf.len() {
            return derive_id_streaming(namespace, parts);
        }
        buf[len..len + 8].copy_from_slice(&(part.len() as u64).to_be_bytes());
        buf[len + 8..end].copy_from_slice(part.as_bytes());
        len = end;
    }
    Sha256::digest(&buf[..len]).into()
}

fn derive_id_streaming(namespace: &str, parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"backfill-id/v1");
    for part in std::iter::once(&namespace).chain(parts) {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_and_streaming_ids_hash_the_same_bytes() {
        let long = "p".repeat(300);
        for parts in [
            vec![],
            vec![""],
            vec!["C-101", "2025-03-01"],
            vec!["x"; 12],
            vec![long.as_str()],
            vec!["a", long.as_str(), "b"],
        ] {
            let want = derive_id_streaming("bf-001", &parts);
            assert_eq!(derive_id_bytes("bf-001", &parts), want, "{parts:?}");
            assert_eq!(derive_id("bf-001", &parts), hex::encode(want));
        }
        // Pinned: changing it changes every id ever derived.
        assert_eq!(
            derive_id("bf-001", &["C-101"]),
            "d73b74fb691e3df0f8ced114328c3df1e9f4eca7eaf5e7d813e43136820aac7d"
        );
    }
}
