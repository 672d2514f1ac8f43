//! A plugin's description: what a host needs to judge a plugin file, as data
//! in the file, read without running any of it.
//!
//! The export macro writes the description into the library at compile
//! time, as one byte array with no pointer in it (so nothing needs
//! relocating to read it), exported under the symbol [`SYMBOL`]. A host
//! finds it through the library's dynamic symbol table and reads those
//! bytes from the file; [`decode`] checks every length against the bytes
//! left and caps the size, the nesting and the counts, so any bytes decode
//! to a description or a [`DescriptionError`], never a crash or a large
//! allocation.
//!
//! # Format 1
//!
//! Integers are little-endian. A string is a `u32` length and that many
//! bytes of UTF-8; a list is a `u32` count and that many items.
//!
//! | field | encoding |
//! |---|---|
//! | magic | the 8 bytes [`MAGIC`] |
//! | format | `u32`, [`FORMAT`] |
//! | body length | `u32`, the bytes that follow |
//! | plugin name, plugin version | strings |
//! | interface name, interface version | strings |
//! | dropin version | string: the `dropin` release the plugin was built with |
//! | host requirement | string (empty: any host) |
//! | target architecture, target OS | strings (`x86_64`, `linux`) |
//! | panic = "abort", debug assertions | one byte each, 0 or 1 |
//! | methods | list of methods |
//! | services | string (the host services trait the interface names, empty for none), then a list of methods: the services a plugin may call |
//!
//! A method is its name, the interface version that added it (`since`), its
//! arguments after `&self` (a list of types) and its result (a type). A type
//! is its name, its size and alignment (`u64` each), its generic arguments
//! (a list of types), its fields (a list of a name and a type) and its
//! variants (a list of a name and a list of fields), as [`TypeDesc`] holds
//! them.

use std::fmt;

use crate::{MethodDesc, TypeDesc, module::MethodEntry, values::items};

/// The symbol under which a plugin library exports its description.
pub const SYMBOL: &str = "dropin_description_v1";

/// The first bytes of every plugin's description.
pub const MAGIC: [u8; 8] = *b"dropin\0d";

/// The first bytes of every application's description: the interface an
/// application was built with, in the same format with the plugin's fields
/// empty.
pub const APPLICATION_MAGIC: [u8; 8] = *b"dropin\0a";

/// The section of an executable that holds the descriptions of the
/// interfaces it loads plugins of, one after another: put there by the
/// interface crate, kept by the linker because `dropin-host`'s loader
/// refers to it.
#[cfg(target_vendor = "apple")]
pub const APPLICATION_SECTION: &str = "__dropin_app";
/// The section of an executable that holds the descriptions of the
/// interfaces it loads plugins of, one after another: put there by the
/// interface crate, kept by the linker because `dropin-host`'s loader
/// refers to it.
#[cfg(windows)]
pub const APPLICATION_SECTION: &str = ".dropapp";
/// The section of an executable that holds the descriptions of the
/// interfaces it loads plugins of, one after another: put there by the
/// interface crate, kept by the linker because `dropin-host`'s loader
/// refers to it.
#[cfg(not(any(target_vendor = "apple", windows)))]
pub const APPLICATION_SECTION: &str = ".dropin_app";

/// The format this release of dropin writes and reads.
pub const FORMAT: u32 = 1;

/// The most bytes a description may have: far more than any interface
/// needs, and a bound on what a reader allocates.
pub const MAX_LEN: usize = 1 << 20;

/// The deepest nesting of types a description may have.
const MAX_DEPTH: usize = 32;

/// What the export macro puts in a description.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    /// Whose description: [`MAGIC`] for a plugin's, [`APPLICATION_MAGIC`]
    /// for an application's.
    pub magic: [u8; 8],
    pub plugin_name: &'static str,
    pub plugin_version: &'static str,
    pub interface_name: &'static str,
    pub interface_version: &'static str,
    pub dropin_version: &'static str,
    pub host_requirement: &'static str,
    pub arch: &'static str,
    pub os: &'static str,
    pub panic_abort: bool,
    pub debug_assertions: bool,
    pub methods: Methods,
    pub services_name: &'static str,
    pub services: &'static [MethodDesc],
}

