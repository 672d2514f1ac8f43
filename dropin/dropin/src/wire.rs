//! How values cross a process boundary: the compact binary encoding an
//! isolated plugin's calls travel in.
//!
//! In-process, a method's arguments and result cross as their `#[repr(C)]`
//! representations ([`Stable`](crate::Stable)). A plugin that runs in a child
//! process is called through the same handle, whose methods then encode the
//! arguments with [`Encode`], and decode the result with [`Decode`]: every
//! type a method may take or return implements both (`&str` and `&[u8]`
//! encode, and decode as `String` and `Vec<u8>`), and
//! `#[derive(dropin::Stable)]` implements them for an interface's own
//! structs and enums.
//!
//! The encoding: integers and floats little-endian at their own width
//! (`usize` and `isize` as 64 bits), `bool` as one byte, `char` as its `u32`,
//! a string or byte string as a `u64` length and the bytes, a `Vec` as a
//! `u64` count and the items, an `Option` as a byte (0 or 1) and the value,
//! a struct as its fields in order, an enum as a `u32` variant index and
//! its fields. Nothing is trusted on the way back: a decoder given bytes of
//! the wrong shape returns a [`WireError`], never panics, and never
//! allocates more than the bytes it was given could hold.

use std::fmt;

/// Bytes that do not decode as the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message: {}", self.0)
    }
}

impl std::error::Error for WireError {}

/// A value that can be written for another process.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the plugin boundary",
    label = "not a type a plugin method may take or return",
    note = "use an integer, float, bool, char, String, Vec<T>, Option<T>, &str or &[u8] (as an \
            argument), or a struct or enum of your interface crate with `#[derive(dropin::Stable)]`"
)]
pub trait Encode {
    /// Appends the value's encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

/// A value that can be read back from another process's bytes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the plugin boundary",
    label = "not a type a plugin method may take or return",
    note = "use an integer, float, bool, char, String, Vec<T>, Option<T>, &str or &[u8] (as an \
            argument), or a struct or enum of your interface crate with `#[derive(dropin::Stable)]`"
)]
pub trait Decode: Sized {
    /// Reads one value from the start of `input`, advancing it.
    ///
    /// # Errors
    ///
    /// [`WireError`] when the bytes do not hold a value of this type.
    fn decode(input: &mut &[u8]) -> Result<Self, WireError>;
}

/// Takes `n` bytes from the start of `input`.
///
/// # Errors
///
/// [`WireError`] when fewer are left.
pub fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if input.len() < n {
        return Err(WireError(format!(
            "expected {n} more bytes, found {}",
            input.len()
        )));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

macro_rules! number {
    ($($ty:ty),*) => {$(
        impl Encode for $ty {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }

        impl Decode for $ty {
            #[inline]
            fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
                let bytes = take(input, size_of::<$ty>())?;
                Ok(<$ty>::from_le_bytes(bytes.try_into().expect("taken to size")))
            }
        }
    )*};
}

number!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

impl Encode for usize {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u64).encode(out);
    }
}

impl Decode for usize {
    #[inline]
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        let value = u64::decode(input)?;
        usize::try_from(value).map_err(|_| WireError(format!("{value} does not fit a usize")))
    }
}

impl Encode for isize {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as i64).encode(out);
    }
}

impl Decode for isize {
    #[inline]
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        let value = i64::decode(input)?;
        isize::try_from(value).map_err(|_| WireError(format!("{value} does not fit an isize")))
    }
}

impl Encode for () {
    #[inline]
    fn encode(&self, _: &mut Vec<u8>) {}
}

impl Decode for () {
    #[inline]
    fn decode(_: &mut &[u8]) -> Result<Self, WireError> {
        Ok(())
    }
}

impl Encode for bool {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Decode for bool {
    #[inline]
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        match u8::decode(input)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(WireError(format!(
                "expected a bool (0 or 1), found {other}"
            ))),
        }
    }
}

impl Encode for char {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        u32::from(*self).encode(out);
    }
}

impl Decode for char {
    #[inline]
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        let value = u32::decode(input)?;
        char::from_u32(value).ok_or_else(|| WireError(format!("{value:#x} is not a char")))
    }
}

impl Encode for [u8] {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u64).encode(out);
        out.extend_from_slice(self);
    }
}

impl Encode for str {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_bytes().encode(out);
    }
}

impl Encode for String {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_str().encode(out);
    }
}

