//! How values cross the plugin boundary.
//!
//! Every type a method of an interface may take or return implements
//! [`Stable`]: it names a `#[repr(C)]` representation of itself
//! ([`Stable::Ffi`]), converts to and from it, and describes that
//! representation ([`TypeDesc`]). The host compares the descriptors a plugin
//! was compiled with against its own before it binds a single method, so a
//! changed type is refused at load instead of misread at call time.
//!
//! The representations are abi_stable's types today (`RString`, `RVec`, ...);
//! no application or plugin code names them, so the backend can change: only
//! the host's seam, [`abi`](crate::abi), does, and `dropin-host` with it.

use std::{borrow::Cow, fmt};

use abi_stable::{
    StableAbi,
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec},
};

/// A string a plugin handed over, as text: its bytes are not trusted to be
/// UTF-8 (a corrupted library can hand over anything), so invalid sequences
/// become U+FFFD instead of undefined behaviour.
pub fn lossy<'a>(text: &RStr<'a>) -> Cow<'a, str> {
    String::from_utf8_lossy(text.as_rslice().as_slice())
}

/// The items of a slice a plugin handed over; an empty one is never
/// dereferenced, whatever its pointer says.
pub fn items<T>(slice: RSlice<'static, T>) -> &'static [T] {
    if slice.is_empty() {
        &[]
    } else {
        slice.as_slice()
    }
}

/// A type that can cross the plugin boundary: arguments and results of
/// interface methods, fields of [`Stable`](macro@crate::Stable) structs and enums.
///
/// Implemented for integers, floats, `bool`, `char`, `()`, `String`,
/// `Vec<T>`, `Option<T>`, `Result<T, E>`, tuples (up to six items), arrays,
/// `BTreeMap<K, V>`, `HashMap<K, V>`, `&str` and `&[u8]`; derive it for an
/// interface's own structs and enums with `#[derive(dropin::Stable)]`.
///
/// # Safety
///
/// [`DESC`](Self::DESC) must describe [`Ffi`](Self::Ffi) exactly: two types
/// with equal descriptors must have the same size, alignment and meaning of
/// every byte, because the host trusts a plugin's function once the
/// descriptors of its signature match.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the plugin boundary",
    label = "not a type a plugin method may take or return",
    note = "use an integer, float, bool, char, String, Vec<T>, Option<T>, Result<T, E>, a tuple, \
            an array, a BTreeMap or HashMap, &str or &[u8] (as an argument), or a struct or enum \
            of your interface crate with `#[derive(dropin::Stable)]`; a method's error that is \
            only a message is a `dropin::BoxError`"
)]
pub unsafe trait Stable: Sized {
    /// The `#[repr(C)]` representation that crosses the boundary.
    type Ffi;
    /// Describes [`Ffi`](Self::Ffi) for the host's signature check.
    const DESC: &'static TypeDesc;
    /// Converts to the representation.
    fn into_ffi(self) -> Self::Ffi;
    /// Converts back from the representation.
    fn from_ffi(ffi: Self::Ffi) -> Self;
}

/// The description of a type's representation at the boundary: its name,
/// size and alignment, generic arguments, and fields or variants.
///
/// Two representations are interchangeable exactly when their descriptors are
/// equal ([`TypeDesc::same`]). `#[repr(C)]` layouts are fully determined by
/// their field types in order, so field offsets are not recorded.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct TypeDesc {
    /// The type's name as written in the interface (`String`, `Vec`, `Point`).
    pub name: RStr<'static>,
    /// `size_of` the representation.
    pub size: usize,
    /// `align_of` the representation.
    pub align: usize,
    /// Generic arguments (`Vec<T>` has one).
    pub args: RSlice<'static, &'static TypeDesc>,
    /// A struct's fields, in order.
    pub fields: RSlice<'static, FieldDesc>,
    /// An enum's variants, in order; their index is the discriminant.
    pub variants: RSlice<'static, VariantDesc>,
}

