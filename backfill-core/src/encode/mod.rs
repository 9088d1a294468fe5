//! The canonical binary encoding of output rows: what [`PartitionDigest`](crate::digest::PartitionDigest)
//! hashes by default.
//!
//! A small [`serde::Serializer`] that writes any `Serialize` value as compact, deterministic,
//! self-describing bytes. It is the default of
//! [`OutputRow::encode_canonical`](crate::digest::OutputRow::encode_canonical) from digest format
//! version 2 ([`DIGEST_FORMAT_VERSION`](crate::digest::DIGEST_FORMAT_VERSION)); version 1 hashed compact
//! `serde_json`. Ledgers record the version next to every digest, since digests of the two versions
//! never compare equal.
//!
//! # Format (digest format version 2)
//! Every value of the serde data model starts with one **tag byte** naming its kind, followed by its
//! payload. Integers are fixed-width little-endian; *lengths and counts* are unsigned LEB128 varints in
//! their shortest form (one byte below 128). A *name* (struct field, enum variant) is a varint byte
//! length and the UTF-8 bytes, without a tag.
//!
//! | tag | value | payload |
//! |---|---|---|
//! | `0x00` | unit `()` | — |
//! | `0x01` | `None` | — |
//! | `0x02` | `Some(v)` | `v` |
//! | `0x03` | bool | one byte, `0x00` or `0x01` |
//! | `0x04`–`0x08` | `i8`, `i16`, `i32`, `i64`, `i128` | 1, 2, 4, 8, 16 bytes two's complement LE |
//! | `0x09`–`0x0d` | `u8`, `u16`, `u32`, `u64`, `u128` | 1, 2, 4, 8, 16 bytes LE |
//! | `0x0e` | `f32` | IEEE 754 bits, 4 bytes LE; every NaN as `0x7fc0_0000` |
//! | `0x0f` | `f64` | IEEE 754 bits, 8 bytes LE; every NaN as `0x7ff8_0000_0000_0000` |
//! | `0x10` | `char` | scalar value as `u32` LE |
//! | `0x11` | string | varint length, UTF-8 bytes |
//! | `0x12` | bytes | varint length, bytes |
//! | `0x13` | unit struct | — (the type name is not written) |
//! | `0x14` | unit variant | variant name |
//! | `0x15` | newtype struct | the inner value |
//! | `0x16` | newtype variant | variant name, the inner value |
//! | `0x17` | sequence | varint count, the elements |
//! | `0x18` | tuple | varint count, the elements |
//! | `0x19` | tuple struct | varint count, the fields |
//! | `0x1a` | tuple variant | variant name, varint count, the fields |
//! | `0x1b` | map | varint count, then key, value, key, value… **sorted by the keys' encoded bytes** |
//! | `0x1c` | struct | varint count, then name, value for each field written |
//! | `0x1d` | struct variant | variant name, varint count, then name, value for each field written |
//!
//! # Why it is canonical
//! * **Prefix-free.** Every value says where it ends (fixed widths, lengths, counts), so a sequence of
//!   values decodes in exactly one way: `("ab", "c")` and `("a", "bc")` differ, and no value is a prefix
//!   of another.
//! * **Self-describing.** Distinct values of the serde data model encode differently even when a type
//!   picks its shape at run time (untagged enums, `serde_json::Value`, `skip_serializing_if`): `None`,
//!   unit, `0`, `0.0`, `false`, `""` and an empty sequence all differ, and a NaN is never a null.
//! * **Names, not positions, for fields and variants** (as JSON had): a field skipped by
//!   `skip_serializing_if` cannot shift another field's value into its place, and reordering enum
//!   variants does not change digests. Renaming a published field or variant does, as it should.
//! * **Floats by bits.** `-0.0` and `0.0` stay distinct (they print differently); all NaNs are one value.
//! * **Maps in one order.** Entries are sorted by the bytes of their encoded keys, so a `HashMap` encodes
//!   like the `BTreeMap` with the same entries. Two entries with equal keys are an error
//!   ([`EncodeError::DuplicateMapKey`]).
//! * **Counts are what was written.** A `Serialize` impl that announces a wrong length (or none, as
//!   for an iterator) gets the count of elements it actually wrote.
//! * **Errors propagate.** A value that cannot be encoded (a `Serialize` impl returning an error, a
//!   failing `Display` in `collect_str`) is an [`EncodeError`], never a silently shortened encoding.
//!
//! [`Serializer::is_human_readable`](serde::Serializer::is_human_readable) is `false`: types with a compact form use it (for example a UUID
//! writes 16 bytes). Struct and enum type names are not written.
//!
//! ```
//! use backfill_core::encode::to_vec;
//! #[derive(serde::Serialize)]
//! struct Row<'a> { id: &'a str, cents: i64 }
//! let bytes = to_vec(&Row { id: "a", cents: 1 })?;
//! assert_eq!(
//!     bytes,
//!     [&[0x1c, 2, 2][..], b"id", &[0x11, 1], b"a", &[5], b"cents", &[0x07, 1, 0, 0, 0, 0, 0, 0, 0]].concat()
//! );
//! # Ok::<(), backfill_core::encode::EncodeError>(())
//! ```

