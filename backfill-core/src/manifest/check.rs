//! The design checklist, answered from the manifest.

use serde::{Deserialize, Serialize};

use super::{Mutation, RunKind, RunManifest};
use crate::context::ExecutionMode;

pub use crate::finding::{Finding, Severity};

/// All findings of [`RunManifest::check`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    /// Whether any finding blocks approval.
    pub fn has_blocking(&self) -> bool {
        self.0.iter().any(|f| f.severity == Severity::Blocking)
    }

    /// The blocking findings.
    pub fn blocking(&self) -> Vec<Finding> {
        self.0
            .iter()
            .filter(|f| f.severity == Severity::Blocking)
            .cloned()
            .collect()
    }

    /// Whether a finding with this code is present.
    pub fn contains(&self, code: &str) -> bool {
        self.0.iter().any(|f| f.code == code)
    }

    fn push(
        &mut self,
        severity: Severity,
        code: &str,
        question: &str,
        field: &str,
        message: impl Into<String>,
    ) {
        self.0.push(Finding {
            code: code.into(),
            severity,
            question: question.into(),
            field: field.into(),
            message: message.into(),
        });
    }
}

const Q_REASON: &str = "What is the business reason?";
const Q_OUTPUT: &str = "What output is allowed to change?";
const Q_INPUT: &str = "What input range/snapshot is used?";
const Q_WARMUP: &str = "Is input range different from output range?";
const Q_VERSION: &str = "What transform version is used?";
const Q_CONFIG: &str = "What config/reference data version is used?";
const Q_SIDE: &str = "Are side effects forbidden or controlled?";
const Q_GATES: &str = "What validation gates must pass?";
const Q_RECON: &str = "What reconciliation proves completeness?";
const Q_PUBLISH: &str = "What is the publication strategy?";
const Q_CONSUMERS: &str = "What downstream consumers are impacted?";
const Q_PRIVACY: &str = "Is privacy/retention policy satisfied?";
const Q_COST: &str = "Is cost/blast radius bounded?";
const Q_STAGING: &str = "Is output written to staging first?";
const Q_ROLLBACK: &str = "What is rollback/supersession strategy?";
const Q_EVIDENCE: &str = "Is run evidence preserved?";

/// The design checklist's questions (seed §30), in its order. Every finding names the one it
/// answers in [`Finding::question`].
pub const CHECKLIST: [&str; 16] = [
    Q_REASON,
    Q_OUTPUT,
    Q_INPUT,
    Q_WARMUP,
    Q_VERSION,
    Q_CONFIG,
    Q_SIDE,
    Q_STAGING,
    Q_GATES,
    Q_RECON,
    Q_PUBLISH,
    Q_ROLLBACK,
    Q_CONSUMERS,
    Q_PRIVACY,
    Q_COST,
    Q_EVIDENCE,
];