/// A field of a struct or of an enum variant.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FieldDesc {
    /// The field's name (`"0"`, `"1"`, ... for tuple fields).
    pub name: RStr<'static>,
    /// Its type.
    pub ty: &'static TypeDesc,
}

/// A variant of an enum.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct VariantDesc {
    /// The variant's name.
    pub name: RStr<'static>,
    /// Its fields, in order.
    pub fields: RSlice<'static, FieldDesc>,
}

impl TypeDesc {
    /// A type with no fields or variants, such as a primitive.
    pub const fn leaf(name: &'static str, size: usize, align: usize) -> Self {
        Self {
            name: RStr::from_str(name),
            size,
            align,
            args: RSlice::from_slice(&[]),
            fields: RSlice::from_slice(&[]),
            variants: RSlice::from_slice(&[]),
        }
    }

    /// Reads every part of the description, recursively, as
    /// [`difference`](Self::difference) may: how the loader's probe process
    /// finds a corrupted description before the host does. Returns how many
    /// bytes of names it read.
    #[doc(hidden)]
    pub fn walk(&self) -> usize {
        let fields = |fields: &[FieldDesc]| {
            fields
                .iter()
                .map(|field| lossy(&field.name).len() + field.ty.walk())
                .sum::<usize>()
        };
        lossy(&self.name).len()
            + items(self.args).iter().map(|arg| arg.walk()).sum::<usize>()
            + fields(items(self.fields))
            + items(self.variants)
                .iter()
                .map(|variant| lossy(&variant.name).len() + fields(items(variant.fields)))
                .sum::<usize>()
    }

    /// Whether `self` and `other` describe interchangeable representations.
    pub fn same(&self, other: &TypeDesc) -> bool {
        self.difference(other).is_none()
    }

    /// The first difference between `self` (expected) and `found`, as a
    /// phrase naming where it is: `field `x`: expected f64, found f32`.
    pub fn difference(&self, found: &TypeDesc) -> Option<String> {
        // One comparison, of what both describe: the description's types
        // hold the same parts, and a file's description is compared by it
        // before anything is mapped.
        crate::description::Type::of(self).difference(&crate::description::Type::of(found))
    }
}

/// The type as an interface author wrote it: `Vec<Option<String>>`.
impl fmt::Display for TypeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One way to write a type, that of the descriptions.
        write!(f, "{}", crate::description::Type::of(self))
    }
}

impl fmt::Debug for TypeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self} ({} bytes, align {})", self.size, self.align)
    }
}

impl fmt::Debug for FieldDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", lossy(&self.name), self.ty)
    }
}

impl fmt::Debug for VariantDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple(&lossy(&self.name))
            .field(&items(self.fields))
            .finish()
    }
}

macro_rules! primitive {
    ($($ty:ty),*) => {$(
        // SAFETY: a primitive is its own representation; its name, size and
        // alignment identify it.
        unsafe impl Stable for $ty {
            type Ffi = $ty;
            const DESC: &'static TypeDesc =
                &TypeDesc::leaf(stringify!($ty), size_of::<$ty>(), align_of::<$ty>());
            #[inline]
            fn into_ffi(self) -> $ty {
                self
            }
            #[inline]
            fn from_ffi(ffi: $ty) -> $ty {
                ffi
            }
        }
    )*};
}

primitive!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    ()
);

// SAFETY: a byte, 0 or 1; any other byte reads as `true`, so a bad value from
// the other side cannot become an invalid `bool`.
unsafe impl Stable for bool {
    type Ffi = u8;
    const DESC: &'static TypeDesc = &TypeDesc::leaf("bool", 1, 1);
    #[inline]
    fn into_ffi(self) -> u8 {
        u8::from(self)
    }
    #[inline]
    fn from_ffi(ffi: u8) -> bool {
        ffi != 0
    }
}