use std::cmp::Ordering;
use std::fmt;

use serde::ser::{self, Serialize};

/// Why a value could not be encoded. The partial output must be discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The value's `Serialize` implementation reported an error.
    #[error("cannot encode row canonically: {0}")]
    Custom(String),
    /// A map had two entries whose keys encode to the same bytes.
    #[error("cannot encode row canonically: a map has two entries with the same key")]
    DuplicateMapKey,
    /// A `Display` implementation failed while a value was written with `collect_str`.
    #[error("cannot encode row canonically: formatting a value as a string failed")]
    Format,
}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Custom(msg.to_string())
    }
}

/// Appends the canonical encoding of `value` to `out`.
///
/// On error `out` holds a partial encoding after its original contents; discard it.
#[inline]
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    value.serialize(&mut Encoder { out })
}

/// The canonical encoding of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

mod tag {
    pub(super) const UNIT: u8 = 0x00;
    pub(super) const NONE: u8 = 0x01;
    pub(super) const SOME: u8 = 0x02;
    pub(super) const BOOL: u8 = 0x03;
    pub(super) const I8: u8 = 0x04;
    pub(super) const I16: u8 = 0x05;
    pub(super) const I32: u8 = 0x06;
    pub(super) const I64: u8 = 0x07;
    pub(super) const I128: u8 = 0x08;
    pub(super) const U8: u8 = 0x09;
    pub(super) const U16: u8 = 0x0a;
    pub(super) const U32: u8 = 0x0b;
    pub(super) const U64: u8 = 0x0c;
    pub(super) const U128: u8 = 0x0d;
    pub(super) const F32: u8 = 0x0e;
    pub(super) const F64: u8 = 0x0f;
    pub(super) const CHAR: u8 = 0x10;
    pub(super) const STR: u8 = 0x11;
    pub(super) const BYTES: u8 = 0x12;
    pub(super) const UNIT_STRUCT: u8 = 0x13;
    pub(super) const UNIT_VARIANT: u8 = 0x14;
    pub(super) const NEWTYPE_STRUCT: u8 = 0x15;
    pub(super) const NEWTYPE_VARIANT: u8 = 0x16;
    pub(super) const SEQ: u8 = 0x17;
    pub(super) const TUPLE: u8 = 0x18;
    pub(super) const TUPLE_STRUCT: u8 = 0x19;
    pub(super) const TUPLE_VARIANT: u8 = 0x1a;
    pub(super) const MAP: u8 = 0x1b;
    pub(super) const STRUCT: u8 = 0x1c;
    pub(super) const STRUCT_VARIANT: u8 = 0x1d;
}

const F32_NAN: u32 = 0x7fc0_0000;
const F64_NAN: u64 = 0x7ff8_0000_0000_0000;

/// Unsigned LEB128 in its shortest form; returns the buffer and the number of bytes used.
#[inline]
fn varint(mut n: u64) -> ([u8; 10], usize) {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf[i] = byte;
            return (buf, i + 1);
        }
        buf[i] = byte | 0x80;
        i += 1;
    }
}

#[inline]
fn put_varint(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let (buf, len) = varint(n as u64);
        out.extend_from_slice(&buf[..len]);
    }
}

#[inline]
fn put_name(out: &mut Vec<u8>, name: &str) {
    put_varint(out, name.len());
    out.extend_from_slice(name.as_bytes());
}

/// A count written before the elements it counts, corrected at the end if the hint was wrong.
struct Count {
    at: usize,
    width: usize,
    hint: usize,
    n: usize,
}

