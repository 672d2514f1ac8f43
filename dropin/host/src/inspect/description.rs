//! Inspect layer: a plugin's description ([`dropin::description`]), read
//! from its file as data: the dynamic symbol table locates it, and only its
//! bytes are read. Nothing of the library runs.
//!
//! Every read is bounded before it is made: the section table, the dynamic
//! symbol table and its strings each have a cap, a symbol's name is
//! compared where it lies (never copied), and the description itself is at
//! most [`MAX_LEN`] bytes. A hostile file gets an error, not the host's
//! memory or time.

use std::{fs::File, io, path::Path};

use dropin::description::{self, Description, DescriptionError, MAGIC, MAX_LEN, SYMBOL};
use object::{
    Endianness, Object, ObjectSection, ReadCache, ReadRef,
    elf::{self, FileHeader32, FileHeader64},
    read::elf::{FileHeader, SectionHeader, Sym},
};

/// The most interfaces an application's executable may describe: far more
/// than any program loads, and a bound on the work of reading them.
const MAX_INTERFACES: usize = 256;

/// The most bytes of a dynamic symbol table, or of its strings, that are
/// read to find the description: far more than any plugin exports.
const MAX_TABLE: u64 = 16 << 20;

/// Why a file's description could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptionReadError {
    /// The file could not be read.
    #[error("cannot read the file")]
    Io(#[from] io::Error),
    /// The file is not an object file this platform's tools can read.
    #[error("expected a shared library, found a file that is not one: {0}")]
    NotALibrary(String),
    /// The library exports no description: not a dropin plugin, or one
    /// built with a release of dropin from before descriptions.
    #[error(
        "expected the description a dropin plugin exports (`{SYMBOL}`), found a library \
         without one: not a dropin plugin, or built with an earlier dropin"
    )]
    Missing,
    /// The exported description does not lie in the file's bytes.
    #[error("its description at address {address:#x} is not in the file")]
    Outside {
        /// Where the symbol table says it is.
        address: u64,
    },
    /// The bytes are not a description this host can read.
    #[error(transparent)]
    Invalid(#[from] DescriptionError),
    /// An application's section of descriptions is not one this host
    /// reads.
    #[error("its descriptions of interfaces are not valid: expected {expected}")]
    InvalidApplication {
        /// What was expected and not found.
        expected: &'static str,
    },
    /// The executable holds no application's description.
    #[error(
        "expected a program that loads dropin plugins (its executable holds the description of \
         each interface it loads), found one without any"
    )]
    NoApplication,
}

/// The descriptions of the interfaces whose plugins the program at `path`
/// loads (one per interface; each a [`Description`] whose plugin fields are
/// empty), read from its executable's
/// [`APPLICATION_SECTION`](dropin::description::APPLICATION_SECTION)
/// without running it.
///
/// # Errors
///
/// [`DescriptionReadError::NoApplication`] for an executable without one;
/// the others as [`read_description`].
pub fn read_application(path: &Path) -> Result<Vec<Description>, DescriptionReadError> {
    let file = File::open(path)?;
    let data = ReadCache::new(&file);
    let object =
        object::File::parse(&data).map_err(|e| DescriptionReadError::NotALibrary(e.to_string()))?;
    let section = object
        .section_by_name(description::APPLICATION_SECTION)
        .ok_or(DescriptionReadError::NoApplication)?;
    let (at, len) = section
        .file_range()
        .ok_or(DescriptionReadError::NoApplication)?;
    if len > MAX_TABLE {
        return Err(DescriptionError::TooLong {
            len: usize::try_from(len).unwrap_or(usize::MAX),
        }
        .into());
    }
    let mut bytes = data
        .read_bytes_at(at, len)
        .map_err(|()| DescriptionReadError::Outside { address: at })?;
    // One description after another, as the linker placed them (padding
    // between them, if any, is zeros).
    let mut found: Vec<Description> = Vec::new();
    // Every description counts, repeated ones too: the bound is on the work.
    let mut read = 0;
    loop {
        while let [0, rest @ ..] = bytes {
            bytes = rest;
        }
        if bytes.is_empty() {
            break;
        }
        if read == MAX_INTERFACES {
            return Err(DescriptionReadError::InvalidApplication {
                expected: "at most 256 descriptions",
            });
        }
        read += 1;
        let len = bytes
            .get(12..16)
            .map(|len| 16 + u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize)
            .filter(|len| *len <= bytes.len())
            .ok_or(DescriptionReadError::InvalidApplication {
                expected: "whole descriptions, one after another",
            })?;
        let description = description::decode_application(&bytes[..len])?;
        if !found.contains(&description) {
            found.push(description);
        }
        bytes = &bytes[len..];
    }
    if found.is_empty() {
        return Err(DescriptionReadError::NoApplication);
    }
    Ok(found)
}

