//! Unit tests of the canonical encoding.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde::Serialize;

use super::{encode_into, to_vec, EncodeError};

fn enc<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    to_vec(v).unwrap()
}

/// Asserts that all encodings are pairwise distinct and none is a prefix of another. (Values that
/// are the same serde data-model value, such as `()` and `serde_json::Value::Null`, encode alike
/// by design; the list holds none.)
fn all_distinct(cases: &[(&str, Vec<u8>)]) {
    for (i, (a, x)) in cases.iter().enumerate() {
        for (b, y) in &cases[i + 1..] {
            assert_ne!(x, y, "{a} and {b} encode alike");
            assert!(
                !x.starts_with(y) && !y.starts_with(x),
                "{a} and {b}: one encoding is a prefix of the other"
            );
        }
    }
}

#[derive(Serialize)]
struct Pair<'a> {
    a: &'a str,
    b: &'a str,
}

#[derive(Serialize)]
struct Skipping {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<u8>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Untagged {
    Text(String),
    Number(u64),
    Wrapped(Wrap),
}

#[derive(Serialize)]
struct Wrap(u64);

#[derive(Serialize)]
struct UnitStruct;

#[derive(Serialize)]
enum Shape {
    A,
    B,
    N(u8),
    T(u8, u8),
    S { x: u8 },
}

/// Calls `serialize_bytes`, as `serde_bytes` does.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[test]
fn tricky_values_encode_distinctly() {
    let long = "x".repeat(127);
    let longer = "x".repeat(128);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("None::<f64>", enc(&None::<f64>)),
        ("Some(())", enc(&Some(()))),
        ("Some(None::<u8>)", enc(&Some(None::<u8>))),
        ("Some(NaN)", enc(&Some(f64::NAN))),
        ("NaN", enc(&f64::NAN)),
        ("NaN f32", enc(&f32::NAN)),
        ("0.0", enc(&0.0f64)),
        ("-0.0", enc(&-0.0f64)),
        ("0.0 f32", enc(&0.0f32)),
        ("false", enc(&false)),
        ("true", enc(&true)),
        ("0u8", enc(&0u8)),
        ("0u64", enc(&0u64)),
        ("0i64", enc(&0i64)),
        ("0i128", enc(&0i128)),
        ("0u128", enc(&0u128)),
        ("97u32", enc(&97u32)),
        ("'a'", enc(&'a')),
        ("\"a\"", enc("a")),
        ("bytes a", enc(&Bytes(b"a"))),
        ("\"\"", enc("")),
        ("empty bytes", enc(&Bytes(b""))),
        ("empty seq", enc(&Vec::<u8>::new())),
        ("empty map", enc(&BTreeMap::<u8, u8>::new())),
        ("[\"a\",\"b\"]", enc(&["a", "b"])),
        ("[\"ab\"]", enc(&["ab"])),
        ("[\"a\",\"b\",\"\"]", enc(&["a", "b", ""])),
        ("(\"ab\",\"c\")", enc(&("ab", "c"))),
        ("(\"a\",\"bc\")", enc(&("a", "bc"))),
        ("Pair ab/c", enc(&Pair { a: "ab", b: "c" })),
        ("Pair a/bc", enc(&Pair { a: "a", b: "bc" })),
        ("[[1],[]]", enc(&vec![vec![1u8], vec![]])),
        ("[[],[1]]", enc(&vec![vec![], vec![1u8]])),
        ("[[1]]", enc(&vec![vec![1u8]])),
        (
            "Skipping a=1",
            enc(&Skipping {
                a: Some(1),
                b: None,
            }),
        ),
        (
            "Skipping b=1",
            enc(&Skipping {
                a: None,
                b: Some(1),
            }),
        ),
        ("Skipping none", enc(&Skipping { a: None, b: None })),
        ("Untagged text 5", enc(&Untagged::Text("5".into()))),
        ("Untagged number 5", enc(&Untagged::Number(5))),
        ("Untagged wrapped 5", enc(&Untagged::Wrapped(Wrap(5)))),
        ("unit struct", enc(&UnitStruct)),
        ("Shape::A", enc(&Shape::A)),
        ("Shape::B", enc(&Shape::B)),
        ("Shape::N(1)", enc(&Shape::N(1))),
        ("Shape::T(1,1)", enc(&Shape::T(1, 1))),
        ("Shape::S{x:1}", enc(&Shape::S { x: 1 })),
        ("127 x", enc(&long)),
        ("128 x", enc(&longer)),
        ("json null", enc(&serde_json::Value::Null)),
        ("json 3", enc(&serde_json::json!(3))),
        ("json -1", enc(&serde_json::json!(-1))),
        ("json 0.5", enc(&serde_json::json!(0.5))),
        ("json [null]", enc(&serde_json::json!([null]))),
        ("json {\"a\":null}", enc(&serde_json::json!({"a": null}))),
    ];
    all_distinct(&cases);
}

