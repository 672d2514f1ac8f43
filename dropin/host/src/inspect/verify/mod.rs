//! Inspect layer, step 5: check a file's object-format headers before the dynamic loader
//! sees it.
//!
//! The dynamic loader trusts the headers: it maps every segment they describe.
//! A truncated copy of a real library makes it map pages past the end of the
//! file, and the first touch of those pages kills the process with `SIGBUS`.
//! So before a file is opened, its headers are read (only the headers, not the
//! whole file) and every byte range they point at must lie inside the file.

use std::{fmt, fs::File, io, path::Path};

/// An object-file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectFormat {
    /// ELF: Linux and most Unix systems.
    Elf,
    /// Mach-O: macOS.
    MachO,
    /// PE/COFF: Windows.
    Pe,
}

impl ObjectFormat {
    /// The format this platform's dynamic loader reads.
    pub const NATIVE: Self = if crate::sys::target::WINDOWS {
        Self::Pe
    } else if crate::sys::target::APPLE {
        Self::MachO
    } else {
        Self::Elf
    };
}

impl ObjectFormat {
    /// The format's name with its indefinite article, for messages.
    fn with_article(self) -> &'static str {
        match self {
            Self::Elf => "an ELF",
            Self::MachO => "a Mach-O",
            Self::Pe => "a PE",
        }
    }
}

impl fmt::Display for ObjectFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Elf => "ELF",
            Self::MachO => "Mach-O",
            Self::Pe => "PE",
        })
    }
}

/// Why a file cannot be a loadable library for this host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read the file")]
    Io(#[from] io::Error),
    /// The file has no bytes.
    #[error("the file is empty")]
    Empty,
    /// The file is not an object file of this platform's format.
    #[error("expected {} shared library, found {found}", expected.with_article())]
    WrongFormat {
        /// The platform's format.
        expected: ObjectFormat,
        /// What the first bytes look like.
        found: String,
    },
    /// A header field has a value this host cannot load.
    #[error("expected {field} {expected}, found {found}")]
    Mismatch {
        /// The header field.
        field: &'static str,
        /// What this host needs.
        expected: String,
        /// What the file says.
        found: String,
    },
    /// A header points outside the file: truncated or corrupt.
    #[error("truncated or corrupt: {what} ends at byte {end}, but the file has {len} bytes")]
    OutOfBounds {
        /// The structure that does not fit.
        what: String,
        /// Where it ends.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// A header is internally inconsistent.
    #[error("corrupt header: {0}")]
    Corrupt(String),
    /// The library asks for an executable stack (`PT_GNU_STACK` with execute
    /// permission): loading it would make every thread's stack of the host
    /// executable.
    #[error(
        "it asks for an executable stack, which would make the host's stacks executable; \
         expected a non-executable stack (rebuild without `-z execstack`)"
    )]
    ExecutableStack,
}

/// Checks that `path` holds a shared library this process could map safely:
/// the platform's object format, word size, byte order and architecture, and
/// every segment inside the file.
///
/// # Errors
///
/// [`VerifyError`] saying what was expected and what was found.
pub(crate) fn verify_library(path: &Path) -> Result<(), VerifyError> {
    verify_file(&File::open(path)?)
}

/// [`verify_library`] of an open file, read at offsets.
///
/// # Errors
///
/// As [`verify_library`].
pub(crate) fn verify_file(file: &File) -> Result<(), VerifyError> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(VerifyError::Empty);
    }
    let mut reader = Reader {
        file,
        len,
        windows: Vec::new(),
    };
    let head = reader.read(|| "the header".to_owned(), 0, len.min(64) as usize)?;
    let found = identify(&head);
    if found != Some(ObjectFormat::NATIVE) {
        return Err(VerifyError::WrongFormat {
            expected: ObjectFormat::NATIVE,
            found: describe(&head, found),
        });
    }
    match ObjectFormat::NATIVE {
        ObjectFormat::Elf => elf::verify(&mut reader, &head),
        ObjectFormat::MachO => macho::verify(&mut reader, &head),
        ObjectFormat::Pe => pe::verify(&mut reader, &head),
    }
}

fn identify(head: &[u8]) -> Option<ObjectFormat> {
    match head {
        [0x7f, b'E', b'L', b'F', ..] => Some(ObjectFormat::Elf),
        [0xcf, 0xfa, 0xed, 0xfe, ..]
        | [0xfe, 0xed, 0xfa, 0xcf, ..]
        | [0xce, 0xfa, 0xed, 0xfe, ..]
        | [0xfe, 0xed, 0xfa, 0xce, ..]
        | [0xca, 0xfe, 0xba, 0xbe, ..] => Some(ObjectFormat::MachO),
        [b'M', b'Z', ..] => Some(ObjectFormat::Pe),
        _ => None,
    }
}

