//! Inspect layer: a plugin's description ([`dropin::description`]), read
//! from its file as data: the object file's export table locates it, and
//! only its bytes are read. Nothing of the library runs.

use std::{fs::File, io, path::Path};

use dropin::description::{self, Description, DescriptionError, MAX_LEN, SYMBOL};
use object::{Object, ObjectSection, ReadCache, ReadRef};

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
        /// Where the export table says it is.
        address: u64,
    },
    /// The bytes are not a description this host can read.
    #[error("{0}")]
    Invalid(#[from] DescriptionError),
}

/// The description of the library at `path`.
///
/// # Errors
///
/// [`DescriptionReadError`] saying what was expected and found.
pub fn read_description(path: &Path) -> Result<Description, DescriptionReadError> {
    let file = File::open(path)?;
    let data = ReadCache::new(&file);
    let object =
        object::File::parse(&data).map_err(|e| DescriptionReadError::NotALibrary(e.to_string()))?;
    let address = object
        .exports()
        .map_err(|e| DescriptionReadError::NotALibrary(e.to_string()))?
        .iter()
        .find(|export| {
            // Mach-O prefixes C symbols with an underscore.
            let name = export.name();
            name == SYMBOL.as_bytes() || name.strip_prefix(b"_") == Some(SYMBOL.as_bytes())
        })
        .map(object::Export::address)
        .ok_or(DescriptionReadError::Missing)?;
    let outside = || DescriptionReadError::Outside { address };
    // The file bytes of the section that holds it.
    let (start, end) = object
        .sections()
        .find_map(|section| {
            let offset = address.checked_sub(section.address())?;
            let (file_at, file_len) = section.file_range()?;
            (offset < file_len).then(|| (file_at + offset, file_at + file_len))
        })
        .ok_or_else(outside)?;
    // The header says how long it is: read no more than that, and never
    // more than a description may be.
    let header = data.read_bytes_at(start, 16).map_err(|()| outside())?;
    if header[..8] != description::MAGIC {
        return Err(DescriptionError::NotADescription.into());
    }
    let body = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes")) as u64;
    let len = 16 + body;
    if len > MAX_LEN as u64 {
        return Err(DescriptionError::TooLong {
            len: usize::try_from(len).unwrap_or(usize::MAX),
        }
        .into());
    }
    if start + len > end {
        return Err(outside());
    }
    let bytes = data.read_bytes_at(start, len).map_err(|()| outside())?;
    Ok(description::decode(bytes)?)
}
