//! Stage 2: check a file's object-format headers before the dynamic loader
//! sees it.
//!
//! The dynamic loader trusts the headers: it maps every segment they describe.
//! A truncated copy of a real library makes it map pages past the end of the
//! file, and the first touch of those pages kills the process with `SIGBUS`.
//! So before a file is opened, its headers are read (only the headers, not the
//! whole file) and every byte range they point at must lie inside the file.

use std::{
    fmt,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::Path,
};

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
    pub const NATIVE: Self = if cfg!(target_os = "windows") {
        Self::Pe
    } else if cfg!(target_vendor = "apple") {
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
}

/// Checks that `path` holds a shared library this process could map safely:
/// the platform's object format, word size, byte order and architecture, and
/// every segment inside the file.
///
/// # Errors
///
/// [`VerifyError`] saying what was expected and what was found.
pub fn verify_library(path: &Path) -> Result<(), VerifyError> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(VerifyError::Empty);
    }
    let mut head = [0u8; 64];
    let n = read_up_to(&mut file, &mut head)?;
    let head = &head[..n];
    let found = identify(head);
    if found != Some(ObjectFormat::NATIVE) {
        return Err(VerifyError::WrongFormat {
            expected: ObjectFormat::NATIVE,
            found: describe(head, found),
        });
    }
    let mut reader = Reader { file, len };
    match ObjectFormat::NATIVE {
        ObjectFormat::Elf => elf::verify(&mut reader, head),
        ObjectFormat::MachO => macho::verify(&mut reader, head),
        ObjectFormat::Pe => pe::verify(&mut reader, head),
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
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

/// Bounded reads at offsets taken from untrusted headers.
struct Reader {
    file: File,
    len: u64,
}

impl Reader {
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
        let mut buf = vec![0; size];
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(&mut buf)?;
        Ok(buf)
    }
}

/// Reads integers of either byte order from a header.
#[derive(Clone, Copy)]
struct Endian {
    little: bool,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let bytes = [b[at], b[at + 1]];
        if self.little {
            u16::from_le_bytes(bytes)
        } else {
            u16::from_be_bytes(bytes)
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let bytes = b[at..at + 4].try_into().expect("4 bytes");
        if self.little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    }

    fn u64(self, b: &[u8], at: usize) -> u64 {
        let bytes = b[at..at + 8].try_into().expect("8 bytes");
        if self.little {
            u64::from_le_bytes(bytes)
        } else {
            u64::from_be_bytes(bytes)
        }
    }
}

fn too_short(format: ObjectFormat, needed: usize, len: u64) -> VerifyError {
    VerifyError::OutOfBounds {
        what: format!("the {format} header"),
        end: needed as u64,
        len,
    }
}

mod elf {
    use super::{Endian, ObjectFormat, Reader, VerifyError, too_short};

    const ET_DYN: u16 = 3;
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;

    /// `e_machine` values, by Rust's `target_arch` names.
    const MACHINES: &[(&str, u16)] = &[
        ("x86", 3),
        ("mips", 8),
        ("powerpc", 20),
        ("powerpc64", 21),
        ("s390x", 22),
        ("arm", 40),
        ("sparc64", 43),
        ("x86_64", 62),
        ("aarch64", 183),
        ("riscv64", 243),
        ("loongarch64", 258),
    ];

    fn machine_name(machine: u16) -> String {
        MACHINES.iter().find(|(_, m)| *m == machine).map_or_else(
            || format!("machine {machine}"),
            |(name, _)| (*name).to_owned(),
        )
    }