impl Encode for crate::Text {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_str().encode(out);
    }
}

/// A length read from `input`, checked against what is left of it: each
/// item takes at least `min_item` bytes (a `Vec<()>` takes none, but its
/// length is then capped so that a hostile count allocates nothing).
fn length(input: &mut &[u8], min_item: usize) -> Result<usize, WireError> {
    let len = u64::decode(input)?;
    let fits = match input.len().checked_div(min_item) {
        Some(most) => len <= most as u64,
        None => len <= 1 << 20,
    };
    if !fits {
        return Err(WireError(format!(
            "a length of {len}, more than the {} bytes left can hold",
            input.len()
        )));
    }
    Ok(len as usize)
}

impl Decode for String {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        let len = length(input, 1)?;
        let bytes = take(input, len)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| WireError(format!("not UTF-8: {e}")))
    }
}

impl Decode for crate::Text {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        String::decode(input).map(|text| <Self as crate::Stable>::from_ffi(text.into()))
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_items(self, out);
    }
}

/// Encodes `items` as a `Vec<T>` of them: how a `&[T]` argument crosses a
/// process boundary.
pub fn encode_items<T: Encode>(items: &[T], out: &mut Vec<u8>) {
    (items.len() as u64).encode(out);
    for item in items {
        item.encode(out);
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        // Every encoded item but `()` takes at least one byte.
        let len = length(input, usize::from(size_of::<T>() != 0))?;
        (0..len).map(|_| T::decode(input)).collect()
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        match u8::decode(input)? {
            0 => Ok(None),
            1 => T::decode(input).map(Some),
            other => Err(WireError(format!(
                "expected an option tag (0 or 1), found {other}"
            ))),
        }
    }
}

impl<T: Encode, E: Encode> Encode for Result<T, E> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Ok(value) => {
                out.push(0);
                value.encode(out);
            }
            Err(error) => {
                out.push(1);
                error.encode(out);
            }
        }
    }
}

impl<T: Decode, E: Decode> Decode for Result<T, E> {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        match u8::decode(input)? {
            0 => T::decode(input).map(Ok),
            1 => E::decode(input).map(Err),
            other => Err(WireError(format!(
                "expected a result tag (0 or 1), found {other}"
            ))),
        }
    }
}

macro_rules! tuple {
    ($($item:ident $index:tt),+) => {
        impl<$($item: Encode),+> Encode for ($($item,)+) {
            fn encode(&self, out: &mut Vec<u8>) {
                $(self.$index.encode(out);)+
            }
        }

        impl<$($item: Decode),+> Decode for ($($item,)+) {
            fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
                Ok(($($item::decode(input)?,)+))
            }
        }
    };
}

tuple!(A 0, B 1);
tuple!(A 0, B 1, C 2);
tuple!(A 0, B 1, C 2, D 3);
tuple!(A 0, B 1, C 2, D 3, E 4);
tuple!(A 0, B 1, C 2, D 3, E 4, F 5);

impl<T: Encode, const N: usize> Encode for [T; N] {
    fn encode(&self, out: &mut Vec<u8>) {
        // The length is the type's: no prefix.
        for item in self {
            item.encode(out);
        }
    }
}

impl<T: Decode, const N: usize> Decode for [T; N] {
    fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
        // Every encoded item but `()` takes at least one byte: a length
        // the bytes left cannot hold is refused before allocating.
        if size_of::<T>() != 0 && input.len() < N {
            return Err(WireError(format!(
                "an array of {N}, more than the {} bytes left can hold",
                input.len()
            )));
        }
        let items = (0..N)
            .map(|_| T::decode(input))
            .collect::<Result<Vec<T>, WireError>>()?;
        Ok(items
            .try_into()
            .unwrap_or_else(|_| unreachable!("{N} items decoded")))
    }
}

macro_rules! map {
    ($map:ident, $($bound:tt)+) => {
        impl<K: Encode, V: Encode> Encode for std::collections::$map<K, V> {
            fn encode(&self, out: &mut Vec<u8>) {
                (self.len() as u64).encode(out);
                for (key, value) in self {
                    key.encode(out);
                    value.encode(out);
                }
            }
        }

        impl<K: Decode + $($bound)+, V: Decode> Decode for std::collections::$map<K, V> {
            fn decode(input: &mut &[u8]) -> Result<Self, WireError> {
                let len = length(input, usize::from(size_of::<(K, V)>() != 0))?;
                // A key sent twice: the later value wins.
                (0..len)
                    .map(|_| Ok((K::decode(input)?, V::decode(input)?)))
                    .collect()
            }
        }
    };
}

