//! The determinism harness: does a transform give the same output for the same input and context?
//!
//! [`check_transform`] runs a transform on generated input lists and compares, for each list:
//!
//! | property | compared runs | compared as |
//! |---|---|---|
//! | [`Property::ReRun`] | a first and a second run over the same list | rows, in order |
//! | [`Property::ReChunk`] | the first run and a run over the list reordered and split into other batches | multisets, through partition digests |
//! | [`Property::WallClock`] | the first run and a run whose context clock reads another instant at every call | rows, in order |
//! | [`Property::Fingerprint`] | two calls of `fingerprint` (and two instances, with [`check_transform_fresh`]) | equality |
//!
//! Proptest shrinks a failure to a minimal input list; the [`DeterminismFailure`] names the property,
//! the minimal list and, where the runs can be compared record by record, the first record whose rows
//! differ.
//!
//! [`check_transform`] uses one transform instance for every run, as one process does when it retries.
//! [`check_transform_fresh`] builds a new instance for every run and for every batch of the re-chunked
//! run, as a process restarted at a chunk boundary does when it resumes: use it to catch state carried
//! from one record to the next (running totals, caches) that a re-chunked or resumed run cannot rebuild.
//!
//! # Contract
//! The inputs the strategy generates must be valid: a transform error on any of them is reported as
//! [`Property::Error`]. The context should be fixed ([`TransformContext::fixed`] or
//! [`TransformContext::for_manifest`]); the harness replaces only its clock.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use backfill_core::context::{Clock, TransformContext};
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::transform::DeterministicTransform;
use chrono::{DateTime, Utc};
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// Which determinism property failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    /// The same inputs twice gave different outputs (clock, randomness, global state, hash-map order).
    ReRun,
    /// Re-batched, reordered inputs gave a different multiset of outputs (state across records,
    /// order-dependent float sums).
    ReChunk,
    /// A different wall clock changed the output (the transform reads the clock, not the run start).
    WallClock,
    /// The fingerprint changed between calls or instances.
    Fingerprint,
    /// The transform failed on an input.
    Error,
}

impl Property {
    const ALL: [Self; 5] = [
        Self::ReRun,
        Self::ReChunk,
        Self::WallClock,
        Self::Fingerprint,
        Self::Error,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::ReRun => "ReRun",
            Self::ReChunk => "ReChunk",
            Self::WallClock => "WallClock",
            Self::Fingerprint => "Fingerprint",
            Self::Error => "Error",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A determinism failure with the minimal input that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeterminismFailure {
    /// The transform's name.
    pub transform: String,
    /// The property broken.
    pub property: Property,
    /// `Debug` form of the minimal failing input list (`(none)` when no input is involved).
    pub input: String,
    /// `Debug` form of the first record whose rows differ, when the runs compare record by record.
    pub record: Option<String>,
    /// What differed.
    pub details: String,
}

impl fmt::Display for DeterminismFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transform `{}`: {} determinism broken: {}",
            self.transform, self.property, self.details
        )?;
        if let Some(r) = &self.record {
            write!(f, "; first differing record: {r}")?;
        }
        write!(f, "; minimal input: {}", self.input)
    }
}

impl std::error::Error for DeterminismFailure {}

/// A clock that moves: every call reads an instant one hour and one second later than the last.
#[derive(Debug)]
struct Moving(AtomicI64);

impl Clock for Moving {
    fn now(&self) -> DateTime<Utc> {
        let s = self.0.fetch_add(3_601, Ordering::SeqCst);
        DateTime::from_timestamp(s, 0).unwrap_or_default()
    }
}

/// A transform for one run: the shared instance or a fresh one.
enum Instance<'a, T> {
    Shared(&'a T),
    Fresh(T),
}

impl<T> Deref for Instance<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Self::Shared(t) => t,
            Self::Fresh(t) => t,
        }
    }
}

/// Canonical encodings of the rows of each input record, in order.
type PerRecord = Vec<Vec<Vec<u8>>>;