    pub(super) fn verify(reader: &mut Reader, head: &[u8]) -> Result<(), VerifyError> {
        if head.len() < 20 {
            return Err(too_short(ObjectFormat::Elf, 20, reader.len));
        }
        let is64 = match head[4] {
            1 => false,
            2 => true,
            class => return Err(VerifyError::Corrupt(format!("ELF class {class}"))),
        };
        let little = match head[5] {
            1 => true,
            2 => false,
            data => return Err(VerifyError::Corrupt(format!("ELF data encoding {data}"))),
        };
        let host64 = cfg!(target_pointer_width = "64");
        if is64 != host64 {
            return Err(VerifyError::Mismatch {
                field: "word size",
                expected: if host64 { "64-bit" } else { "32-bit" }.to_owned(),
                found: if is64 { "64-bit" } else { "32-bit" }.to_owned(),
            });
        }
        let host_little = cfg!(target_endian = "little");
        if little != host_little {
            let name = |l: bool| if l { "little-endian" } else { "big-endian" }.to_owned();
            return Err(VerifyError::Mismatch {
                field: "byte order",
                expected: name(host_little),
                found: name(little),
            });
        }
        let header_len = if is64 { 64 } else { 52 };
        if head.len() < header_len {
            return Err(too_short(ObjectFormat::Elf, header_len, reader.len));
        }
        let e = Endian { little };
        let kind = e.u16(head, 16);
        if kind != ET_DYN {
            let found = match kind {
                0 => "no file type".to_owned(),
                1 => "a relocatable object".to_owned(),
                2 => "an executable".to_owned(),
                4 => "a core dump".to_owned(),
                other => format!("file type {other}"),
            };
            return Err(VerifyError::Mismatch {
                field: "file type",
                expected: "a shared library".to_owned(),
                found,
            });
        }
        let machine = e.u16(head, 18);
        if let Some((arch, expected)) = MACHINES
            .iter()
            .find(|(arch, _)| *arch == std::env::consts::ARCH)
            && *expected != machine
        {
            return Err(VerifyError::Mismatch {
                field: "architecture",
                expected: (*arch).to_owned(),
                found: machine_name(machine),
            });
        }
        let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if is64 {
            (
                e.u64(head, 32),
                e.u64(head, 40),
                e.u16(head, 54),
                e.u16(head, 56),
                e.u16(head, 58),
                e.u16(head, 60),
            )
        } else {
            let (ph, sh) = (e.u32(head, 28), e.u32(head, 32));
            (
                u64::from(ph),
                u64::from(sh),
                e.u16(head, 42),
                e.u16(head, 44),
                e.u16(head, 46),
                e.u16(head, 48),
            )
        };
        let (want_ph, want_sh) = if is64 { (56, 64) } else { (32, 40) };
        if phentsize != want_ph {
            return Err(VerifyError::Corrupt(format!(
                "program header size {phentsize}, expected {want_ph}"
            )));
        }
        if phnum == 0 {
            return Err(VerifyError::Corrupt("no program headers".to_owned()));
        }
        let table = reader.read(
            || "the program header table".to_owned(),
            phoff,
            usize::from(phnum) * usize::from(phentsize),
        )?;
        let mut has_dynamic = false;
        for (index, ph) in table.chunks_exact(usize::from(phentsize)).enumerate() {
            let kind = e.u32(ph, 0);
            let (offset, filesz, memsz) = if is64 {
                (e.u64(ph, 8), e.u64(ph, 32), e.u64(ph, 40))
            } else {
                (
                    u64::from(e.u32(ph, 4)),
                    u64::from(e.u32(ph, 16)),
                    u64::from(e.u32(ph, 20)),
                )
            };
            if kind != PT_LOAD && kind != PT_DYNAMIC {
                continue;
            }
            has_dynamic |= kind == PT_DYNAMIC;
            if kind == PT_LOAD && filesz > memsz {
                return Err(VerifyError::Corrupt(format!(
                    "segment {index} has {filesz} bytes in the file but {memsz} in memory"
                )));
            }
            reader.check(|| format!("segment {index}"), offset, filesz)?;
        }
        // The loader never reads section headers, but a table past the end
        // means the file was cut; its tail (symbols, debug info) is missing.
        if shnum != 0 {
            if shentsize != want_sh {
                return Err(VerifyError::Corrupt(format!(
                    "section header size {shentsize}, expected {want_sh}"
                )));
            }
            reader.check(
                || "the section header table".to_owned(),
                shoff,
                u64::from(shnum) * u64::from(shentsize),
            )?;
        }
        if !has_dynamic {
            return Err(VerifyError::Mismatch {
                field: "a dynamic segment",
                expected: "present".to_owned(),
                found: "none".to_owned(),
            });
        }
        Ok(())
    }
}

