//! The determinism harness passes correct transforms and catches each kind of broken one.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use backfill_core::prelude::*;
use backfill_testkit::determinism::{check_transform, check_transform_fresh, Property};
use backfill_testkit::strategy::{self, Keyed};
use chrono::NaiveDate;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

#[derive(Debug, Clone, serde::Serialize)]
struct Out {
    id: String,
    month: String,
    key: String,
    value: i64,
    note: String,
}

impl OutputRow for Out {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

fn out(ctx: &TransformContext, r: &Keyed<i64>, value: i64, note: String) -> Out {
    Out {
        id: ctx.output_id(&[&r.key, &r.day.to_string()]),
        month: r.month(),
        key: r.key.clone(),
        value,
        note,
    }
}

fn ctx() -> TransformContext {
    let at = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
    TransformContext::fixed("bf-det", ExecutionMode::Backfill, at)
}

fn inputs() -> BoxedStrategy<Vec<Keyed<i64>>> {
    let q1 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    strategy::keyed(6, q1, 90, -10_000i64..10_000, 1..30).boxed()
}

fn cfg() -> ProptestConfig {
    ProptestConfig::with_cases(32)
}

/// Defines a transform over `Keyed<i64>` with a body `|self, r, ctx| -> Vec<Out>`.
macro_rules! transform {
    ($name:ident $({ $($field:ident : $ty:ty),* })?, |$s:ident, $r:ident, $c:ident| $body:expr) => {
        #[derive(Debug, Default)]
        struct $name { $($($field: $ty),*)? }
        impl DeterministicTransform for $name {
            type Input = Keyed<i64>;
            type Output = Out;
            fn name(&self) -> &str { stringify!($name) }
            fn version(&self) -> &str { "1.0.0" }
            fn apply(&self, $r: &Keyed<i64>, $c: &TransformContext, out: &mut Vec<Out>) -> Result<(), TransformError> {
                let $s = self;
                let _ = $s;
                out.extend($body);
                Ok(())
            }
        }
    };
}

transform!(Correct, |s, r, ctx| [out(
    ctx,
    r,
    r.value * 100,
    String::new()
)]);

transform!(ReadsContextClock, |s, r, ctx| [out(
    ctx,
    r,
    r.value,
    ctx.clock().now().to_rfc3339()
)]);

transform!(CallsUtcNow, |s, r, ctx| [out(
    ctx,
    r,
    r.value,
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
)]);

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

transform!(RandomIds, |s, r, ctx| {
    let mut o = out(ctx, r, r.value, String::new());
    o.id = format!("row-{}", NEXT_ID.fetch_add(1, Ordering::SeqCst));
    [o]
});

transform!(RunningFloatSum { total: Mutex<f64> }, |s, r, ctx| {
    // Sums floats in input order across records: the total depends on what came before.
    let mut t = s.total.lock().unwrap();
    *t += r.value as f64 * 0.1;
    [out(ctx, r, r.value, format!("{:.6}", *t))]
});

#[test]
fn a_correct_transform_passes_with_shared_and_fresh_instances() {
    check_transform(&Correct::default(), inputs(), &ctx(), cfg()).unwrap();
    check_transform_fresh(Correct::default, inputs(), &ctx(), cfg()).unwrap();
}

#[test]
fn reading_the_context_clock_is_caught_by_the_wall_clock_property() {
    let f = check_transform(&ReadsContextClock::default(), inputs(), &ctx(), cfg()).unwrap_err();
    assert_eq!(f.property, Property::WallClock, "{f}");
    assert_eq!(f.transform, "ReadsContextClock");
}

#[test]
fn calling_utc_now_is_caught_by_re_running() {
    let f = check_transform(&CallsUtcNow::default(), inputs(), &ctx(), cfg()).unwrap_err();
    assert_eq!(f.property, Property::ReRun, "{f}");
}

#[test]
fn random_ids_are_caught_with_a_minimal_input_that_names_the_record() {
    let f = check_transform(&RandomIds::default(), inputs(), &ctx(), cfg()).unwrap_err();
    assert_eq!(f.property, Property::ReRun, "{f}");
    // Shrunk to one record, which the failure names.
    assert_eq!(f.input.matches("Keyed").count(), 1, "{f}");
    let record = f.record.clone().expect("the failing record is named");
    assert!(record.starts_with("Keyed {"), "{f}");
    assert!(f.to_string().contains("minimal input"), "{f}");
}

#[test]
fn a_float_running_total_is_caught_on_re_run_and_on_re_chunking() {
    let shared = RunningFloatSum::default();
    let f = check_transform(&shared, inputs(), &ctx(), cfg()).unwrap_err();
    assert_eq!(f.property, Property::ReRun, "{f}");
    // With a fresh instance per run, re-runs agree; reordered, re-chunked input does not.
    let f = check_transform_fresh(RunningFloatSum::default, inputs(), &ctx(), cfg()).unwrap_err();
    assert_eq!(f.property, Property::ReChunk, "{f}");
}

/// An order of lines: (product, quantity).
type Order = Vec<(String, i64)>;

#[derive(Debug, Clone, serde::Serialize)]
struct Line {
    id: String,
    product: String,
    position: usize,
    quantity: i64,
}

impl OutputRow for Line {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed("all")
    }
}