/// The description of the library at `path`.
///
/// # Errors
///
/// [`DescriptionReadError`] saying what was expected and found.
pub fn read_description(path: &Path) -> Result<Description, DescriptionReadError> {
    read_description_bytes(path).map(|(description, _)| description)
}

/// [`read_description`], with the bytes it was decoded from.
pub(crate) fn read_description_bytes(
    path: &Path,
) -> Result<(Description, Vec<u8>), DescriptionReadError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let data = ReadCache::new(AtOffsets {
        file: &file,
        at: 0,
        len,
    });
    let bytes = description_bytes_in(&data)?;
    Ok((description::decode(bytes)?, bytes.to_vec()))
}

/// A file read at offsets: a seek costs no system call, so each read the
/// object parser asks for is one `pread`, which keeps reading a description
/// at a few microseconds.
struct AtOffsets<'f> {
    file: &'f File,
    at: u64,
    len: u64,
}

impl io::Read for AtOffsets<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.len.saturating_sub(self.at)).unwrap_or(usize::MAX));
        crate::sys::read_at(self.file, &mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl io::Seek for AtOffsets<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let at = match to {
            io::SeekFrom::Start(at) => Some(at),
            io::SeekFrom::End(by) => self.len.checked_add_signed(by),
            io::SeekFrom::Current(by) => self.at.checked_add_signed(by),
        };
        self.at = at.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.at)
    }
}

/// The description of the library whose bytes are `bytes`: the same bytes
/// a caller hashes, so that what it records and what it judged are one
/// file.
///
/// # Errors
///
/// As [`read_description`].
pub fn description_of(bytes: &[u8]) -> Result<Description, DescriptionReadError> {
    Ok(description::decode(description_bytes_in(bytes)?)?)
}

/// The bytes of the description in `data`, not yet decoded.
fn description_bytes_in<'a, R: ReadRef<'a>>(data: R) -> Result<&'a [u8], DescriptionReadError> {
    // The ELF header's 64 bytes, which the parser reads next, when there
    // are that many: one read for both.
    let head = data
        .read_bytes_at(0, 64)
        .or_else(|()| data.read_bytes_at(0, 5))
        .map(|head| &head[..5]);
    let (start, end) = match head {
        Ok([0x7f, b'E', b'L', b'F', 1]) => locate_elf::<FileHeader32<Endianness>, R>(data)?,
        Ok([0x7f, b'E', b'L', b'F', 2]) => locate_elf::<FileHeader64<Endianness>, R>(data)?,
        _ => locate_any(data)?,
    };
    // The header says how long it is: read no more than that, and never
    // more than a description may be.
    let outside = || DescriptionReadError::Outside { address: start };
    // Descriptions are small: one read takes the header and, most often,
    // the whole description.
    let ahead = data
        .read_bytes_at(start, end.saturating_sub(start).min(4096))
        .map_err(|()| outside())?;
    let header = ahead.get(..16).ok_or_else(outside)?;
    if header[..8] != MAGIC {
        return Err(DescriptionError::NotADescription.into());
    }
    let len = 16
        + u64::from(u32::from_le_bytes(
            header[12..16].try_into().expect("4 bytes"),
        ));
    if len > MAX_LEN as u64 {
        return Err(DescriptionError::TooLong {
            len: usize::try_from(len).unwrap_or(usize::MAX),
        }
        .into());
    }
    if start.checked_add(len).is_none_or(|stop| stop > end) {
        return Err(outside());
    }
    let bytes = match ahead.get(..len as usize) {
        Some(bytes) => bytes,
        None => data.read_bytes_at(start, len).map_err(|()| outside())?,
    };
    Ok(bytes)
}