mod macho {
    use super::{Endian, ObjectFormat, Reader, VerifyError, too_short};

    const MH_DYLIB: u32 = 6;
    const LC_SEGMENT_64: u32 = 0x19;

    pub(super) fn verify(reader: &mut Reader, head: &[u8]) -> Result<(), VerifyError> {
        let little = match head[..4] {
            [0xcf, 0xfa, 0xed, 0xfe] => true,
            [0xfe, 0xed, 0xfa, 0xcf] => false,
            _ => {
                return Err(VerifyError::Mismatch {
                    field: "Mach-O kind",
                    expected: "a thin 64-bit library".to_owned(),
                    found: "a 32-bit or universal file".to_owned(),
                });
            }
        };
        if head.len() < 32 {
            return Err(too_short(ObjectFormat::MachO, 32, reader.len));
        }
        let e = Endian { little };
        let filetype = e.u32(head, 12);
        if filetype != MH_DYLIB {
            return Err(VerifyError::Mismatch {
                field: "file type",
                expected: "a dynamic library".to_owned(),
                found: format!("file type {filetype}"),
            });
        }
        let ncmds = e.u32(head, 16);
        let sizeofcmds = e.u32(head, 20) as usize;
        let cmds = reader.read(|| "the load commands".to_owned(), 32, sizeofcmds)?;
        let mut at = 0usize;
        for index in 0..ncmds {
            if at + 8 > cmds.len() {
                return Err(VerifyError::Corrupt(format!(
                    "load command {index} overruns the table"
                )));
            }
            let (cmd, size) = (e.u32(&cmds, at), e.u32(&cmds, at + 4) as usize);
            if size < 8 || at + size > cmds.len() {
                return Err(VerifyError::Corrupt(format!(
                    "load command {index} has size {size}"
                )));
            }
            if cmd == LC_SEGMENT_64 && size >= 56 {
                let (fileoff, filesize) = (e.u64(&cmds, at + 40), e.u64(&cmds, at + 48));
                reader.check(|| format!("segment {index}"), fileoff, filesize)?;
            }
            at += size;
        }
        Ok(())
    }
}

mod pe {
    use super::{Endian, ObjectFormat, Reader, VerifyError, too_short};

    const IMAGE_FILE_DLL: u16 = 0x2000;

    pub(super) fn verify(reader: &mut Reader, head: &[u8]) -> Result<(), VerifyError> {
        if head.len() < 64 {
            return Err(too_short(ObjectFormat::Pe, 64, reader.len));
        }
        let e = Endian { little: true };
        let pe_offset = u64::from(e.u32(head, 60));
        let coff = reader.read(|| "the PE header".to_owned(), pe_offset, 24)?;
        if coff[..4] != *b"PE\0\0" {
            return Err(VerifyError::Corrupt("missing PE signature".to_owned()));
        }
        let sections = e.u16(&coff, 6);
        let optional_size = e.u16(&coff, 20);
        let characteristics = e.u16(&coff, 22);
        if characteristics & IMAGE_FILE_DLL == 0 {
            return Err(VerifyError::Mismatch {
                field: "file type",
                expected: "a DLL".to_owned(),
                found: "an executable".to_owned(),
            });
        }
        let table_at = pe_offset + 24 + u64::from(optional_size);
        let table = reader.read(
            || "the section table".to_owned(),
            table_at,
            usize::from(sections) * 40,
        )?;
        for (index, section) in table.chunks_exact(40).enumerate() {
            let (size, offset) = (e.u32(section, 16), e.u32(section, 20));
            reader.check(
                || format!("section {index}"),
                u64::from(offset),
                u64::from(size),
            )?;
        }
        Ok(())
    }
}

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
        elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        elf[16..18].copy_from_slice(&3u16.to_le_bytes());
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
            "truncated or corrupt: segment 0 ends at byte 4096, but the file has 120 bytes"
        );

        elf[18..20].copy_from_slice(&183u16.to_le_bytes());
        let error = verify_bytes(&elf).unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected architecture x86_64, found aarch64"
        );
    }
}