map!(BTreeMap, Ord);
map!(HashMap, Eq + std::hash::Hash);

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
}

/// Appends the outcome of a call served for another process: `0` and the
/// value, or `1`, the error's kind, message and location.
pub fn encode_outcome<T: Encode>(outcome: &Result<T, crate::CallError>, out: &mut Vec<u8>) {
    use crate::CallErrorKind as Kind;
    match outcome {
        Ok(value) => {
            out.push(0);
            value.encode(out);
        }
        Err(error) => {
            out.push(1);
            let kind: u8 = match error.kind() {
                Kind::Failed => 0,
                Kind::Panicked => 1,
                Kind::Disabled => 2,
                Kind::Missing => 3,
                Kind::Crashed => 4,
                Kind::TimedOut => 5,
            };
            kind.encode(out);
            error.message().encode(out);
            error.location().map(str::to_owned).encode(out);
        }
    }
}

/// Reads what [`encode_outcome`] wrote: the value's bytes, or the error,
/// attributed to `plugin`.
///
/// # Errors
///
/// The error the outcome holds; a [`CallError`](crate::CallError) of kind
/// `Failed` if the bytes are malformed.
pub fn decode_outcome<'a>(plugin: &str, bytes: &'a [u8]) -> Result<&'a [u8], crate::CallError> {
    use crate::CallErrorKind as Kind;
    let malformed = |error: WireError| {
        crate::CallError::from_parts(
            Kind::Failed,
            plugin,
            format!("its process sent an answer that does not decode: {error}"),
            None,
        )
    };
    let mut input = bytes;
    match u8::decode(&mut input).map_err(malformed)? {
        0 => Ok(input),
        1 => {
            let kind = match u8::decode(&mut input).map_err(malformed)? {
                0 => Kind::Failed,
                1 => Kind::Panicked,
                2 => Kind::Disabled,
                3 => Kind::Missing,
                // Only the host knows whether a process crashed or timed
                // out: a process that says so of itself just failed.
                4 | 5 => Kind::Failed,
                other => return Err(malformed(WireError(format!("no error kind {other}")))),
            };
            let message = String::decode(&mut input).map_err(malformed)?;
            let location = <Option<String>>::decode(&mut input).map_err(malformed)?;
            Err(crate::CallError::from_parts(
                kind, plugin, message, location,
            ))
        }
        other => Err(malformed(WireError(format!("no outcome tag {other}")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Encode + Decode + PartialEq + fmt::Debug>(value: T) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        let mut input = bytes.as_slice();
        assert_eq!(T::decode(&mut input).unwrap(), value);
        assert!(input.is_empty(), "{value:?} left {input:?}");
    }

    #[test]
    fn every_supported_type_survives_the_round_trip() {
        round_trip(7u8);
        round_trip(-7i64);
        round_trip(u128::MAX);
        round_trip(usize::MAX);
        round_trip(1.5f64);
        round_trip(true);
        round_trip('é');
        round_trip(());
        round_trip("héllo".to_owned());
        round_trip(vec![Some("a".to_owned()), None]);
        round_trip(vec![(); 3]);
        round_trip(b"\x00\xff".to_vec());
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics_or_huge_allocations() {
        let decode = |bytes: &[u8]| <Vec<String>>::decode(&mut &bytes[..]);
        assert!(decode(&[]).is_err());
        // A count of 2^64 - 1 strings in 8 bytes.
        assert!(decode(&[0xff; 8]).is_err());
        let mut bytes = Vec::new();
        1u64.encode(&mut bytes);
        2u64.encode(&mut bytes);
        bytes.extend_from_slice(&[0xc3, 0x28]);
        assert_eq!(
            decode(&bytes).unwrap_err().to_string(),
            "malformed message: not UTF-8: invalid utf-8 sequence of 1 bytes from index 0"
        );
        assert!(bool::decode(&mut &[2u8][..]).is_err());
        assert!(char::decode(&mut &0xD800u32.to_le_bytes()[..]).is_err());
        assert!(<Vec<()>>::decode(&mut &u64::MAX.to_le_bytes()[..]).is_err());
    }
}