/// The methods a description lists: those a plugin exports, or those its
/// interface declares.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Methods {
    Exported(&'static [MethodEntry]),
    Declared(&'static [MethodDesc]),
}

impl Methods {
    const fn len(&self) -> usize {
        match self {
            Self::Exported(entries) => entries.len(),
            Self::Declared(descs) => descs.len(),
        }
    }

    const fn get(&self, i: usize) -> &'static MethodDesc {
        match self {
            Self::Exported(entries) => &entries[i].desc,
            Self::Declared(descs) => &descs[i],
        }
    }
}

/// The bytes of `parts`' description: the `N` of [`encode`].
#[doc(hidden)]
pub const fn encoded_len(parts: &Parts) -> usize {
    Writer::<0>::measure().parts(parts).at
}

/// The description of `parts`, in [`FORMAT`]; `N` must be
/// [`encoded_len`]`(parts)` (a compile-time error otherwise).
#[doc(hidden)]
pub const fn encode<const N: usize>(parts: &Parts) -> [u8; N] {
    // What a host would refuse is refused when the plugin is compiled.
    assert!(N <= MAX_LEN, "a description over MAX_LEN bytes");
    let written = Writer::<N>::new().parts(parts);
    assert!(written.at == N, "the description's length is encoded_len");
    written.buf
}

/// Writes a description in const code; measures it when `measuring`.
struct Writer<const N: usize> {
    buf: [u8; N],
    at: usize,
    measuring: bool,
}

impl<const N: usize> Writer<N> {
    const fn new() -> Self {
        Self {
            buf: [0; N],
            at: 0,
            measuring: false,
        }
    }

    const fn measure() -> Self {
        Self {
            buf: [0; N],
            at: 0,
            measuring: true,
        }
    }

    const fn bytes(mut self, bytes: &[u8]) -> Self {
        if !self.measuring {
            let mut i = 0;
            while i < bytes.len() {
                self.buf[self.at + i] = bytes[i];
                i += 1;
            }
        }
        self.at += bytes.len();
        self
    }

    const fn u32(self, value: usize) -> Self {
        assert!(value <= u32::MAX as usize, "a count over u32");
        self.bytes(&(value as u32).to_le_bytes())
    }

    const fn u64(self, value: usize) -> Self {
        self.bytes(&(value as u64).to_le_bytes())
    }

    const fn byte(self, value: bool) -> Self {
        self.bytes(&[value as u8])
    }

    const fn str(self, text: &str) -> Self {
        self.u32(text.len()).bytes(text.as_bytes())
    }

    const fn parts(self, parts: &Parts) -> Self {
        let header = self.bytes(&parts.magic).u32(FORMAT as usize);
        let body_at = header.at;
        // The body's length, patched once the body is written.
        let mut this = header.u32(0);
        this = this
            .str(parts.plugin_name)
            .str(parts.plugin_version)
            .str(parts.interface_name)
            .str(parts.interface_version)
            .str(parts.dropin_version)
            .str(parts.host_requirement)
            .str(parts.arch)
            .str(parts.os)
            .byte(parts.panic_abort)
            .byte(parts.debug_assertions)
            .u32(parts.methods.len());
        let mut i = 0;
        while i < parts.methods.len() {
            this = this.method(parts.methods.get(i));
            i += 1;
        }
        this = this.str(parts.services_name).u32(parts.services.len());
        i = 0;
        while i < parts.services.len() {
            this = this.method(&parts.services[i]);
            i += 1;
        }
        let body = this.at - body_at - 4;
        if !this.measuring {
            let len = (body as u32).to_le_bytes();
            let mut j = 0;
            while j < 4 {
                this.buf[body_at + j] = len[j];
                j += 1;
            }
        }
        this
    }

    const fn method(self, method: &MethodDesc) -> Self {
        let args = method.args.as_slice();
        let mut this = self
            .str(method.name.as_str())
            .str(method.since.as_str())
            .u32(args.len());
        let mut i = 0;
        while i < args.len() {
            this = this.ty(args[i], 0);
            i += 1;
        }
        this.ty(method.ret, 0)
    }

