//! Order-independent digests of output rows, per publish partition.
//!
//! # Algorithm (digest format version 2)
//! Each row is encoded canonically ([`OutputRow::encode_canonical`]; by default the compact binary
//! encoding of [`crate::encode`]) and hashed with SHA-256. The
//! 32-byte hashes, read as big-endian 256-bit integers, are **added modulo 2^256**; the digest is that
//! sum plus the row count. Addition is commutative and associative, so the same multiset of rows gives
//! the same digest in any order and under any chunking, and digests of chunks combine by addition. A
//! duplicated row adds its hash twice and a dropped row removes it, so both change the digest (and the
//! count). This is a multiset hash for integrity against accidents, not a defence against an adversary
//! choosing rows to collide.
//!
//! # Versions
//! [`DIGEST_FORMAT_VERSION`] names the row encoding, hash and sum above. Digests of different versions
//! never compare equal, so a ledger stores the version with its digests and compares only digests of
//! the same version.
//!
//! | version | default row encoding |
//! |---|---|
//! | 1 | compact `serde_json` (field order of the declaration; serialization errors were ignored) |
//! | 2 | the tagged binary encoding of [`crate::encode`]; errors propagate as [`EncodeError`] |
//!
//! A row type that overrides [`OutputRow::encode_canonical`] owns its encoding; the version then
//! describes only the hashing and summing, which have not changed since version 1.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encode::EncodeError;
use crate::ids::PartitionKey;

/// The version of the digest format this build computes (see the module docs). Record it with every
/// stored digest; version 1 was JSON-encoded rows.
pub const DIGEST_FORMAT_VERSION: u32 = 2;

/// An output row type: knows its publish partition and its canonical encoding.
///
/// # Contract
/// 1. `encode_canonical` is a pure function of the row's content: equal rows encode to equal bytes
///    and rows that differ in any published field encode differently.
/// 2. The encoding must not depend on map iteration order (the default sorts map entries).
/// 3. A row that cannot be encoded is an error, never a shorter or empty encoding.
/// 4. `partition` is one of the manifest's target partitions for every row the transform emits.
///
/// The default encoding is the compact binary encoding of [`crate::encode`] (digest format version
/// [`DIGEST_FORMAT_VERSION`]).
pub trait OutputRow: Serialize + Clone + Send + Sync + fmt::Debug + 'static {
    /// The publish partition this row belongs to.
    fn partition(&self) -> Cow<'_, str>;

    /// Appends the canonical encoding of the row to `out`.
    ///
    /// On error `out` may hold a partial encoding; callers discard it and must not hash it.
    fn encode_canonical(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        crate::encode::encode_into(self, out)
    }
}

/// Row count plus an order-independent multiset hash.
///
/// The value depends on the digest format ([`DIGEST_FORMAT_VERSION`], currently 2: rows encoded with
/// [`crate::encode`]). Its text form (`<rows>:<hex>`) does not carry the version: whoever stores
/// digests (the chunk ledger) stores the version beside them and compares only equal versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PartitionDigest {
    /// Number of rows.
    pub rows: u64,
    sum: [u64; 4],
}

impl PartitionDigest {
    /// Adds one row given its canonical encoding.
    #[inline]
    pub fn add_encoded(&mut self, encoded: &[u8]) {
        self.add_hash(&Sha256::digest(encoded).into());
    }