// SAFETY: a Unicode scalar value as a `u32`; an invalid one reads as U+FFFD,
// so a bad value from the other side cannot become an invalid `char`.
unsafe impl Stable for char {
    type Ffi = u32;
    const DESC: &'static TypeDesc = &TypeDesc::leaf("char", 4, 4);
    #[inline]
    fn into_ffi(self) -> u32 {
        u32::from(self)
    }
    #[inline]
    fn from_ffi(ffi: u32) -> char {
        char::from_u32(ffi).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

// SAFETY: `RString` is abi_stable's `#[repr(C)]` string, which carries the
// functions that free it, so either side may drop it.
unsafe impl Stable for String {
    type Ffi = RString;
    const DESC: &'static TypeDesc =
        &TypeDesc::leaf("String", size_of::<RString>(), align_of::<RString>());
    #[inline]
    fn into_ffi(self) -> RString {
        RString::from(self)
    }
    #[inline]
    fn from_ffi(ffi: RString) -> String {
        ffi.into_string()
    }
}

// SAFETY: `String`'s representation, which `Text` wraps: the application's
// handle returns it where the interface returns a `String`, without a copy.
unsafe impl Stable for Text {
    type Ffi = RString;
    const DESC: &'static TypeDesc = String::DESC;
    #[inline]
    fn into_ffi(self) -> RString {
        self.0
    }
    #[inline]
    fn from_ffi(ffi: RString) -> Text {
        Text(ffi)
    }
}

// SAFETY: `RStr` is a `#[repr(C)]` pointer and length of UTF-8 bytes,
// borrowed for the duration of the call.
unsafe impl<'a> Stable for &'a str {
    type Ffi = RStr<'a>;
    const DESC: &'static TypeDesc =
        &TypeDesc::leaf("&str", size_of::<RStr<'_>>(), align_of::<RStr<'_>>());
    #[inline]
    fn into_ffi(self) -> RStr<'a> {
        RStr::from_str(self)
    }
    #[inline]
    fn from_ffi(ffi: RStr<'a>) -> &'a str {
        ffi.as_str()
    }
}

// SAFETY: `RSlice` is a `#[repr(C)]` pointer and length, borrowed for the
// duration of the call.
unsafe impl<'a> Stable for &'a [u8] {
    type Ffi = RSlice<'a, u8>;
    const DESC: &'static TypeDesc = &TypeDesc::leaf(
        "&[u8]",
        size_of::<RSlice<'_, u8>>(),
        align_of::<RSlice<'_, u8>>(),
    );
    #[inline]
    fn into_ffi(self) -> RSlice<'a, u8> {
        RSlice::from_slice(self)
    }
    #[inline]
    fn from_ffi(ffi: RSlice<'a, u8>) -> &'a [u8] {
        ffi.as_slice()
    }
}

// SAFETY: `RVec` is abi_stable's `#[repr(C)]` vector of the element's
// representation, described by the element's descriptor.
unsafe impl<T: Stable> Stable for Vec<T> {
    type Ffi = RVec<T::Ffi>;
    const DESC: &'static TypeDesc = &TypeDesc {
        args: RSlice::from_slice(&[T::DESC]),
        ..TypeDesc::leaf("Vec", size_of::<RVec<T::Ffi>>(), align_of::<RVec<T::Ffi>>())
    };
    #[inline]
    fn into_ffi(self) -> RVec<T::Ffi> {
        // Reuses the allocation when `T` is its own representation.
        self.into_iter().map(T::into_ffi).collect::<Vec<_>>().into()
    }
    #[inline]
    fn from_ffi(ffi: RVec<T::Ffi>) -> Vec<T> {
        ffi.into_vec().into_iter().map(T::from_ffi).collect()
    }
}