    const fn ty(self, ty: &TypeDesc, depth: usize) -> Self {
        assert!(depth <= MAX_DEPTH, "types nested deeper than a host reads");
        let args = ty.args.as_slice();
        let mut this = self
            .str(ty.name.as_str())
            .u64(ty.size)
            .u64(ty.align)
            .u32(args.len());
        let mut i = 0;
        while i < args.len() {
            this = this.ty(args[i], depth + 1);
            i += 1;
        }
        let fields = ty.fields.as_slice();
        this = this.u32(fields.len());
        i = 0;
        while i < fields.len() {
            this = this
                .str(fields[i].name.as_str())
                .ty(fields[i].ty, depth + 1);
            i += 1;
        }
        let variants = ty.variants.as_slice();
        this = this.u32(variants.len());
        i = 0;
        while i < variants.len() {
            let fields = variants[i].fields.as_slice();
            this = this.str(variants[i].name.as_str()).u32(fields.len());
            let mut j = 0;
            while j < fields.len() {
                this = this
                    .str(fields[j].name.as_str())
                    .ty(fields[j].ty, depth + 1);
                j += 1;
            }
            i += 1;
        }
        this
    }
}

/// A plugin's description, as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Description {
    /// The plugin's name.
    pub plugin_name: String,
    /// The plugin's version.
    pub plugin_version: String,
    /// The interface it implements.
    pub interface_name: String,
    /// The interface version it was built against.
    pub interface_version: String,
    /// The `dropin` release it was built with.
    pub dropin_version: String,
    /// The host versions it supports (empty: any).
    pub host_requirement: String,
    /// The architecture it was built for (`x86_64`).
    pub arch: String,
    /// The operating system it was built for (`linux`).
    pub os: String,
    /// Whether it was built with `panic = "abort"`.
    pub panic_abort: bool,
    /// Whether it was built with debug assertions.
    pub debug_assertions: bool,
    /// Its methods, in the interface's order.
    pub methods: Vec<Method>,
    /// The host services trait its interface names (empty: none).
    pub services_name: String,
    /// The services a plugin may call, in the trait's order.
    pub services: Vec<Method>,
}

/// A method of a [`Description`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Method {
    /// Its name.
    pub name: String,
    /// The interface version that added it.
    pub since: String,
    /// Its arguments after `&self`.
    pub args: Vec<Type>,
    /// What it returns on success.
    pub ret: Type,
}

/// A type of a [`Description`], as [`TypeDesc`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Type {
    /// Its name as written in the interface.
    pub name: String,
    /// The size of its representation.
    pub size: u64,
    /// The alignment of its representation.
    pub align: u64,
    /// Its generic arguments.
    pub args: Vec<Type>,
    /// A struct's fields.
    pub fields: Vec<(String, Type)>,
    /// An enum's variants and their fields.
    pub variants: Vec<(String, Vec<(String, Type)>)>,
}

impl fmt::Display for Type {
    /// As written in the interface: `Vec<u8>`, `String`, `&str`, `(u8,
    /// String)`, `[u8; 4]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name.as_str(), self.args.as_slice()) {
            // A tuple: its items.
            ("()", [_, ..]) => {
                f.write_str("(")?;
                for (i, arg) in self.args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                return f.write_str(")");
            }
            // An array: its length is its size over its item's.
            ("[]", [item]) => {
                return match self.size.checked_div(item.size) {
                    Some(len) => write!(f, "[{item}; {len}]"),
                    None => write!(f, "[{item}; _]"),
                };
            }
            _ => {}
        }
        f.write_str(&self.name)?;
        if !self.args.is_empty() {
            f.write_str("<")?;
            for (i, arg) in self.args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{arg}")?;
            }
            f.write_str(">")?;
        }
        Ok(())
    }
}

impl fmt::Display for Method {
    /// `fn greet_to(&str) -> String`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fn {}(", self.name)?;
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{arg}")?;
        }
        write!(f, ") -> {}", self.ret)
    }
}

impl Method {
    /// This method as the interface that `desc` belongs to describes it.
    pub fn of(desc: &MethodDesc) -> Self {
        Self {
            name: crate::values::lossy(&desc.name).into_owned(),
            since: crate::values::lossy(&desc.since).into_owned(),
            args: items(desc.args).iter().map(|ty| Type::of(ty)).collect(),
            ret: Type::of(desc.ret),
        }
    }
}

