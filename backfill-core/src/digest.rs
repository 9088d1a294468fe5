//! Order-independent digests of output rows, per publish partition.
//!
//! # Algorithm
//! Each row is encoded canonically ([`OutputRow::encode_canonical`]) and hashed with SHA-256. The
//! 32-byte hashes, read as big-endian 256-bit integers, are **added modulo 2^256**; the digest is that
//! sum plus the row count. Addition is commutative and associative, so the same multiset of rows gives
//! the same digest in any order and under any chunking, and digests of chunks combine by addition. A
//! duplicated row adds its hash twice and a dropped row removes it, so both change the digest (and the
//! count). This is a multiset hash for integrity against accidents, not a defence against an adversary
//! choosing rows to collide.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::PartitionKey;

/// An output row type: knows its publish partition and its canonical encoding.
///
/// # Contract
/// 1. `encode_canonical` is a pure function of the row's content: equal rows encode to equal bytes
///    and rows that differ in any published field encode differently.
/// 2. The encoding must not depend on map iteration order (use `BTreeMap`, sorted vectors).
/// 3. `partition` is one of the manifest's target partitions for every row the transform emits.
///
/// The default encoding is compact `serde_json`, which writes struct fields in declaration order.
pub trait OutputRow: Serialize + Clone + Send + Sync + fmt::Debug + 'static {
    /// The publish partition this row belongs to.
    fn partition(&self) -> Cow<'_, str>;

    /// Appends the canonical encoding of the row to `out`.
    fn encode_canonical(&self, out: &mut Vec<u8>) {
        // Serializing a plain data row into a Vec does not fail for serde-derived types.
        let _ = serde_json::to_writer(out, self);
    }
}

/// Row count plus an order-independent multiset hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PartitionDigest {
    /// Number of rows.
    pub rows: u64,
    sum: [u64; 4],
}

impl PartitionDigest {
    /// Adds one row given its canonical encoding.
    pub fn add_encoded(&mut self, encoded: &[u8]) {
        self.add_hash(&Sha256::digest(encoded).into());
    }

    /// Adds one row given the SHA-256 of its canonical encoding.
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

    /// Adds a row.
    pub fn add_row<R: OutputRow>(&mut self, row: &R, scratch: &mut Vec<u8>) {
        scratch.clear();
        row.encode_canonical(scratch);
        self.add_encoded(scratch);
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
    /// Adds a row to its partition's digest.
    pub fn add_row<R: OutputRow>(&mut self, row: &R, scratch: &mut Vec<u8>) {
        scratch.clear();
        row.encode_canonical(scratch);
        self.add_encoded(&row.partition(), scratch);
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

    /// Digests of a stream of rows.
    pub fn of_rows<'a, R: OutputRow>(rows: impl IntoIterator<Item = &'a R>) -> Self {
        let mut out = Self::default();
        let mut scratch = Vec::new();
        for r in rows {
            out.add_row(r, &mut scratch);
        }
        out
    }
}