// SAFETY: `ROption` is abi_stable's `#[repr(C, u8)]` option of the value's
// representation, described by the value's descriptor.
unsafe impl<T: Stable> Stable for Option<T> {
    type Ffi = ROption<T::Ffi>;
    const DESC: &'static TypeDesc = &TypeDesc {
        args: RSlice::from_slice(&[T::DESC]),
        ..TypeDesc::leaf(
            "Option",
            size_of::<ROption<T::Ffi>>(),
            align_of::<ROption<T::Ffi>>(),
        )
    };
    #[inline]
    fn into_ffi(self) -> ROption<T::Ffi> {
        match self {
            Some(value) => ROption::RSome(value.into_ffi()),
            None => ROption::RNone,
        }
    }
    #[inline]
    fn from_ffi(ffi: ROption<T::Ffi>) -> Option<T> {
        match ffi {
            ROption::RSome(value) => Some(T::from_ffi(value)),
            ROption::RNone => None,
        }
    }
}

// SAFETY: `RResult` is abi_stable's `#[repr(u8)]` result of the two
// representations, described by their descriptors.
unsafe impl<T: Stable, E: Stable> Stable for Result<T, E> {
    type Ffi = RResult<T::Ffi, E::Ffi>;
    const DESC: &'static TypeDesc = &TypeDesc {
        args: RSlice::from_slice(&[T::DESC, E::DESC]),
        ..TypeDesc::leaf(
            "Result",
            size_of::<RResult<T::Ffi, E::Ffi>>(),
            align_of::<RResult<T::Ffi, E::Ffi>>(),
        )
    };
    #[inline]
    fn into_ffi(self) -> RResult<T::Ffi, E::Ffi> {
        match self {
            Ok(value) => RResult::ROk(value.into_ffi()),
            Err(error) => RResult::RErr(error.into_ffi()),
        }
    }
    #[inline]
    fn from_ffi(ffi: RResult<T::Ffi, E::Ffi>) -> Result<T, E> {
        match ffi {
            RResult::ROk(value) => Ok(T::from_ffi(value)),
            RResult::RErr(error) => Err(E::from_ffi(error)),
        }
    }
}

macro_rules! tuple {
    ($ffi:ident: $($item:ident $index:tt),+) => {
        /// The `#[repr(C)]` representation of a tuple: its items'
        /// representations, in order (a Rust tuple's layout is not fixed).
        #[doc(hidden)]
        #[repr(C)]
        #[derive(Debug)]
        pub struct $ffi<$($item),+>($(pub $item),+);

        // SAFETY: a `#[repr(C)]` struct of the items' representations in
        // order, whose layout follows from them, each described by its own
        // descriptor (and the tuple by their number).
        unsafe impl<$($item: Stable),+> Stable for ($($item,)+) {
            type Ffi = $ffi<$($item::Ffi),+>;
            const DESC: &'static TypeDesc = &TypeDesc {
                args: RSlice::from_slice(&[$($item::DESC),+]),
                ..TypeDesc::leaf("()", size_of::<Self::Ffi>(), align_of::<Self::Ffi>())
            };
            #[inline]
            fn into_ffi(self) -> Self::Ffi {
                $ffi($(self.$index.into_ffi()),+)
            }
            #[inline]
            fn from_ffi(ffi: Self::Ffi) -> Self {
                ($($item::from_ffi(ffi.$index),)+)
            }
        }
    };
}

tuple!(Tuple2: A 0, B 1);
tuple!(Tuple3: A 0, B 1, C 2);
tuple!(Tuple4: A 0, B 1, C 2, D 3);
tuple!(Tuple5: A 0, B 1, C 2, D 3, E 4);
tuple!(Tuple6: A 0, B 1, C 2, D 3, E 4, F 5);

/// The `#[repr(C)]` representation of an array: its items'
/// representations, in a struct (C passes a bare array by pointer).
#[doc(hidden)]
#[repr(C)]
#[derive(Debug)]
pub struct Array<T, const N: usize>(pub [T; N]);

// SAFETY: a `#[repr(C)]` struct of one array of the items'
// representations, contiguous, in order: described by the item's
// descriptor and the size, which holds the length.
unsafe impl<T: Stable, const N: usize> Stable for [T; N] {
    type Ffi = Array<T::Ffi, N>;
    const DESC: &'static TypeDesc = &TypeDesc {
        args: RSlice::from_slice(&[T::DESC]),
        ..TypeDesc::leaf("[]", size_of::<Self::Ffi>(), align_of::<Self::Ffi>())
    };
    #[inline]
    fn into_ffi(self) -> Self::Ffi {
        Array(self.map(T::into_ffi))
    }
    #[inline]
    fn from_ffi(Array(items): Self::Ffi) -> [T; N] {
        items.map(T::from_ffi)
    }
}