impl Type {
    /// The type `desc` describes.
    pub fn of(desc: &TypeDesc) -> Self {
        let fields = |fields: &[crate::FieldDesc]| {
            fields
                .iter()
                .map(|field| {
                    (
                        crate::values::lossy(&field.name).into_owned(),
                        Self::of(field.ty),
                    )
                })
                .collect()
        };
        Self {
            name: crate::values::lossy(&desc.name).into_owned(),
            size: desc.size as u64,
            align: desc.align as u64,
            args: items(desc.args).iter().map(|ty| Self::of(ty)).collect(),
            fields: fields(items(desc.fields)),
            variants: items(desc.variants)
                .iter()
                .map(|variant| {
                    (
                        crate::values::lossy(&variant.name).into_owned(),
                        fields(items(variant.fields)),
                    )
                })
                .collect(),
        }
    }
}

impl Method {
    /// The first difference between `self` (the host's) and `found` (the
    /// plugin's), naming the argument or the result.
    pub fn difference(&self, found: &Method) -> Option<String> {
        let name = &self.name;
        if self.name != found.name {
            return Some(format!("expected method `{name}`, found `{}`", found.name));
        }
        if self.args.len() != found.args.len() {
            return Some(format!(
                "method `{name}`: expected {} arguments, found {}",
                self.args.len(),
                found.args.len()
            ));
        }
        for (i, (expected, actual)) in self.args.iter().zip(&found.args).enumerate() {
            if let Some(difference) = expected.difference(actual) {
                return Some(format!("method `{name}`: argument {}: {difference}", i + 1));
            }
        }
        self.ret
            .difference(&found.ret)
            .map(|difference| format!("method `{name}`: result: {difference}"))
    }
}

impl Type {
    /// The first difference between `self` (expected) and `found`, as a
    /// phrase naming where it is: `field `x`: expected f64, found f32`.
    pub fn difference(&self, found: &Type) -> Option<String> {
        // As written (an array's length included, which only its size
        // records).
        let written = || (self.to_string(), found.to_string());
        if self.name != found.name
            || self.args.len() != found.args.len()
            || (self.name == "[]" && written().0 != written().1)
        {
            return Some(format!("expected {self}, found {found}"));
        }
        for (expected, actual) in self.args.iter().zip(&found.args) {
            if let Some(difference) = expected.difference(actual) {
                return Some(difference);
            }
        }
        if let Some(difference) = fields_difference(&self.fields, &found.fields) {
            return Some(format!("{self}: {difference}"));
        }
        // An object's methods are its type's variants.
        let (variants, variant) = if self.name.starts_with("Box<dyn ") {
            ("methods", "method")
        } else {
            ("variants", "variant")
        };
        // An object's trait may have gained methods in a later minor
        // version (`#[since]`, each marked): one side's methods are then the
        // first of the other's, and calls to those it lacks fail as missing.
        let later = |methods: &[(String, Vec<(String, Type)>)]| {
            methods
                .iter()
                .all(|(_, fields)| fields.iter().any(|(name, _)| name == "since"))
        };
        let shared = self.variants.len().min(found.variants.len());
        let evolved = (self.name.starts_with("Box<dyn ") || self.name.starts_with("&dyn "))
            && later(&self.variants[shared..])
            && later(&found.variants[shared..]);
        if self.variants.len() != found.variants.len() && !evolved {
            return Some(format!(
                "{self}: expected {} {variants}, found {}",
                self.variants.len(),
                found.variants.len()
            ));
        }
        for ((expected, expected_fields), (actual, actual_fields)) in
            self.variants.iter().zip(&found.variants)
        {
            if expected != actual {
                return Some(format!(
                    "{self}: expected {variant} `{expected}`, found `{actual}`"
                ));
            }
            if let Some(difference) = fields_difference(expected_fields, actual_fields) {
                return Some(format!("{self}::{expected}: {difference}"));
            }
        }
        // Equal names and parts with another size: the same type compiled
        // for another target, or a representation that changed underneath.
        if self.size != found.size || self.align != found.align {
            return Some(format!(
                "{self}: expected {} bytes aligned to {}, found {} aligned to {}",
                self.size, self.align, found.size, found.align
            ));
        }
        None
    }
}

