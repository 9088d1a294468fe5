//! Approval bound to a digest, the immutable approved manifest, and its stored form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{canonical_json, ManifestDigest, ManifestRef, RunManifest};
use crate::error::{Error, Result};
use crate::ids::RunId;

/// An owner's approval of exactly one manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The digest approved. An approval for another digest is worthless.
    pub digest: ManifestDigest,
    /// Who approved.
    pub approved_by: String,
    /// When (from the injected clock).
    pub approved_at: DateTime<Utc>,
}

/// A manifest with a valid approval. It has no mutable access: to change scope, [`amend`](Self::amend).
///
/// ```compile_fail
/// # use backfill_core::manifest::ApprovedManifest;
/// fn widen(approved: &mut ApprovedManifest) {
///     approved.manifest.reason = "something else".into(); // private: approved manifests are immutable
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedManifest {
    manifest: RunManifest,
    approval: Approval,
}

impl RunManifest {
    /// Approves this manifest: refuses blocking findings, self-approval and an approver other than
    /// the one the manifest names (`approved_by`), then binds the approval to the digest.
    pub fn approve(self, approver: &str, at: DateTime<Utc>) -> Result<ApprovedManifest> {
        let findings = self.check();
        if findings.has_blocking() {
            return Err(Error::BlockingFindings {
                run_id: self.run_id.clone(),
                findings: findings.blocking(),
            });
        }
        self.check_approver(approver)?;
        let approval = Approval {
            digest: self.digest(),
            approved_by: approver.to_owned(),
            approved_at: at,
        };
        Ok(ApprovedManifest {
            manifest: self,
            approval,
        })
    }

    /// Who may approve: someone, not the requester, and the named approver when there is one.
    fn check_approver(&self, approver: &str) -> Result<()> {
        if approver.trim().is_empty() || approver.trim() == self.requested_by.trim() {
            return Err(Error::SelfApproval {
                run_id: self.run_id.clone(),
                principal: approver.to_owned(),
            });
        }
        match &self.approved_by {
            Some(named) if named.trim() != approver.trim() => Err(Error::InvalidManifest {
                run_id: self.run_id.clone(),
                field: "approved_by".into(),
                message: format!("the manifest names `{named}` as its approver, not `{approver}`"),
            }),
            _ => Ok(()),
        }
    }
}

impl ApprovedManifest {
    /// The approved manifest (read only).
    pub fn manifest(&self) -> &RunManifest {
        &self.manifest
    }

    /// The approval.
    pub fn approval(&self) -> &Approval {
        &self.approval
    }

    /// The run id.
    pub fn run_id(&self) -> &RunId {
        &self.manifest.run_id
    }

    /// The approved digest.
    pub fn digest(&self) -> &ManifestDigest {
        &self.approval.digest
    }

    /// A new draft version that supersedes this one. It needs its own approval.
    ///
    /// The new draft keeps every section; `run_id` is the new run's id (a new version is a new run).
    pub fn amend(&self, new_run_id: impl Into<RunId>) -> RunManifest {
        let mut next = self.manifest.clone();
        next.run_id = new_run_id.into();
        next.version = self.manifest.version + 1;
        next.supersedes = Some(ManifestRef {
            run_id: self.manifest.run_id.clone(),
            version: self.manifest.version,
            digest: self.approval.digest.clone(),
        });
        next
    }

    /// The form a store keeps.
    pub fn to_stored(&self) -> StoredManifest {
        StoredManifest::new(&self.manifest, Some(self.approval.clone()))
    }
}

/// A manifest as a store keeps it: canonical JSON text plus the approval, if any.
///
/// Stores keep these bytes as they are; [`verify`](Self::verify) is what every run calls before any
/// work, and refuses content that no longer hashes to the approved digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredManifest {
    /// Run id (duplicated out of the JSON for lookups).
    pub run_id: RunId,
    /// Version (duplicated out of the JSON for lookups).
    pub version: u32,
    /// Digest computed when stored.
    pub digest: ManifestDigest,
    /// Canonical JSON.
    pub json: String,
    /// Approval, if approved.
    pub approval: Option<Approval>,
}

impl StoredManifest {
    /// Stores a draft or approved manifest.
    pub fn new(manifest: &RunManifest, approval: Option<Approval>) -> Self {
        let bytes = canonical_json(manifest);
        Self {
            run_id: manifest.run_id.clone(),
            version: manifest.version,
            digest: ManifestDigest::of_bytes(&bytes),
            json: String::from_utf8_lossy(&bytes).into_owned(),
            approval,
        }
    }

    /// Parses the stored JSON without checking approval.
    pub fn manifest(&self) -> Result<RunManifest> {
        RunManifest::from_json(&self.json)
    }

    /// Re-parses, re-hashes and checks the approval. The only way from storage to an approved manifest.
    ///
    /// The approval is checked by digest alone: the content must hash to the approved digest and
    /// carry the stored run id and version, and the approver must not be the requester (nor other
    /// than the approver the manifest names). Today's [`check`](RunManifest::check) findings are
    /// *not* consulted again: a checklist rule added in a later release must not make a run
    /// approved under the old rules unloadable.
    pub fn verify(&self) -> Result<ApprovedManifest> {
        let manifest = self.manifest()?;
        let actual = manifest.digest();
        let Some(approval) = &self.approval else {
            return Err(Error::NotApproved {
                run_id: self.run_id.clone(),
                version: self.version,
            });
        };
        if actual != approval.digest
            || manifest.run_id != self.run_id
            || manifest.version != self.version
        {
            return Err(Error::Tampered {
                run_id: self.run_id.clone(),
                expected: approval.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        manifest.check_approver(&approval.approved_by)?;
        Ok(ApprovedManifest {
            manifest,
            approval: approval.clone(),
        })
    }
}