macro_rules! map {
    ($map:ident, $name:literal, $($bound:tt)+) => {
        // SAFETY: `RVec` of the pairs' representations, each pair a
        // `#[repr(C)]` tuple, described by the key's and the value's
        // descriptors.
        unsafe impl<K: Stable + $($bound)+, V: Stable> Stable for std::collections::$map<K, V> {
            type Ffi = RVec<Tuple2<K::Ffi, V::Ffi>>;
            const DESC: &'static TypeDesc = &TypeDesc {
                args: RSlice::from_slice(&[K::DESC, V::DESC]),
                ..TypeDesc::leaf($name, size_of::<Self::Ffi>(), align_of::<Self::Ffi>())
            };
            #[inline]
            fn into_ffi(self) -> Self::Ffi {
                self.into_iter()
                    .map(|(key, value)| Tuple2(key.into_ffi(), value.into_ffi()))
                    .collect::<Vec<_>>()
                    .into()
            }
            #[inline]
            fn from_ffi(ffi: Self::Ffi) -> Self {
                // A key the other side sent twice: the later value wins.
                ffi.into_vec()
                    .into_iter()
                    .map(|Tuple2(key, value)| (K::from_ffi(key), V::from_ffi(value)))
                    .collect()
            }
        }
    };
}

map!(BTreeMap, "BTreeMap", Ord);
map!(HashMap, "HashMap", Eq + std::hash::Hash);

/// A string returned by a plugin, handed over without a copy: it derefs to
/// `str` and frees itself through the plugin's allocator.
///
/// Where an interface method returns a `String`, the application's handle
/// returns this: for a `String` result, and for each `String` of an
/// `Option`, a `Result`'s value, a `Vec`, a tuple, an array or a map in the
/// result (`Option<String>` comes back as `Option<Text>`; a map of them is
/// looked up by `&str`). A `String` field of the interface's own types, and
/// a `String` behind a type alias, stay `String`s, copied.
/// [`into_string`](Self::into_string) makes it a `String`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Text(RString);

impl Text {
    /// The text as a `str`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as a `String` (a copy when the plugin allocated it).
    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

// `Text`'s `Eq`, `Ord` and `Hash` are `RString`'s, which are `str`'s: a map
// of `Text` keys is looked up by `&str`.
impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<Text> for String {
    fn from(text: Text) -> String {
        text.into_string()
    }
}

/// For comparing what a handle returned: `assert_eq!(store.get("a")?, Ok("1".into()))`.
impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text(text.into())
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(text.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_name_the_type_as_written() {
        assert_eq!(
            <Vec<Option<String>>>::DESC.to_string(),
            "Vec<Option<String>>"
        );
        assert_eq!(<&str>::DESC.to_string(), "&str");
    }

    #[test]
    fn a_changed_argument_type_is_a_difference_naming_both() {
        assert!(<Vec<u64>>::DESC.same(<Vec<u64>>::DESC));
        assert_eq!(
            <Vec<u64>>::DESC.difference(<Vec<u32>>::DESC).as_deref(),
            Some("expected u64, found u32")
        );
        assert_eq!(
            String::DESC.difference(<Option<String>>::DESC).as_deref(),
            Some("expected String, found Option<String>")
        );
    }

    #[test]
    fn values_survive_the_round_trip() {
        let value = vec![Some("a".to_owned()), None];
        assert_eq!(
            <Vec<Option<String>>>::from_ffi(value.clone().into_ffi()),
            value
        );
        assert!(bool::from_ffi(7));
        assert_eq!(char::from_ffi(0xD800), char::REPLACEMENT_CHARACTER);
    }
}