#[test]
fn nan_is_one_value_and_never_null() {
    let quiet = f64::NAN;
    let negative = -f64::NAN;
    let payload = f64::from_bits(0x7ff0_0000_0000_0001);
    assert!(payload.is_nan());
    assert_eq!(enc(&quiet), enc(&negative));
    assert_eq!(enc(&quiet), enc(&payload));
    assert_eq!(enc(&f32::NAN), enc(&f32::from_bits(0xffc0_0001)));
    assert_ne!(enc(&Some(f64::NAN)), enc(&None::<f64>));
    assert_ne!(enc(&f64::NAN), enc(&()));
    assert_ne!(enc(&f64::NAN), enc(&serde_json::Value::Null));
    // JSON (digest format 1) wrote both as `null`.
    assert_eq!(
        serde_json::to_vec(&f64::NAN).unwrap(),
        serde_json::to_vec(&()).unwrap()
    );
}

#[test]
fn golden_bytes_pin_format_version_2() {
    // Changing any of these bytes changes every digest: bump DIGEST_FORMAT_VERSION with it.
    assert_eq!(crate::digest::DIGEST_FORMAT_VERSION, 2);
    #[derive(Serialize)]
    struct Row {
        id: String,
        n: u64,
        x: Option<f64>,
        tags: Vec<&'static str>,
        kind: Shape,
    }
    let row = Row {
        id: "r1".into(),
        n: 258,
        x: Some(-1.5),
        tags: vec!["a"],
        kind: Shape::N(7),
    };
    let want: Vec<u8> = [
        &[0x1c, 5][..],
        &[2],
        b"id",
        &[0x11, 2],
        b"r1",
        &[1],
        b"n",
        &[0x0c, 2, 1, 0, 0, 0, 0, 0, 0],
        &[1],
        b"x",
        &[0x02, 0x0f],
        &(-1.5f64).to_bits().to_le_bytes(),
        &[4],
        b"tags",
        &[0x17, 1, 0x11, 1],
        b"a",
        &[4],
        b"kind",
        &[0x16, 1],
        b"N",
        &[0x09, 7],
    ]
    .concat();
    assert_eq!(enc(&row), want);
}

#[test]
fn equal_values_encode_equally() {
    let v = (String::from("a"), vec![1u8, 2], Some(-0.0f64), 'z');
    assert_eq!(enc(&v), enc(&v.clone()));
    // `Wrap` and a value collected through `Display` take the same paths every time.
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap();
    assert_eq!(enc(&at), enc(&at));
    assert_eq!(
        enc(&at),
        enc(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    );
}

/// Displays `n` copies of `x`, for `collect_str`.
struct Repeat(usize);

impl std::fmt::Display for Repeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for _ in 0..self.0 {
            f.write_str("x")?;
        }
        Ok(())
    }
}

impl Serialize for Repeat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[test]
fn collect_str_writes_what_serialize_str_writes() {
    for n in [0, 1, 127, 128, 300, 20_000] {
        assert_eq!(enc(&Repeat(n)), enc(&"x".repeat(n)), "{n} characters");
    }
}

/// A sequence that announces a length (or none) and then writes `n` elements.
struct Liar {
    announced: Option<usize>,
    n: u32,
}

impl Serialize for Liar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(self.announced)?;
        for i in 0..self.n {
            seq.serialize_element(&i)?;
        }
        seq.end()
    }
}

/// A struct that announces `announced` fields and writes one.
struct LyingStruct {
    announced: usize,
}

impl Serialize for LyingStruct {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("LyingStruct", self.announced)?;
        st.serialize_field("a", &1u8)?;
        st.end()
    }
}

#[test]
fn counts_are_what_was_written() {
    for n in [0u32, 1, 127, 128, 200, 20_000] {
        let truthful = enc(&(0..n).collect::<Vec<u32>>());
        for announced in [None, Some(0), Some(1), Some(5_000)] {
            assert_eq!(
                enc(&Liar { announced, n }),
                truthful,
                "{announced:?} vs {n}"
            );
        }
    }
    let truthful = enc(&LyingStruct { announced: 1 });
    assert_eq!(enc(&LyingStruct { announced: 0 }), truthful);
    assert_eq!(enc(&LyingStruct { announced: 300 }), truthful);
}

/// A map written with its entries in the given order.
struct Entries(Vec<(String, i64)>);

impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[test]
fn maps_encode_in_one_order() {
    let entries: Vec<(String, i64)> = (0..200).map(|i| (format!("k{i}"), i * 7)).collect();
    let btree: BTreeMap<_, _> = entries.iter().cloned().collect();
    let want = enc(&btree);
    let mut reversed = entries.clone();
    reversed.reverse();
    assert_eq!(enc(&Entries(reversed)), want);
    assert_eq!(enc(&Entries(entries.clone())), want);
    // Fresh hash maps iterate in different orders; the encoding does not change.
    for _ in 0..8 {
        let hash: HashMap<_, _> = entries.iter().cloned().collect();
        assert_eq!(enc(&hash), want);
    }
    // Nested maps with values of different lengths, in a struct.
    #[derive(Serialize)]
    struct Outer {
        inner: HashMap<String, Vec<String>>,
    }
    let inner: HashMap<String, Vec<String>> = (0..50)
        .map(|i| (format!("{i}"), vec!["v".repeat(i); i % 4]))
        .collect();
    let sorted: BTreeMap<_, _> = inner.clone().into_iter().collect();
    #[derive(Serialize)]
    struct OuterSorted {
        inner: BTreeMap<String, Vec<String>>,
    }
    assert_eq!(enc(&Outer { inner }), enc(&OuterSorted { inner: sorted }));
    // A different value under the same key is a different map.
    let mut other = btree.clone();
    other.insert("k5".into(), 0);
    assert_ne!(enc(&other), want);
}