/// Groups an order's lines by product and numbers the groups: in `HashMap` order (broken) or sorted.
#[derive(Debug)]
struct GroupLines {
    sorted: bool,
}

impl DeterministicTransform for GroupLines {
    type Input = Order;
    type Output = Line;
    fn name(&self) -> &str {
        "group_lines"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        order: &Order,
        ctx: &TransformContext,
        out: &mut Vec<Line>,
    ) -> Result<(), TransformError> {
        let groups: Vec<(String, i64)> = if self.sorted {
            let mut m = BTreeMap::new();
            for (p, q) in order {
                *m.entry(p.clone()).or_insert(0) += q;
            }
            m.into_iter().collect()
        } else {
            let mut m = HashMap::new();
            for (p, q) in order {
                *m.entry(p.clone()).or_insert(0) += q;
            }
            m.into_iter().collect()
        };
        for (position, (product, quantity)) in groups.into_iter().enumerate() {
            out.push(Line {
                id: ctx.output_id(&[&product, &format!("{order:?}")]),
                product,
                position,
                quantity,
            });
        }
        Ok(())
    }
}

fn orders() -> BoxedStrategy<Vec<Order>> {
    let line = ("[a-h]", 1i64..5);
    proptest::collection::vec(proptest::collection::vec(line, 4..12), 1..6).boxed()
}

#[test]
fn hash_map_iteration_order_is_caught_and_sorted_groups_pass() {
    let f = check_transform(&GroupLines { sorted: false }, orders(), &ctx(), cfg()).unwrap_err();
    assert_eq!(f.property, Property::ReRun, "{f}");
    check_transform(&GroupLines { sorted: true }, orders(), &ctx(), cfg()).unwrap();
}

/// A fingerprint over a configuration that changes at every call.
#[derive(Debug, Default)]
struct DriftingConfig(AtomicU64);

impl DeterministicTransform for DriftingConfig {
    type Input = Keyed<i64>;
    type Output = Out;
    fn name(&self) -> &str {
        "drifting"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn canonical_config(&self) -> Vec<u8> {
        self.0.fetch_add(1, Ordering::SeqCst).to_be_bytes().to_vec()
    }
    fn apply(
        &self,
        r: &Keyed<i64>,
        ctx: &TransformContext,
        o: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        o.push(out(ctx, r, r.value, String::new()));
        Ok(())
    }
}

#[test]
fn an_unstable_fingerprint_is_caught() {
    let f = check_transform(&DriftingConfig::default(), inputs(), &ctx(), cfg()).unwrap_err();
    assert_eq!(f.property, Property::Fingerprint, "{f}");
}

transform!(FailsOnNegative, |s, r, ctx| {
    if r.value < 0 {
        Vec::new()
    } else {
        vec![out(ctx, r, r.value, String::new())]
    }
});

#[test]
fn a_transform_error_is_reported_with_the_minimal_input() {
    #[derive(Debug)]
    struct Refuses;
    impl DeterministicTransform for Refuses {
        type Input = i64;
        type Output = Out;
        fn name(&self) -> &str {
            "refuses"
        }
        fn version(&self) -> &str {
            "1.0.0"
        }
        fn apply(
            &self,
            i: &i64,
            _: &TransformContext,
            _: &mut Vec<Out>,
        ) -> Result<(), TransformError> {
            if *i >= 100 {
                return Err(TransformError::new("too large").for_input(i.to_string()));
            }
            Ok(())
        }
    }
    let f = check_transform(
        &Refuses,
        proptest::collection::vec(0i64..1_000, 0..20),
        &ctx(),
        cfg(),
    )
    .unwrap_err();
    assert_eq!(f.property, Property::Error, "{f}");
    assert_eq!(f.input, "[100]", "{f}");
    // Dropping rows by value is deterministic.
    check_transform(&FailsOnNegative::default(), inputs(), &ctx(), cfg()).unwrap();
}
