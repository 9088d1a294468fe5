//! A run's whole evidence as one JSON document, and its verification.
//!
//! [`Control::export`](crate::control::Control::export) gathers the manifest, approval, plan, chunk
//! ledger, transitions and every evidence record into an [`EvidenceBundle`]. [`EvidenceBundle::verify`]
//! re-checks it offline: the manifest hashes to its approved digest, the ledger's digests merge to
//! what the publication receipt recorded, every staged chunk's evidence matches its ledger row. With
//! [`verify_rows`] it also re-reads staged and published rows and compares their digests with the
//! ledger, so one altered row anywhere is found.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{Evidence, EvidenceRecord};
use crate::digest::{OutputRow, PartitionDigests};
use crate::error::{Error, Result};
use crate::ids::{PartitionKey, RunId};
use crate::manifest::StoredManifest;
use crate::plan::ResolvedPlan;
use crate::publish::{PublishReceipt, TargetReader};
use crate::sink::StagingSink;
use crate::state::Transition;
use crate::store::{ChunkRecord, ChunkStatus, RunRecord};

/// Version of the bundle format.
pub const BUNDLE_FORMAT: u32 = 1;

/// Everything known about a run, as one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceBundle {
    /// Bundle format version.
    pub format: u32,
    /// The run record.
    pub run: RunRecord,
    /// The stored manifest (canonical JSON and approval).
    pub manifest: StoredManifest,
    /// The persisted plan, once planned.
    pub plan: Option<ResolvedPlan>,
    /// The chunk ledger.
    pub chunks: Vec<ChunkRecord>,
    /// Every transition.
    pub transitions: Vec<Transition>,
    /// Every evidence record.
    pub evidence: Vec<Evidence>,
}

/// One check of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Numbers or the difference found.
    pub detail: String,
}

/// The result of verifying a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Verification {
    /// Every check made, in order.
    pub checks: Vec<Check>,
}

impl Verification {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    fn push(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }
}

impl EvidenceBundle {
    /// The bundle as pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a bundle.
    pub fn from_json(json: &str) -> Result<Self> {
        let bundle: Self =
            serde_json::from_str(json).map_err(|e| Error::corrupt("evidence bundle", e))?;
        if bundle.format != BUNDLE_FORMAT {
            return Err(Error::corrupt(
                "evidence bundle",
                format!(
                    "format {}, this release reads {BUNDLE_FORMAT}",
                    bundle.format
                ),
            ));
        }
        Ok(bundle)
    }

    /// The run.
    pub fn run_id(&self) -> &RunId {
        &self.run.run_id
    }

    /// The ledger's merged digests over done chunks.
    pub fn ledger_digests(&self) -> PartitionDigests {
        let mut d = PartitionDigests::default();
        for c in self.chunks.iter().filter(|c| c.status == ChunkStatus::Done) {
            d.merge(&c.digests);
        }
        d
    }

    /// The publication receipt, if the run was published.
    pub fn receipt(&self) -> Option<&PublishReceipt> {
        self.evidence.iter().find_map(|e| match &e.record {
            EvidenceRecord::Published { receipt, .. } => Some(receipt),
            _ => None,
        })
    }

    /// Offline checks: manifest digest and approval, plan bound to the manifest, chunk evidence
    /// against the ledger, and the ledger against the publication receipt.
    pub fn verify(&self) -> Verification {
        let mut v = Verification::default();
        match self.manifest.verify() {
            Ok(approved) => {
                let same = *approved.digest() == self.run.manifest_digest;
                v.push(
                    "manifest_digest",
                    same,
                    format!(
                        "stored manifest hashes to {}, run record {}",
                        approved.digest(),
                        self.run.manifest_digest
                    ),
                );
            }
            Err(e) => v.push("manifest_digest", false, e.to_string()),
        }
        if let Some(plan) = &self.plan {
            v.push(
                "plan_bound_to_manifest",
                plan.manifest_digest == self.run.manifest_digest,
                format!("plan made for {}", plan.manifest_digest),
            );
        }
        let mut mismatched = Vec::new();
        let mut done = 0usize;
        for c in self.chunks.iter().filter(|c| c.status == ChunkStatus::Done) {
            done += 1;
            let recorded = self.evidence.iter().rev().find_map(|e| match &e.record {
                EvidenceRecord::ChunkStaged {
                    chunk_id,
                    attempt,
                    digests,
                    ..
                } if *chunk_id == c.chunk_id && *attempt == c.attempts => Some(digests),
                _ => None,
            });
            if recorded != Some(&c.digests) {
                mismatched.push(c.chunk_id.to_string());
            }
        }
        v.push(
            "chunk_evidence_matches_ledger",
            mismatched.is_empty(),
            if mismatched.is_empty() {
                format!("{done} done chunks of {}", self.chunks.len())
            } else {
                format!(
                    "chunks differ from their staged evidence: {}",
                    mismatched.join(", ")
                )
            },
        );
        if let Some(receipt) = self.receipt() {
            let ledger = self.ledger_digests();
            let diff = differing(&ledger, &receipt.digests);
            v.push(
                "ledger_matches_receipt",
                diff.is_empty(),
                if diff.is_empty() {
                    format!(
                        "{} partitions, {} rows",
                        ledger.0.len(),
                        ledger.total_rows()
                    )
                } else {
                    format!("partitions differ: {}", join(&diff))
                },
            );
        }
        v
    }
}