fn fields_difference(expected: &[(String, Type)], found: &[(String, Type)]) -> Option<String> {
    if expected.len() != found.len() {
        return Some(format!(
            "expected {} fields, found {}",
            expected.len(),
            found.len()
        ));
    }
    for ((expected, expected_ty), (actual, actual_ty)) in expected.iter().zip(found) {
        if expected != actual {
            return Some(format!("expected field `{expected}`, found `{actual}`"));
        }
        if let Some(difference) = expected_ty.difference(actual_ty) {
            return Some(format!("field `{expected}`: {difference}"));
        }
    }
    None
}

/// Why bytes are not a description this release can read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DescriptionError {
    /// The bytes do not start with [`MAGIC`].
    NotADescription,
    /// A format this release does not read.
    Format {
        /// The format the bytes declare.
        found: u32,
    },
    /// Longer than [`MAX_LEN`].
    TooLong {
        /// The length declared or found.
        len: usize,
    },
    /// The bytes end inside the description, or go on past it, or hold a
    /// value that cannot be (a string that is not UTF-8, a flag that is
    /// neither 0 nor 1, types nested too deep).
    Malformed {
        /// The byte offset where it went wrong.
        at: usize,
        /// What was expected there.
        expected: &'static str,
    },
}

impl fmt::Display for DescriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotADescription => write!(
                f,
                "expected a dropin description, found bytes that do not start with one"
            ),
            Self::Format { found } => write!(
                f,
                "expected description format {FORMAT}, found format {found} (built with another \
                 release of dropin)"
            ),
            Self::TooLong { len } => write!(
                f,
                "a description of {len} bytes; expected at most {MAX_LEN}"
            ),
            Self::Malformed { at, expected } => {
                write!(
                    f,
                    "a malformed description: expected {expected} at byte {at}"
                )
            }
        }
    }
}

impl std::error::Error for DescriptionError {}

/// The plugin's description in `bytes`, which must hold it and nothing
/// more.
///
/// # Errors
///
/// [`DescriptionError`] saying what is wrong: any bytes decode to a
/// description or an error, with no allocation larger than the bytes.
pub fn decode(bytes: &[u8]) -> Result<Description, DescriptionError> {
    decode_as(MAGIC, bytes)
}

/// The application's description in `bytes`, which must hold it and
/// nothing more: the interface it was built with (its plugin fields are
/// empty).
///
/// # Errors
///
/// As [`decode`].
pub fn decode_application(bytes: &[u8]) -> Result<Description, DescriptionError> {
    decode_as(APPLICATION_MAGIC, bytes)
}

fn decode_as(magic: [u8; 8], bytes: &[u8]) -> Result<Description, DescriptionError> {
    if bytes.len() > MAX_LEN {
        return Err(DescriptionError::TooLong { len: bytes.len() });
    }
    if bytes.get(..8) != Some(&magic[..]) {
        return Err(DescriptionError::NotADescription);
    }
    let mut reader = Reader { bytes, at: 8 };
    let format = reader.u32("the format")?;
    if format != FORMAT {
        return Err(DescriptionError::Format { found: format });
    }
    let body = reader.u32("the body's length")? as usize;
    if reader.at.checked_add(body) != Some(bytes.len()) {
        return Err(reader.malformed("a body of the declared length"));
    }
    let description = Description {
        plugin_name: reader.str("the plugin's name")?,
        plugin_version: reader.str("the plugin's version")?,
        interface_name: reader.str("the interface's name")?,
        interface_version: reader.str("the interface's version")?,
        dropin_version: reader.str("the dropin version")?,
        host_requirement: reader.str("the host requirement")?,
        arch: reader.str("the target architecture")?,
        os: reader.str("the target OS")?,
        panic_abort: reader.flag("the panic strategy")?,
        debug_assertions: reader.flag("the debug assertions flag")?,
        methods: reader.list("the methods", Reader::method)?,
        services_name: reader.str("the services trait's name")?,
        services: reader.list("the services", Reader::method)?,
    };
    if reader.at != bytes.len() {
        return Err(reader.malformed("the end of the description"));
    }
    Ok(description)
}