fn run<T: DeterministicTransform>(
    t: &T,
    inputs: &[T::Input],
    ctx: &TransformContext,
) -> Result<(PerRecord, Vec<T::Output>), String> {
    let (mut per, mut all) = (Vec::with_capacity(inputs.len()), Vec::new());
    let mut out = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        out.clear();
        t.apply(input, ctx, &mut out)
            .map_err(|e| format!("record {i}: {e}"))?;
        let encoded = out
            .iter()
            .map(|r| {
                let mut b = Vec::new();
                r.encode_canonical(&mut b).map(|()| b)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("record {i}: output has no canonical encoding: {e}"))?;
        per.push(encoded);
        all.append(&mut out);
    }
    Ok((per, all))
}

/// Re-runs the minimal input up to [`RERUNS`] times; the first differing record and the re-run number.
fn rerun_differs<'a, T: DeterministicTransform>(
    instance: &impl Fn() -> Instance<'a, T>,
    list: &[T::Input],
    ctx: &TransformContext,
) -> Option<(usize, usize)> {
    let (first, _) = run(&*instance(), list, ctx).ok()?;
    (1..=RERUNS).find_map(|n| {
        let (again, _) = run(&*instance(), list, ctx).ok()?;
        first_difference(&first, &again).map(|i| (i, n))
    })
}

/// Re-runs of a minimal failing input when classifying the failure.
const RERUNS: usize = 16;

fn first_difference(a: &PerRecord, b: &PerRecord) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Checks re-run, re-chunk, wall-clock and fingerprint determinism of `transform` over input lists
/// drawn from `inputs`, in context `ctx` (use a fixed clock), with one shared instance. Pass
/// `ProptestConfig::default()` to respect `PROPTEST_CASES`.
///
/// ```
/// # use std::borrow::Cow;
/// # use backfill_core::prelude::*;
/// # #[derive(Debug, Clone, serde::Serialize)] struct Out { id: String, v: i64 }
/// # impl OutputRow for Out { fn partition(&self) -> Cow<'_, str> { Cow::Borrowed("all") } }
/// # #[derive(Debug)] struct Double;
/// # impl DeterministicTransform for Double {
/// #     type Input = i64; type Output = Out;
/// #     fn name(&self) -> &str { "double" } fn version(&self) -> &str { "1.0.0" }
/// #     fn apply(&self, i: &i64, ctx: &TransformContext, out: &mut Vec<Out>) -> Result<(), TransformError> {
/// #         out.push(Out { id: ctx.output_id(&[&i.to_string()]), v: i * 2 }); Ok(())
/// #     }
/// # }
/// use proptest::prelude::*;
/// let at = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
/// let ctx = TransformContext::fixed("bf-test", ExecutionMode::Backfill, at);
/// let inputs = proptest::collection::vec(any::<i32>().prop_map(i64::from), 0..50);
/// backfill_testkit::determinism::check_transform(&Double, inputs, &ctx, ProptestConfig::with_cases(32)).unwrap();
/// ```
pub fn check_transform<T, S>(
    transform: &T,
    inputs: S,
    ctx: &TransformContext,
    config: Config,
) -> Result<(), DeterminismFailure>
where
    T: DeterministicTransform,
    T::Input: fmt::Debug + Clone,
    S: Strategy<Value = Vec<T::Input>>,
{
    check(|| Instance::Shared(transform), inputs, ctx, config)
}

/// Like [`check_transform`], but every run, and every batch of the re-chunked run, gets a new instance
/// from `make`, as after a restart. Catches state carried across records; also checks that two
/// instances have the same fingerprint.
pub fn check_transform_fresh<T, S>(
    make: impl Fn() -> T,
    inputs: S,
    ctx: &TransformContext,
    config: Config,
) -> Result<(), DeterminismFailure>
where
    T: DeterministicTransform,
    T::Input: fmt::Debug + Clone,
    S: Strategy<Value = Vec<T::Input>>,
{
    check(|| Instance::Fresh(make()), inputs, ctx, config)
}