impl Count {
    #[inline]
    fn begin(out: &mut Vec<u8>, hint: Option<usize>) -> Self {
        let hint = hint.unwrap_or(0);
        let at = out.len();
        put_varint(out, hint);
        Self {
            at,
            width: out.len() - at,
            hint,
            n: 0,
        }
    }

    #[inline]
    fn end(self, out: &mut Vec<u8>) {
        if self.n != self.hint {
            let (buf, len) = varint(self.n as u64);
            out.splice(self.at..self.at + self.width, buf[..len].iter().copied());
        }
    }
}

struct Encoder<'o> {
    out: &'o mut Vec<u8>,
}

impl Encoder<'_> {
    #[inline]
    fn tagged(&mut self, tag: u8, payload: &[u8]) {
        self.out.push(tag);
        self.out.extend_from_slice(payload);
    }
}

/// Writes `collect_str` output straight into the buffer.
struct StrWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for StrWriter<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Integers: the tag, then the value's little-endian bytes.
macro_rules! fixed_width {
    ($($method:ident($ty:ty) => $tag:expr,)*) => {$(
        #[inline]
        fn $method(self, v: $ty) -> Result<(), EncodeError> {
            self.tagged($tag, &v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl<'a, 'o> ser::Serializer for &'a mut Encoder<'o> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Compound<'a, 'o>;
    type SerializeTuple = Compound<'a, 'o>;
    type SerializeTupleStruct = Compound<'a, 'o>;
    type SerializeTupleVariant = Compound<'a, 'o>;
    type SerializeMap = MapCompound<'a, 'o>;
    type SerializeStruct = Compound<'a, 'o>;
    type SerializeStructVariant = Compound<'a, 'o>;

    #[inline]
    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.tagged(tag::BOOL, &[u8::from(v)]);
        Ok(())
    }

    fixed_width! {
        serialize_i8(i8) => tag::I8,
        serialize_i16(i16) => tag::I16,
        serialize_i32(i32) => tag::I32,
        serialize_i64(i64) => tag::I64,
        serialize_i128(i128) => tag::I128,
        serialize_u8(u8) => tag::U8,
        serialize_u16(u16) => tag::U16,
        serialize_u32(u32) => tag::U32,
        serialize_u64(u64) => tag::U64,
        serialize_u128(u128) => tag::U128,
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        let bits = if v.is_nan() { F32_NAN } else { v.to_bits() };
        self.tagged(tag::F32, &bits.to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        let bits = if v.is_nan() { F64_NAN } else { v.to_bits() };
        self.tagged(tag::F64, &bits.to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        self.tagged(tag::CHAR, &u32::from(v).to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.out.push(tag::STR);
        put_name(self.out, v);
        Ok(())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        self.out.push(tag::BYTES);
        put_varint(self.out, v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.push(tag::NONE);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        self.out.push(tag::SOME);
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.out.push(tag::UNIT);
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.out.push(tag::UNIT_STRUCT);
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.out.push(tag::UNIT_VARIANT);
        put_name(self.out, variant);
        Ok(())
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.out.push(tag::NEWTYPE_STRUCT);
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.out.push(tag::NEWTYPE_VARIANT);
        put_name(self.out, variant);
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, 'o>, EncodeError> {
        Compound::open(self, tag::SEQ, None, len)
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'o>, EncodeError> {
        Compound::open(self, tag::TUPLE, None, Some(len))
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'o>, EncodeError> {
        Compound::open(self, tag::TUPLE_STRUCT, None, Some(len))
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'o>, EncodeError> {
        Compound::open(self, tag::TUPLE_VARIANT, Some(variant), Some(len))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<MapCompound<'a, 'o>, EncodeError> {
        let Compound { enc, count } = Compound::open(self, tag::MAP, None, len)?;
        let body = enc.out.len();
        Ok(MapCompound {
            enc,
            count,
            body,
            entries: Vec::new(),
            key_at: body,
            value_at: None,
        })
    }

    #[inline]
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'o>, EncodeError> {
        Compound::open(self, tag::STRUCT, None, Some(len))
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'o>, EncodeError> {
        Compound::open(self, tag::STRUCT_VARIANT, Some(variant), Some(len))
    }

    #[inline]
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        // Same bytes as `serialize_str(&value.to_string())`, without the intermediate string: write a
        // one-byte length, the text, then widen the length if the text turned out to be long.
        self.out.push(tag::STR);
        let at = self.out.len();
        self.out.push(0);
        fmt::write(&mut StrWriter(self.out), format_args!("{value}"))
            .map_err(|_| EncodeError::Format)?;
        let len = self.out.len() - at - 1;
        if len < 0x80 {
            self.out[at] = len as u8;
        } else {
            let (buf, width) = varint(len as u64);
            self.out.splice(at..at + 1, buf[..width].iter().copied());
        }
        Ok(())
    }
}

/// Sequences, tuples and structs: elements (or named fields) after a count.
struct Compound<'a, 'o> {
    enc: &'a mut Encoder<'o>,
    count: Count,
}

impl<'a, 'o> Compound<'a, 'o> {
    /// Writes the tag, the variant name if any, and the announced count.
    #[inline]
    fn open(
        enc: &'a mut Encoder<'o>,
        tag: u8,
        variant: Option<&str>,
        hint: Option<usize>,
    ) -> Result<Self, EncodeError> {
        enc.out.push(tag);
        if let Some(name) = variant {
            put_name(enc.out, name);
        }
        let count = Count::begin(enc.out, hint);
        Ok(Self { enc, count })
    }

    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.count.n += 1;
        value.serialize(&mut *self.enc)
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.count.n += 1;
        put_name(self.enc.out, name);
        value.serialize(&mut *self.enc)
    }

    #[inline]
    fn finish(self) -> Result<(), EncodeError> {
        self.count.end(self.enc.out);
        Ok(())
    }
}

/// The compound traits all forward to [`Compound::element`] (or [`Compound::field`]) and
/// [`Compound::finish`].
macro_rules! forward_compound {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = EncodeError;
            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
                self.element(value)
            }
            #[inline]
            fn end(self) -> Result<(), EncodeError> {
                self.finish()
            }
        }
    )*};
    ($($trait:ident),* ; named) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = EncodeError;
            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), EncodeError> {
                self.field(key, value)
            }
            #[inline]
            fn end(self) -> Result<(), EncodeError> {
                self.finish()
            }
        }
    )*};
}