#[test]
fn duplicate_map_keys_are_an_error() {
    let adjacent = Entries(vec![("a".into(), 1), ("a".into(), 2)]);
    assert_eq!(to_vec(&adjacent), Err(EncodeError::DuplicateMapKey));
    let apart = Entries(vec![("b".into(), 1), ("a".into(), 2), ("b".into(), 1)]);
    assert_eq!(to_vec(&apart), Err(EncodeError::DuplicateMapKey));
}

/// Fails to serialize after writing part of itself.
#[derive(Debug, Clone)]
struct Broken;

impl Serialize for Broken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Broken", 2)?;
        st.serialize_field("ok", "written")?;
        Err(serde::ser::Error::custom("no canonical form"))
    }
}

impl crate::digest::OutputRow for Broken {
    fn partition(&self) -> std::borrow::Cow<'_, str> {
        "p".into()
    }
}

struct FailingDisplay;

impl std::fmt::Display for FailingDisplay {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Err(std::fmt::Error)
    }
}

impl Serialize for FailingDisplay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[test]
fn errors_propagate() {
    use crate::digest::{OutputRow, PartitionDigests};
    assert_eq!(
        to_vec(&Broken),
        Err(EncodeError::Custom("no canonical form".into()))
    );
    // Nested deep inside other values, the error still comes out.
    let nested = vec![Some((1u8, vec![Broken]))];
    assert!(matches!(to_vec(&nested), Err(EncodeError::Custom(_))));
    assert_eq!(to_vec(&FailingDisplay), Err(EncodeError::Format));
    let mut out = Vec::new();
    assert!(Broken.encode_canonical(&mut out).is_err());
    // A row that cannot be encoded is never digested.
    let mut digests = PartitionDigests::default();
    let mut scratch = Vec::new();
    assert!(digests.add_row(&Broken, &mut scratch).is_err());
    assert_eq!(digests, PartitionDigests::default());
    assert!(PartitionDigests::try_of_rows([&Broken]).is_err());
    assert!(std::panic::catch_unwind(|| PartitionDigests::of_rows([&Broken])).is_err());
}

#[test]
fn encode_into_appends() {
    let mut out = vec![0xaa];
    encode_into(&1u8, &mut out).unwrap();
    assert_eq!(out, [0xaa, 0x09, 1]);
}

#[derive(Debug, Clone, PartialEq, Serialize)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<Self>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Record {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    cells: Vec<Cell>,
    tags: BTreeMap<String, u8>,
}

fn cell() -> impl Strategy<Value = Cell> {
    let leaf = prop_oneof![
        Just(Cell::Null),
        any::<i64>().prop_map(Cell::Int),
        prop_oneof![Just(f64::NAN), Just(-0.0), Just(0.0), any::<f64>()].prop_map(Cell::Float),
        "[ab]{0,3}".prop_map(Cell::Text),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        proptest::collection::vec(inner, 0..3).prop_map(Cell::List)
    })
}

fn record() -> impl Strategy<Value = Record> {
    (
        "[ab]{0,3}",
        proptest::option::of("[ab]{0,2}"),
        proptest::collection::vec(cell(), 0..3),
        proptest::collection::btree_map("[ab]{0,2}", 0u8..3, 0..3),
    )
        .prop_map(|(id, note, cells, tags)| Record {
            id,
            note,
            cells,
            tags,
        })
}

/// Equality with every NaN equal to every NaN (the encoding's notion of equal floats).
fn same(a: &Record, b: &Record) -> bool {
    fn cell_eq(a: &Cell, b: &Cell) -> bool {
        match (a, b) {
            (Cell::Float(x), Cell::Float(y)) => {
                (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
            }
            (Cell::List(x), Cell::List(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| cell_eq(a, b))
            }
            _ => a == b,
        }
    }
    a.id == b.id
        && a.note == b.note
        && a.tags == b.tags
        && a.cells.len() == b.cells.len()
        && a.cells.iter().zip(&b.cells).all(|(x, y)| cell_eq(x, y))
}

proptest! {
    #[test]
    fn distinct_records_encode_distinctly(a in record(), b in record()) {
        prop_assert_eq!(same(&a, &b), enc(&a) == enc(&b));
    }

    #[test]
    fn encoding_is_a_function(a in record()) {
        prop_assert_eq!(enc(&a), enc(&a.clone()));
    }
}