/// Reads a description, every length checked against the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn malformed(&self, expected: &'static str) -> DescriptionError {
        DescriptionError::Malformed {
            at: self.at,
            expected,
        }
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&[u8], DescriptionError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.malformed(what))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DescriptionError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DescriptionError> {
        let bytes = self.take(8, what)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, DescriptionError> {
        let at = self.at;
        match self.take(1, what)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(DescriptionError::Malformed { at, expected: what }),
        }
    }

    fn str(&mut self, what: &'static str) -> Result<String, DescriptionError> {
        let at = self.at;
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DescriptionError::Malformed { at, expected: what })
    }

    /// A count, then that many items; each item takes at least four bytes,
    /// so a count the bytes left cannot hold is refused before anything is
    /// allocated for it, and room is made for a few items at a time (an
    /// item in memory is larger than its encoding).
    fn list<T>(
        &mut self,
        what: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T, DescriptionError>,
    ) -> Result<Vec<T>, DescriptionError> {
        let count = self.u32(what)? as usize;
        if count > (self.bytes.len() - self.at) / 4 {
            return Err(self.malformed(what));
        }
        let mut items = Vec::with_capacity(count.min(16));
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn method(&mut self) -> Result<Method, DescriptionError> {
        Ok(Method {
            name: self.str("a method's name")?,
            since: self.str("a method's version")?,
            args: self.list("a method's arguments", |r| r.ty(0))?,
            ret: self.ty(0)?,
        })
    }

    fn ty(&mut self, depth: usize) -> Result<Type, DescriptionError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("types nested less deep"));
        }
        let field = |r: &mut Self| Ok((r.str("a field's name")?, r.ty(depth + 1)?));
        Ok(Type {
            name: self.str("a type's name")?,
            size: self.u64("a type's size")?,
            align: self.u64("a type's alignment")?,
            args: self.list("a type's arguments", |r| r.ty(depth + 1))?,
            fields: self.list("a type's fields", field)?,
            variants: self.list("a type's variants", |r| {
                Ok((
                    r.str("a variant's name")?,
                    r.list("a variant's fields", field)?,
                ))
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stable;

    extern "C" fn never() {}

    const METHODS: &[MethodEntry] = &[MethodEntry {
        desc: MethodDesc {
            name: abi_stable::std_types::RStr::from_str("greet_to"),
            since: abi_stable::std_types::RStr::from_str("1.1.0"),
            args: abi_stable::std_types::RSlice::from_slice(&[<&str as Stable>::DESC]),
            ret: <Vec<Option<String>> as Stable>::DESC,
        },
        func: never,
    }];

    const PARTS: Parts = Parts {
        magic: MAGIC,
        plugin_name: "hello",
        plugin_version: "1.0.0",
        interface_name: "greeter",
        interface_version: "2.1.0",
        dropin_version: "0.1.0",
        host_requirement: ">=0.1",
        arch: "x86_64",
        os: "linux",
        panic_abort: false,
        debug_assertions: true,
        methods: Methods::Exported(METHODS),
        services_name: "",
        services: &[],
    };

    const LEN: usize = encoded_len(&PARTS);
    static BYTES: [u8; LEN] = encode::<LEN>(&PARTS);

    #[test]
    fn what_is_encoded_at_compile_time_decodes_to_the_same_description() {
        let description = decode(&BYTES).unwrap();
        assert_eq!(description.plugin_name, "hello");
        assert_eq!(description.host_requirement, ">=0.1");
        assert!(description.debug_assertions && !description.panic_abort);
        assert_eq!(description.methods, [Method::of(&METHODS[0].desc)]);
        assert_eq!(
            description.methods[0].to_string(),
            "fn greet_to(&str) -> Vec<Option<String>>"
        );
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_an_error_or_a_description() {
        for cut in 0..BYTES.len() {
            assert!(decode(&BYTES[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..BYTES.len() {
            for bit in 0..8 {
                let mut bytes = BYTES.to_vec();
                bytes[at] ^= 1 << bit;
                let _ = decode(&bytes);
            }
        }
        assert_eq!(
            decode(b"dropin\0d\x02\0\0\0"),
            Err(DescriptionError::Format { found: 2 })
        );
        // A count no bytes could hold allocates nothing.
        let mut bytes = BYTES.to_vec();
        // The methods, then an empty services trait's name and no services.
        let methods_at = bytes.len() - {
            let mut tail = Writer::<0>::measure().u32(0);
            for entry in METHODS {
                tail = tail.method(&entry.desc);
            }
            tail.str("").u32(0).at
        };
        bytes[methods_at..methods_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(DescriptionError::Malformed {
                expected: "the methods",
                ..
            })
        ));
    }
}