/// Online checks: re-reads the run's staged rows (when `staged` is given and still holds them) and
/// the target's current rows for the published partitions (when `current` is given and the run is
/// still the visible one), and compares their digests with the ledger.
pub async fn verify_rows<R: OutputRow>(
    bundle: &EvidenceBundle,
    staged: Option<&dyn StagingSink<R>>,
    current: Option<&dyn TargetReader<R>>,
) -> Result<Verification> {
    let mut v = bundle.verify();
    let ledger = bundle.ledger_digests();
    if let Some(sink) = staged {
        let digests = digest_stream(bundle.run_id(), sink.read_staged(bundle.run_id())).await?;
        let diff = differing(&ledger, &digests);
        v.push(
            "staged_rows_match_ledger",
            diff.is_empty(),
            if diff.is_empty() {
                format!("{} staged rows", digests.total_rows())
            } else {
                format!("partitions differ: {}", join(&diff))
            },
        );
    }
    if let (Some(reader), Some(receipt)) = (current, bundle.receipt()) {
        let mut diff = Vec::new();
        for p in &receipt.partitions {
            let digests = digest_stream(bundle.run_id(), reader.read_current(p)).await?;
            let want = ledger.0.get(p).copied().unwrap_or_default();
            let got = digests.0.get(p).copied().unwrap_or_default();
            if want != got {
                diff.push(p.clone());
            }
        }
        v.push(
            "published_rows_match_ledger",
            diff.is_empty(),
            if diff.is_empty() {
                format!("{} partitions read back", receipt.partitions.len())
            } else {
                format!("partitions differ: {}", join(&diff))
            },
        );
    }
    Ok(v)
}

/// The digests of every row of a stream of batches.
async fn digest_stream<R: OutputRow>(
    run_id: &RunId,
    mut stream: futures::stream::BoxStream<'_, Result<Vec<R>>>,
) -> Result<PartitionDigests> {
    let mut digests = PartitionDigests::default();
    let mut scratch = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        for r in &batch {
            digests
                .add_row(r, &mut scratch)
                .map_err(|source| Error::Encode {
                    run_id: run_id.clone(),
                    source,
                })?;
        }
    }
    Ok(digests)
}

fn differing(a: &PartitionDigests, b: &PartitionDigests) -> Vec<PartitionKey> {
    let keys: BTreeSet<&PartitionKey> = a.0.keys().chain(b.0.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            a.0.get(*k).copied().unwrap_or_default() != b.0.get(*k).copied().unwrap_or_default()
        })
        .cloned()
        .collect()
}

fn join(keys: &[PartitionKey]) -> String {
    keys.iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl crate::control::Control {
    /// Gathers a run's whole evidence into one bundle.
    pub async fn export(&self, run_id: &RunId) -> Result<EvidenceBundle> {
        let store = self.store();
        let run = self.run(run_id).await?;
        let manifest = store
            .manifest(run_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                run_id: run_id.clone(),
                what: "manifest".into(),
            })?;
        Ok(EvidenceBundle {
            format: BUNDLE_FORMAT,
            run,
            manifest,
            plan: store.plan(run_id).await?,
            chunks: store.chunks(run_id).await?,
            transitions: store.transitions(run_id).await?,
            evidence: store.evidence(run_id).await?,
        })
    }
}