impl RunManifest {
    /// Answers every question of the design checklist that a manifest can answer.
    ///
    /// Blocking: no reason or requester, no input range (or an empty one), no transform name or
    /// version, no target name or mutation, replace-partitions without partitions, no side-effect
    /// policy, no (or an empty) validation plan, a publish range not inside the input range, an
    /// input range older than `privacy.retained_from`, and, when the privacy section says the source
    /// holds personal data, each privacy question left unanswered.
    pub fn check(&self) -> Findings {
        use Severity::{Blocking, Info, Warning};
        let mut f = Findings::default();
        if self.run_id.as_str().trim().is_empty() {
            f.push(
                Blocking,
                "run_id_missing",
                Q_REASON,
                "run_id",
                "run id is empty",
            );
        }
        if self.reason.trim().is_empty() {
            f.push(
                Blocking,
                "reason_missing",
                Q_REASON,
                "reason",
                "no business reason given",
            );
        }
        if self.requested_by.trim().is_empty() {
            f.push(
                Blocking,
                "requester_missing",
                Q_REASON,
                "requested_by",
                "no requester",
            );
        }
        // Input scope.
        match &self.source.range {
            None => f.push(
                Blocking,
                "input_scope_missing",
                Q_INPUT,
                "source.range",
                "no explicit input range",
            ),
            Some(r) if r.is_empty() => f.push(
                Blocking,
                "input_scope_empty",
                Q_INPUT,
                "source.range",
                format!("input range {r} is empty"),
            ),
            Some(_) => {}
        }
        if self.source.name.trim().is_empty() {
            f.push(
                Blocking,
                "source_name_missing",
                Q_INPUT,
                "source.name",
                "no source name",
            );
        }
        if self.source.snapshot.is_none() {
            f.push(
                Warning,
                "snapshot_not_pinned",
                Q_INPUT,
                "source.snapshot",
                "input snapshot not pinned; the source may change under the run",
            );
        }
        // Warm-up / publish range.
        match (&self.source.range, &self.publish_range) {
            (Some(input), Some(publish)) => match input.contains(publish) {
                Some(true) if input != publish => f.push(
                    Info,
                    "warm_up_input",
                    Q_WARMUP,
                    "publish_range",
                    format!("input {input} is wider than publish range {publish}: the extra input is warm-up and is not published"),
                ),
                Some(true) => {}
                Some(false) => f.push(
                    Blocking,
                    "publish_range_outside_input",
                    Q_WARMUP,
                    "publish_range",
                    format!("publish range {publish} is not inside input range {input}"),
                ),
                None => f.push(
                    Blocking,
                    "publish_range_incomparable",
                    Q_WARMUP,
                    "publish_range",
                    format!("publish range {publish} cannot be compared with input range {input}"),
                ),
            },
            (Some(_), None) => f.push(Info, "publish_range_is_input", Q_WARMUP, "publish_range", "no warm-up: output range equals input range"),
            (None, _) => {}
        }
        // Transform.
        if self.transform.name.trim().is_empty() {
            f.push(
                Blocking,
                "transform_name_missing",
                Q_VERSION,
                "transform.name",
                "no transform name",
            );
        }
        if self.transform.version.trim().is_empty() {
            f.push(
                Blocking,
                "transform_version_missing",
                Q_VERSION,
                "transform.version",
                "no transform version",
            );
        } else if !is_semver(&self.transform.version) {
            f.push(
                Warning,
                "transform_version_not_semver",
                Q_VERSION,
                "transform.version",
                format!("`{}` is not MAJOR.MINOR.PATCH", self.transform.version),
            );
        }
        if self.transform.git_commit.is_none() {
            f.push(
                Warning,
                "git_commit_missing",
                Q_VERSION,
                "transform.git_commit",
                "code commit not pinned",
            );
        }
        if self.transform.config_hash.is_none() {
            f.push(
                Warning,
                "config_hash_missing",
                Q_CONFIG,
                "transform.config_hash",
                "configuration not hashed",
            );
        }
        for (i, r) in self.transform.reference_data.iter().enumerate() {
            if r.version.trim().is_empty() {
                f.push(
                    Blocking,
                    "reference_data_unversioned",
                    Q_CONFIG,
                    &format!("transform.reference_data[{i}].version"),
                    format!("reference data `{}` has no version", r.name),
                );
            }
        }
        // Target.
        if self.target.name.trim().is_empty() {
            f.push(
                Blocking,
                "target_name_missing",
                Q_OUTPUT,
                "target.name",
                "no target",
            );
        }
        match &self.target.mutation {
            None => f.push(
                Blocking,
                "target_mutation_missing",
                Q_OUTPUT,
                "target.mutation",
                "no bounded mutation mode",
            ),
            Some(Mutation::ReplacePartitions) if self.target.partitions.is_empty() => f.push(
                Blocking,
                "partitions_missing",
                Q_OUTPUT,
                "target.partitions",
                "replace-partitions without a list of partitions is unbounded",
            ),
            Some(Mutation::MergeByKey {
                key,
                version_column,
                ..
            }) if key.is_empty() || version_column.trim().is_empty() => f.push(
                Blocking,
                "merge_unguarded",
                Q_OUTPUT,
                "target.mutation",
                "merge needs a business key and a version column",
            ),
            Some(Mutation::MergeByKey {
                key,
                version_column,
                delete_column: Some(del),
            }) if del.trim().is_empty() || del == version_column || key.contains(del) => f.push(
                Blocking,
                "merge_delete_column",
                Q_OUTPUT,
                "target.mutation.delete_column",
                "the delete marker must be its own column, neither a key nor the version column",
            ),
            Some(m) => {
                f.push(
                    Info,
                    "publication_strategy",
                    Q_PUBLISH,
                    "target.mutation",
                    format!("publish by {}", m.name()),
                );
                f.push(
                    Info,
                    "rollback_strategy",
                    Q_ROLLBACK,
                    "target.mutation",
                    rollback_strategy(m),
                );
            }
        }
        // Every run stages before anything is visible; the checklist asks it to be said.
        f.push(
            Info,
            "staging_first",
            Q_STAGING,
            "mode",
            match self.mode {
                ExecutionMode::DryRun | ExecutionMode::Reconciliation => {
                    "output is staged and validated, and never published"
                }
                _ => "every chunk is written to run-scoped staging; readers see nothing until the validated run is published",
            },
        );
        f.push(
            Info,
            "evidence_preserved",
            Q_EVIDENCE,
            "run_id",
            "manifest, approval, plan, ledger, transitions, validations and receipts are kept in the run store; `export` writes the bundle, `verify` checks it offline",
        );
        if self.target.consumers.is_empty() {
            f.push(
                Warning,
                "consumers_unknown",
                Q_CONSUMERS,
                "target.consumers",
                "impacted downstream consumers not listed",
            );
        }
        // Mode: live processing is not how history is changed.
        if self.mode == ExecutionMode::Live && self.kind != RunKind::Bootstrap {
            f.push(
                Blocking,
                "live_mode_for_historical_run",
                Q_SIDE,
                "mode",
                format!(
                    "a {:?} run in LIVE mode would write like the live pipeline (live sinks, live side effects); use BACKFILL, REPLAY, DRY_RUN or RECONCILIATION",
                    self.kind
                ),
            );
        }
        // Side effects.
        match &self.safety.side_effects {
            None => f.push(
                Blocking,
                "side_effect_policy_missing",
                Q_SIDE,
                "safety.side_effects",
                "no side-effect policy",
            ),
            Some(p) if p.allowed && p.allowed_sinks.is_empty() => f.push(
                Warning,
                "side_effects_unbounded",
                Q_SIDE,
                "safety.side_effects.allowed_sinks",
                "side effects allowed without naming the sinks",
            ),
            Some(_) => {}
        }
        // Validation.
        match &self.validation {
            None => f.push(
                Blocking,
                "validation_plan_missing",
                Q_GATES,
                "validation",
                "no validation plan",
            ),
            Some(v) if v.is_empty() => f.push(
                Blocking,
                "validation_plan_empty",
                Q_GATES,
                "validation",
                "validation plan has no checks",
            ),
            Some(_) => {}
        }
        match &self.validation {
            Some(v) if v.checksum_required || v.count_tolerance.is_some() => f.push(
                Info,
                "reconciliation",
                Q_RECON,
                "validation",
                match (v.checksum_required, v.count_tolerance) {
                    (true, Some(t)) => format!(
                        "per-partition checksums, and counts within {t} of the accepted output"
                    ),
                    (true, None) => {
                        "per-partition checksums of staged against recorded rows".to_owned()
                    }
                    (false, t) => {
                        format!("counts within {} of the accepted output", t.unwrap_or(0))
                    }
                },
            ),
            _ => f.push(
                Warning,
                "no_reconciliation",
                Q_RECON,
                "validation",
                "neither a count tolerance nor a checksum proves completeness",
            ),
        }
        for (code, message) in self.target.live_writes.problems(self) {
            f.push(Blocking, code, Q_PUBLISH, "target.live_writes", message);
        }
        // Cost and privacy.
        if self.safety.max_cost_usd.is_some()
            && !self.safety.cost_model.as_ref().is_some_and(|c| c.prices())
        {
            f.push(
                Warning,
                "cost_ceiling_unpriced",
                Q_COST,
                "safety.cost_model",
                "a cost ceiling without declared prices holds against nothing: the estimate and the runner cannot price the run",
            );
        }
        if !self.safety.dry_run_chunks.is_empty() && self.mode != ExecutionMode::DryRun {
            f.push(
                Blocking,
                "subset_outside_dry_run",
                Q_PUBLISH,
                "safety.dry_run_chunks",
                format!(
                    "a subset of chunks runs only in dry_run mode (this manifest is {}): a run that may publish runs every chunk",
                    self.mode
                ),
            );
        }
        if self.safety.max_rows_expected.is_none() {
            f.push(
                Warning,
                "max_rows_unbounded",
                Q_COST,
                "safety.max_rows_expected",
                "no row ceiling",
            );
        }
        if self.safety.max_cost_usd.is_none() {
            f.push(
                Warning,
                "max_cost_unbounded",
                Q_COST,
                "safety.max_cost_usd",
                "no cost ceiling",
            );
        }
        // A limit of zero refuses everything: it is never "no limit".
        let l = &self.safety.limits;
        for (field, zero) in [
            (
                "safety.limits.max_chunks_in_parallel",
                l.max_chunks_in_parallel == 0,
            ),
            (
                "safety.limits.max_rows_per_minute",
                l.max_rows_per_minute == Some(0),
            ),
            (
                "safety.limits.max_bytes_per_minute",
                l.max_bytes_per_minute == Some(0),
            ),
            (
                "safety.limits.max_sink_commits_per_hour",
                l.max_sink_commits_per_hour == Some(0),
            ),
            (
                "safety.max_rows_expected",
                self.safety.max_rows_expected == Some(0),
            ),
            ("safety.max_cost_usd", self.safety.max_cost_usd == Some(0)),
        ] {
            if zero {
                f.push(
                    Blocking,
                    "limit_zero",
                    Q_COST,
                    field,
                    "a limit of 0 refuses all work (leave the field out for no limit)",
                );
            }
        }
        match &self.privacy {
            None => f.push(
                Warning,
                "privacy_unanswered",
                Q_PRIVACY,
                "privacy",
                "purpose and retention not stated",
            ),
            Some(p) if p.declares_personal_data() => {
                for field in p.unanswered() {
                    f.push(
                        Blocking,
                        "privacy_question_unanswered",
                        Q_PRIVACY,
                        &format!("privacy.{field}"),
                        format!("the source holds personal data: `privacy.{field}` must be answered before approval"),
                    );
                }
            }
            Some(p) if !p.retention_checked || !p.erasure_checked => f.push(
                Warning,
                "privacy_unchecked",
                Q_PRIVACY,
                "privacy",
                "retention or erasure not checked",
            ),
            Some(_) => {}
        }
        if let Some(finding) = self.retention_finding() {
            f.0.push(finding);
        }
        f
    }