/// Where an ELF library's description lies in the file, found the way the
/// dynamic loader finds a symbol: in the dynamic symbol table, by name. The
/// file's bytes from the description to the end of its section.
fn locate_elf<'a, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'a>>(
    data: R,
) -> Result<(u64, u64), DescriptionReadError> {
    let not_elf = |what: &str| DescriptionReadError::NotALibrary(what.to_owned());
    let header = Elf::parse(data).map_err(|e| not_elf(&e.to_string()))?;
    let e = header.endian().map_err(|e| not_elf(&e.to_string()))?;
    // The section table: at most 2^16 entries of a fixed size. A count of
    // zero is a library without sections (or one whose count lies in the
    // first entry, which no linker writes for a library): no table to look
    // in.
    let count = usize::from(header.e_shnum(e));
    let entry = size_of::<Elf::SectionHeader>();
    if count == 0 || usize::from(header.e_shentsize(e)) != entry {
        return Err(DescriptionReadError::Missing);
    }
    let table = data
        .read_bytes_at(header.e_shoff(e).into(), (count * entry) as u64)
        .map_err(|()| not_elf("the section table is not in the file"))?;
    let sections: &[Elf::SectionHeader] =
        object::pod::slice_from_all_bytes(table).map_err(|()| not_elf("the section table"))?;
    let dynsym = sections
        .iter()
        .find(|section| section.sh_type(e) == elf::SHT_DYNSYM)
        .ok_or(DescriptionReadError::Missing)?;
    let read_table = |section: &Elf::SectionHeader, what: &str| {
        let size: u64 = section.sh_size(e).into();
        if size > MAX_TABLE || section.sh_type(e) == elf::SHT_NOBITS {
            return Err(not_elf(what));
        }
        data.read_bytes_at(section.sh_offset(e).into(), size)
            .map_err(|()| not_elf(what))
    };
    let symbols = read_table(dynsym, "the dynamic symbol table")?;
    let strings = sections
        .get(dynsym.sh_link(e) as usize)
        .ok_or_else(|| not_elf("the dynamic symbol table's strings"))
        .and_then(|section| read_table(section, "the dynamic symbol table's strings"))?;
    let whole = symbols.len() - symbols.len() % size_of::<Elf::Sym>();
    let symbols: &[Elf::Sym] = object::pod::slice_from_all_bytes(&symbols[..whole])
        .map_err(|()| not_elf("the dynamic symbol table"))?;
    let wanted = SYMBOL.as_bytes();
    let symbol = symbols
        .iter()
        .find(|symbol| {
            let at = symbol.st_name(e) as usize;
            // The name in place: the wanted bytes, then a NUL.
            strings.get(at..at + wanted.len()) == Some(wanted)
                && strings.get(at + wanted.len()) == Some(&0)
                && symbol.st_shndx(e) != elf::SHN_UNDEF
        })
        .ok_or(DescriptionReadError::Missing)?;
    let address: u64 = symbol.st_value(e).into();
    let outside = || DescriptionReadError::Outside { address };
    // The section that holds it, allocated and backed by the file.
    let section = sections
        .get(usize::from(symbol.st_shndx(e)))
        .filter(|section| {
            let flags: u64 = section.sh_flags(e).into();
            section.sh_type(e) != elf::SHT_NOBITS && flags & u64::from(elf::SHF_ALLOC) != 0
        })
        .ok_or_else(outside)?;
    let offset = address
        .checked_sub(section.sh_addr(e).into())
        .filter(|offset| *offset < section.sh_size(e).into())
        .ok_or_else(outside)?;
    let start: u64 = section.sh_offset(e).into();
    let end = start
        .checked_add(section.sh_size(e).into())
        .ok_or_else(outside)?;
    Ok((start.checked_add(offset).ok_or_else(outside)?, end))
}

/// Where a Mach-O or PE library's description lies, through the `object`
/// crate's export table. The file's bytes from the description to the end
/// of its section.
fn locate_any<'a, R: ReadRef<'a>>(data: R) -> Result<(u64, u64), DescriptionReadError> {
    let object =
        object::File::parse(data).map_err(|e| DescriptionReadError::NotALibrary(e.to_string()))?;
    let mach_o = matches!(object, object::File::MachO32(_) | object::File::MachO64(_));
    let address = object
        .exports()
        .map_err(|e| DescriptionReadError::NotALibrary(e.to_string()))?
        .iter()
        .find(|export| {
            let name = export.name();
            // Mach-O prefixes C symbols with an underscore.
            let name = if mach_o {
                name.strip_prefix(b"_").unwrap_or(name)
            } else {
                name
            };
            name == SYMBOL.as_bytes()
        })
        .map(object::Export::address)
        .ok_or(DescriptionReadError::Missing)?;
    object
        .sections()
        .find_map(|section| {
            let offset = address.checked_sub(section.address())?;
            let (file_at, file_len) = section.file_range()?;
            if offset >= file_len {
                return None;
            }
            Some((file_at.checked_add(offset)?, file_at.checked_add(file_len)?))
        })
        .ok_or(DescriptionReadError::Outside { address })
}
