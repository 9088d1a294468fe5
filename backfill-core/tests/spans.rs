//! Tracing spans carry the run's context. A test binary of its own (not a module of
//! `tests/integration`): tracing caches a callsite's interest globally, and a test running at the
//! same time with no subscriber could hide the spans.

#![allow(clippy::clone_on_ref_ptr)]

#[path = "integration/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Records the fields of every `backfill.chunk` span.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _cx: Context<'_, S>,
    ) {
        if attrs.metadata().name() == "backfill.chunk" {
            let mut fields = BTreeMap::new();
            attrs.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
}

#[test]
fn chunk_spans_carry_run_context() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    tracing::subscriber::with_default(subscriber, || rt().block_on(run_one("bf-trace")));
    let spans = spans.0.lock().unwrap();
    assert_eq!(spans.len(), 3);
    for s in spans.iter() {
        assert_eq!(s["run_id"], "bf-trace");
        assert_eq!(s["transform_version"], "1.0.0");
        assert_eq!(s["target"], "amounts_daily");
        assert_eq!(s["processing_mode"], "BACKFILL");
        assert!(s["chunk_id"].starts_with("0000"), "{}", s["chunk_id"]);
        assert!(
            s["source_range"].starts_with("dates[2025-"),
            "{}",
            s["source_range"]
        );
    }
}