    /// Adds one row given the SHA-256 of its canonical encoding.
    #[inline]
    pub fn add_hash(&mut self, hash: &[u8; 32]) {
        let mut carry = 0u64;
        // Limb 3 holds the least significant bytes (big-endian interpretation).
        for limb in (0..4).rev() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&hash[limb * 8..limb * 8 + 8]);
            let (s1, c1) = self.sum[limb].overflowing_add(u64::from_be_bytes(word));
            let (s2, c2) = s1.overflowing_add(carry);
            self.sum[limb] = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
        self.rows += 1;
    }

    /// Adds a row; `scratch` is a reusable buffer. A row that cannot be encoded is not added.
    pub fn add_row<R: OutputRow>(
        &mut self,
        row: &R,
        scratch: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        scratch.clear();
        row.encode_canonical(scratch)?;
        self.add_encoded(scratch);
        Ok(())
    }

    /// Combines two digests (the digest of the union of both multisets).
    pub fn merge(&mut self, other: &Self) {
        let mut carry = 0u64;
        for limb in (0..4).rev() {
            let (s1, c1) = self.sum[limb].overflowing_add(other.sum[limb]);
            let (s2, c2) = s1.overflowing_add(carry);
            self.sum[limb] = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
        self.rows += other.rows;
    }

    /// The 256-bit sum as lowercase hex.
    pub fn hash_hex(&self) -> String {
        let mut bytes = [0u8; 32];
        for (i, limb) in self.sum.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&limb.to_be_bytes());
        }
        hex::encode(bytes)
    }

    /// Parses the form written by `Display` (`<rows>:<hex>`).
    pub fn parse(s: &str) -> Option<Self> {
        let (rows, hex_sum) = s.split_once(':')?;
        let bytes = hex::decode(hex_sum).ok()?;
        if bytes.len() != 32 {
            return None;
        }
        let mut sum = [0u64; 4];
        for (i, limb) in sum.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            *limb = u64::from_be_bytes(word);
        }
        Some(Self {
            rows: rows.parse().ok()?,
            sum,
        })
    }
}

impl fmt::Display for PartitionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.rows, self.hash_hex())
    }
}

impl Serialize for PartitionDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PartitionDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("expected `<rows>:<64 hex digits>`"))
    }
}

/// Digests per publish partition, in partition order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionDigests(pub BTreeMap<PartitionKey, PartitionDigest>);

impl PartitionDigests {
    /// Adds a row to its partition's digest; `scratch` is a reusable buffer. A row that cannot be
    /// encoded is not added.
    pub fn add_row<R: OutputRow>(
        &mut self,
        row: &R,
        scratch: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        scratch.clear();
        row.encode_canonical(scratch)?;
        self.add_encoded(&row.partition(), scratch);
        Ok(())
    }

    /// Adds a row, given its partition and canonical encoding, to its partition's digest.
    pub fn add_encoded(&mut self, partition: &str, encoded: &[u8]) {
        if let Some(d) = self.0.get_mut(partition) {
            d.add_encoded(encoded);
        } else {
            let mut d = PartitionDigest::default();
            d.add_encoded(encoded);
            self.0.insert(PartitionKey::new(partition), d);
        }
    }

    /// Merges another set of digests into this one.
    pub fn merge(&mut self, other: &Self) {
        for (k, d) in &other.0 {
            self.0.entry(k.clone()).or_default().merge(d);
        }
    }

    /// Total rows over all partitions.
    pub fn total_rows(&self) -> u64 {
        self.0.values().map(|d| d.rows).sum()
    }

    /// Digests of a stream of rows; the first row that cannot be encoded is an error.
    pub fn try_of_rows<'a, R: OutputRow>(
        rows: impl IntoIterator<Item = &'a R>,
    ) -> Result<Self, EncodeError> {
        let mut out = Self::default();
        let mut scratch = Vec::new();
        for r in rows {
            out.add_row(r, &mut scratch)?;
        }
        Ok(out)
    }

    /// Digests of a stream of rows known to encode (tests, fixtures); see [`Self::try_of_rows`].
    ///
    /// # Panics
    /// If a row cannot be encoded canonically.
    pub fn of_rows<'a, R: OutputRow>(rows: impl IntoIterator<Item = &'a R>) -> Self {
        match Self::try_of_rows(rows) {
            Ok(d) => d,
            Err(e) => panic!("PartitionDigests::of_rows: {e}"),
        }
    }
}