    /// A blocking finding when the input range starts before `privacy.retained_from`, the oldest
    /// input the retention policy still allows processing.
    fn retention_finding(&self) -> Option<Finding> {
        let from = self.privacy.as_ref()?.retained_from?;
        let range = self.source.range.as_ref()?;
        let starts = match range {
            super::InputRange::Dates { from, .. } => *from,
            super::InputRange::Timestamps { from, .. } => from.date_naive(),
            // Offsets and keys carry no date: the source's policy checks them when it plans.
            _ => return None,
        };
        (starts < from).then(|| Finding {
            code: "privacy_retention_exceeded".into(),
            severity: Severity::Blocking,
            question: Q_PRIVACY.into(),
            field: "source.range".into(),
            message: format!(
                "input range {range} starts before {from}, the oldest input the retention policy allows (privacy.retained_from)"
            ),
        })
    }
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<_> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// How a publication by `m` is undone or superseded.
fn rollback_strategy(m: &Mutation) -> &'static str {
    match m {
        Mutation::ReplacePartitions => "rollback restores the replaced partitions from the archive kept at publish; a later run supersedes by replacing them again",
        Mutation::MergeByKey { .. } => "rollback restores the rows the merge overwrote or deleted, recorded per key at publish; a later run supersedes by merging a newer version",
        Mutation::AppendWithRunId => "rollback moves the accepted pointer (the view readers use) back to the previous run; rows stay, tagged with their run",
        Mutation::ShadowSwap => "rollback swaps the pointer back to the previous shadow table",
        Mutation::VersionedOutput => "rollback points the current view back at the previous version; every version stays readable",
        Mutation::CorrectionEvents => "published events cannot be taken back (rollback is refused): supersede by restating again, whose corrections correct these; re-publishing is idempotent per key",
    }
}
