//! Names of the topics the adapter creates.

use sha2::{Digest, Sha256};

/// A legal topic name (`[a-zA-Z0-9._-]`, at most 249 characters) for `name`: unchanged when it
/// is legal, otherwise its illegal characters replaced and a short hash of the original appended
/// so two different names never meet.
pub(crate) fn legal(name: &str) -> String {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.is_empty() && name.len() <= 200 && name.chars().all(ok) {
        return name.to_owned();
    }
    let clean: String = name
        .chars()
        .map(|c| if ok(c) { c } else { '_' })
        .take(180)
        .collect();
    let h = hex::encode(&Sha256::digest(name.as_bytes())[..6]);
    format!("{clean}-{h}")
}

/// The run-scoped staging topic of a run.
pub(crate) fn staging(prefix: &str, run: &str) -> String {
    legal(&format!("{prefix}{run}"))
}

/// The attempt ledger beside a staging topic.
pub(crate) fn attempts(staging: &str) -> String {
    legal(&format!("{staging}.attempts"))
}

/// The publication log beside a target topic.
pub(crate) fn publications(target: &str) -> String {
    legal(&format!("{target}.publications"))
}

/// A transactional id for one chunk of one run.
pub(crate) fn chunk_txid(staging: &str, chunk: &str) -> String {
    format!("backfill.stage.{staging}.{chunk}")
}

/// The transactional id of a target's publisher (one writer per target at a time).
pub(crate) fn publish_txid(target: &str) -> String {
    format!("backfill.publish.{target}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_names_pass_and_others_are_made_legal_and_distinct() {
        assert_eq!(legal("bf-2026.run_1"), "bf-2026.run_1");
        let a = legal("run/1");
        let b = legal("run:1");
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        assert!(legal(&"x".repeat(400)).len() <= 249);
    }
}
