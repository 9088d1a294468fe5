//! The crate's module graph: the error type depends on nothing in the domain, so no module that
//! returns errors can sit in an import circle with it.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module file a `crate::a::b::…` path names: the deepest existing `a/b.rs` or `a/b/mod.rs`.
fn resolve(path: &[&str]) -> Option<PathBuf> {
    for n in (1..=path.len()).rev() {
        let rel = path[..n].join("/");
        for candidate in [format!("{rel}.rs"), format!("{rel}/mod.rs")] {
            let file = src().join(&candidate);
            if file.is_file() {
                return Some(file);
            }
        }
    }
    None
}

/// The module files a source file imports with `use crate::…` or names as `crate::…::`.
fn imports(file: &Path) -> BTreeSet<PathBuf> {
    let full = std::fs::read_to_string(file).expect("readable source file");
    // Code only: doc comments may link anywhere, and unit tests are not part of the graph.
    let code = full.split("#[cfg(test)]").next().unwrap_or_default();
    let text: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if rest.starts_with('{') {
            // `use crate::{a::B, c::D}`: each item.
            let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
            for item in group.split(',') {
                let segs: Vec<&str> = item.trim().split("::").collect();
                if let Some(f) = resolve(&segs) {
                    out.insert(f);
                }
            }
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let segs: Vec<&str> = rest[..end].split("::").filter(|s| !s.is_empty()).collect();
        if let Some(f) = resolve(&segs) {
            out.insert(f);
        }
    }
    out.remove(file);
    out
}

#[test]
fn the_error_type_depends_on_nothing_in_the_domain() {
    let error = src().join("error.rs");
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<PathBuf> = imports(&error).into_iter().collect();
    while let Some(f) = queue.pop_front() {
        assert_ne!(
            f, error,
            "error.rs reaches itself through its imports: an import circle"
        );
        if seen.insert(f.clone()) {
            queue.extend(imports(&f));
        }
    }
    let allowed: BTreeSet<PathBuf> = [
        "ids.rs",
        "state.rs",
        "mode.rs",
        "finding.rs",
        "transform/error.rs",
        "encode/mod.rs",
    ]
    .iter()
    .map(|f| src().join(f))
    .collect();
    let extra: Vec<_> = seen.difference(&allowed).collect();
    assert!(
        extra.is_empty(),
        "error.rs depends on domain modules: {extra:?}"
    );
}