fn describe(head: &[u8], format: Option<ObjectFormat>) -> String {
    if let Some(format) = format {
        return format!("{} file", format.with_article());
    }
    let printable = head
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if printable {
        return "a text file".to_owned();
    }
    let bytes: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("unknown bytes {}", bytes.join(" "))
}

/// How many bytes one read from the file fetches at least.
const WINDOW: u64 = 16 * 1024;
/// How many windows a [`Reader`] keeps.
const WINDOWS: usize = 4;

/// Bounded reads at offsets taken from untrusted headers.
///
/// What the checks read lies in a few places (the program headers, the
/// dynamic section and the tables it points at, usually in the first pages;
/// the section headers at the end), in many small pieces: each read from the
/// file fetches a window of [`WINDOW`] bytes around what was asked, and a
/// later read inside a window is served from memory. A library's checks
/// take a few system calls instead of dozens.
struct Reader<'f> {
    file: &'f File,
    len: u64,
    /// `(offset, bytes)`: what was read from the file, most recent last.
    windows: Vec<(u64, Vec<u8>)>,
}

impl Reader<'_> {
    /// Fails unless `offset + size` lies inside the file.
    fn check(
        &self,
        what: impl FnOnce() -> String,
        offset: u64,
        size: u64,
    ) -> Result<(), VerifyError> {
        match offset.checked_add(size) {
            Some(end) if end <= self.len => Ok(()),
            end => Err(VerifyError::OutOfBounds {
                what: what(),
                end: end.unwrap_or(u64::MAX),
                len: self.len,
            }),
        }
    }

    fn read(
        &mut self,
        what: impl FnOnce() -> String,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, VerifyError> {
        self.check(what, offset, size as u64)?;
        let end = offset + size as u64;
        let window = self
            .windows
            .iter()
            .find(|(at, bytes)| offset >= *at && end <= at + bytes.len() as u64);
        if let Some((at, bytes)) = window {
            let from = (offset - at) as usize;
            return Ok(bytes[from..from + size].to_vec());
        }
        if size as u64 >= WINDOW {
            let mut buf = vec![0; size];
            crate::sys::read_at(self.file, &mut buf, offset)?;
            return Ok(buf);
        }
        // From the page that holds `offset`, whole pages where the file has
        // them.
        let at = offset - offset % 4096;
        let stop = (at + WINDOW).min(self.len).max(end);
        let mut bytes = vec![0; (stop - at) as usize];
        crate::sys::read_at(self.file, &mut bytes, at)?;
        let from = (offset - at) as usize;
        let wanted = bytes[from..from + size].to_vec();
        if self.windows.len() == WINDOWS {
            self.windows.remove(0);
        }
        self.windows.push((at, bytes));
        Ok(wanted)
    }
}

/// The structure of type `T` at the start of `bytes`, which were read at
/// least at its size.
fn at_start<T: object::Pod>(bytes: &[u8]) -> &T {
    object::pod::from_bytes(bytes)
        .expect("read at the structure's size")
        .0
}

/// Every whole structure of type `T` in `bytes`.
fn all<T: object::Pod>(bytes: &[u8]) -> &[T] {
    let whole = bytes.len() - bytes.len() % size_of::<T>();
    object::pod::slice_from_all_bytes(&bytes[..whole]).expect("a whole number of structures")
}

fn too_short(format: ObjectFormat, needed: usize, len: u64) -> VerifyError {
    VerifyError::OutOfBounds {
        what: format!("the {format} header"),
        end: needed as u64,
        len,
    }
}

mod elf;
mod macho;
mod pe;

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn verify_bytes(bytes: &[u8]) -> Result<(), VerifyError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        verify_library(file.path())
    }

    #[test]
    fn empty_and_text_files_are_named_as_such() {
        assert!(matches!(verify_bytes(b""), Err(VerifyError::Empty)));
        let error = verify_bytes(b"not a library\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "expected {} shared library, found a text file",
                ObjectFormat::NATIVE.with_article()
            )
        );
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn elf_headers_that_point_past_the_end_are_refused() {
        // A 64-bit little-endian x86_64 shared object whose only program
        // header (at byte 64) describes a segment far beyond the file.
        let mut elf = vec![0u8; 64 + 56];
        elf[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        elf[16..18].copy_from_slice(&3u16.to_le_bytes());
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        elf[64 + 8..64 + 16].copy_from_slice(&0u64.to_le_bytes());
        elf[64 + 32..64 + 40].copy_from_slice(&4096u64.to_le_bytes());
        elf[64 + 40..64 + 48].copy_from_slice(&4096u64.to_le_bytes());
        let error = verify_bytes(&elf).unwrap_err();
        assert_eq!(
            error.to_string(),
            "truncated or corrupt: segment 0 (LOAD) ends at byte 4096, but the file has 120 bytes"
        );

        elf[18..20].copy_from_slice(&183u16.to_le_bytes());
        let error = verify_bytes(&elf).unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected architecture x86_64, found aarch64"
        );
    }
}