forward_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);
forward_compound!(SerializeStruct, SerializeStructVariant; named);

/// Maps: entries are written as they come, then put in the order of their encoded keys.
struct MapCompound<'a, 'o> {
    enc: &'a mut Encoder<'o>,
    count: Count,
    /// Where the first entry starts.
    body: usize,
    /// `(key start, value start, end)` of each complete entry.
    entries: Vec<(usize, usize, usize)>,
    /// Where the pending entry's key starts.
    key_at: usize,
    /// Where the pending entry's value starts, once its key is written.
    value_at: Option<usize>,
}

impl ser::SerializeMap for MapCompound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        if self.value_at.is_some() {
            return Err(ser::Error::custom("map key written twice without a value"));
        }
        self.key_at = self.enc.out.len();
        key.serialize(&mut *self.enc)?;
        self.value_at = Some(self.enc.out.len());
        Ok(())
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        let value_at = self
            .value_at
            .take()
            .ok_or_else(|| ser::Error::custom("map value written without a key"))?;
        value.serialize(&mut *self.enc)?;
        self.entries
            .push((self.key_at, value_at, self.enc.out.len()));
        self.count.n += 1;
        Ok(())
    }

    fn end(self) -> Result<(), EncodeError> {
        if self.value_at.is_some() {
            return Err(ser::Error::custom("map key written without a value"));
        }
        let Self {
            enc,
            count,
            body,
            mut entries,
            ..
        } = self;
        let out = &mut *enc.out;
        // Keys of complete entries, in the order written; entries are contiguous from `body`.
        let key = |base: usize, e: &(usize, usize, usize)| e.0 - base..e.1 - base;
        let mut sorted = true;
        for w in entries.windows(2) {
            match out[key(0, &w[0])].cmp(&out[key(0, &w[1])]) {
                Ordering::Less => {}
                Ordering::Equal => return Err(EncodeError::DuplicateMapKey),
                Ordering::Greater => sorted = false,
            }
        }
        if !sorted {
            let written = out.split_off(body);
            entries.sort_by(|a, b| written[key(body, a)].cmp(&written[key(body, b)]));
            if entries
                .windows(2)
                .any(|w| written[key(body, &w[0])] == written[key(body, &w[1])])
            {
                return Err(EncodeError::DuplicateMapKey);
            }
            for &(k, _, end) in &entries {
                out.extend_from_slice(&written[k - body..end - body]);
            }
        }
        count.end(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