fn check<'a, T, S>(
    instance: impl Fn() -> Instance<'a, T>,
    inputs: S,
    ctx: &TransformContext,
    config: Config,
) -> Result<(), DeterminismFailure>
where
    T: DeterministicTransform,
    T::Input: fmt::Debug + Clone,
    S: Strategy<Value = Vec<T::Input>>,
{
    let first = instance();
    let name = first.name().to_owned();
    let failure = |property, input: String, record, details: String| DeterminismFailure {
        transform: name.clone(),
        property,
        input,
        record,
        details,
    };
    let fp = first.fingerprint();
    let (again, other) = (first.fingerprint(), instance().fingerprint());
    if again != fp || other != fp {
        return Err(failure(
            Property::Fingerprint,
            "(none)".into(),
            None,
            format!("fingerprints differ: {fp:?} / {again:?} / {other:?}"),
        ));
    }
    drop(first);
    let moved = ctx
        .clone()
        .with_clock(Arc::new(Moving(AtomicI64::new(2_000_000_000))));
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..config
    });
    // The failing record travels in the message: `Property|record index or -|details`.
    let fail = |p: Property, record: Option<usize>, d: String| {
        let r = record.map_or_else(|| "-".to_owned(), |i| i.to_string());
        TestCaseError::fail(format!("{p}|{r}|{d}"))
    };
    let error = |e: String| fail(Property::Error, None, e);
    let result = runner.run(&(inputs, proptest::num::usize::ANY), |(list, seed)| {
        let (per1, rows1) = run(&*instance(), &list, ctx).map_err(error)?;
        let (per2, _) = run(&*instance(), &list, ctx).map_err(error)?;
        if let Some(i) = first_difference(&per1, &per2) {
            return Err(fail(
                Property::ReRun,
                Some(i),
                "a second run over the same inputs gave different rows".into(),
            ));
        }
        // Other batches, other order: the same multiset of rows.
        let mut reordered = list.clone();
        if !reordered.is_empty() {
            let k = seed % reordered.len();
            reordered.rotate_left(k);
            reordered.reverse();
        }
        let mut rechunked = Vec::new();
        for batch in reordered.chunks(1 + seed % 7) {
            rechunked.extend(run(&*instance(), batch, ctx).map_err(error)?.1);
        }
        let (want, got) = (
            PartitionDigests::of_rows(&rows1),
            PartitionDigests::of_rows(&rechunked),
        );
        if want != got {
            return Err(fail(
                Property::ReChunk,
                None,
                format!(
                    "re-batched (batches of {}), reordered inputs gave a different multiset of rows: {} rows vs {} in order",
                    1 + seed % 7,
                    got.total_rows(),
                    want.total_rows()
                ),
            ));
        }
        let (per3, _) = run(&*instance(), &list, &moved).map_err(error)?;
        if let Some(i) = first_difference(&per1, &per3) {
            return Err(fail(
                Property::WallClock,
                Some(i),
                "output changed when the context clock moved".into(),
            ));
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, (list, _))) => {
            let reason = reason.to_string();
            let mut parts = reason.splitn(3, '|');
            let (p, r, d) = (parts.next(), parts.next(), parts.next());
            let property = Property::ALL
                .into_iter()
                .find(|x| Some(x.name()) == p)
                .unwrap_or(Property::Error);
            let record = r
                .and_then(|r| r.parse::<usize>().ok())
                .and_then(|i| list.get(i))
                .map(|x| format!("{x:?}"));
            let details = d.unwrap_or(reason.as_str()).to_owned();
            // A transform that differs between identical runs (hash-map order, randomness) may have
            // shown it first on another comparison; say so when re-runs of the minimal input differ.
            if matches!(property, Property::ReChunk | Property::WallClock) {
                if let Some((i, n)) = rerun_differs(&instance, &list, ctx) {
                    return Err(failure(
                        Property::ReRun,
                        format!("{list:?}"),
                        list.get(i).map(|x| format!("{x:?}")),
                        format!(
                            "re-run {n} of the same inputs gave different rows (first seen as {property}: {details})"
                        ),
                    ));
                }
            }
            Err(failure(property, format!("{list:?}"), record, details))
        }
        Err(TestError::Abort(reason)) => Err(failure(
            Property::Error,
            "(none)".into(),
            None,
            format!("proptest aborted: {reason}"),
        )),
    }
}
