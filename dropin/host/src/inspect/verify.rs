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
pub fn verify_library(path: &Path) -> Result<(), VerifyError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(VerifyError::Empty);
    }
    let mut reader = Reader {
        file: &file,
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
    //! The dynamic loader maps every `PT_LOAD` segment, then trusts the
    //! dynamic section and the other segments to point into what it mapped.
    //! A header that lies (a moved or resized segment, a segment whose type
    //! changed, a TLS or RELRO range past its segment) makes it read, write
    //! or jump outside the mapping: a crash, not an error. So besides the
    //! bounds of the file, the checks here prove that the segments are
    //! consistent with each other, with the dynamic section and with the
    //! section headers, as every linker writes them.

    use super::{Endian, ObjectFormat, Reader, VerifyError, too_short};

    const ET_DYN: u16 = 3;
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    const PT_NOTE: u32 = 4;
    const PT_PHDR: u32 = 6;
    const PT_TLS: u32 = 7;
    const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
    const PT_GNU_RELRO: u32 = 0x6474_e552;
    const PT_GNU_STACK: u32 = 0x6474_e551;
    const SHF_WRITE: u64 = 0x1;
    const SHF_ALLOC: u64 = 0x2;
    const SHF_EXECINSTR: u64 = 0x4;
    const PF_X: u32 = 0x1;
    const PF_W: u32 = 0x2;
    const PF_R: u32 = 0x4;
    const SHF_TLS: u64 = 0x400;
    const SHT_NOBITS: u32 = 8;
    /// No plugin needs a memory image anywhere near this large.
    const MAX_IMAGE: u64 = 1 << 32;

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

    /// Dynamic tags whose value is an address in the image, with the tag of
    /// the size that goes with it (0: none).
    const ADDRESS_TAGS: &[(u64, &str, u64)] = &[
        (3, "DT_PLTGOT", 0),
        (4, "DT_HASH", 0),
        (5, "DT_STRTAB", 10),
        (6, "DT_SYMTAB", 0),
        (7, "DT_RELA", 8),
        (12, "DT_INIT", 0),
        (13, "DT_FINI", 0),
        (17, "DT_REL", 18),
        (23, "DT_JMPREL", 2),
        (25, "DT_INIT_ARRAY", 27),
        (26, "DT_FINI_ARRAY", 28),
        (32, "DT_PREINIT_ARRAY", 33),
        (0x6fff_fef5, "DT_GNU_HASH", 0),
        (0x6fff_fff0, "DT_VERSYM", 0),
        (0x6fff_fffc, "DT_VERDEF", 0),
        (0x6fff_fffe, "DT_VERNEED", 0),
    ];

    fn machine_name(machine: u16) -> String {
        MACHINES.iter().find(|(_, m)| *m == machine).map_or_else(
            || format!("machine {machine}"),
            |(name, _)| (*name).to_owned(),
        )
    }

    fn segment_name(kind: u32) -> String {
        match kind {
            PT_LOAD => "LOAD".to_owned(),
            PT_DYNAMIC => "DYNAMIC".to_owned(),
            PT_INTERP => "INTERP".to_owned(),
            PT_NOTE => "NOTE".to_owned(),
            PT_PHDR => "PHDR".to_owned(),
            PT_TLS => "TLS".to_owned(),
            PT_GNU_EH_FRAME => "GNU_EH_FRAME".to_owned(),
            PT_GNU_RELRO => "GNU_RELRO".to_owned(),
            other => format!("type {other:#x}"),
        }
    }

    fn corrupt(message: String) -> VerifyError {
        VerifyError::Corrupt(message)
    }

    /// One program header.
    #[derive(Clone, Copy)]
    struct Segment {
        index: usize,
        kind: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    }

    impl Segment {
        fn what(&self) -> String {
            format!("segment {} ({})", self.index, segment_name(self.kind))
        }

        fn end(&self) -> Option<u64> {
            self.vaddr.checked_add(self.memsz)
        }

        /// Whether `[vaddr, vaddr + len)` lies in this (loadable) segment.
        fn holds(&self, vaddr: u64, len: u64) -> bool {
            match (vaddr.checked_add(len), self.end()) {
                (Some(end), Some(own_end)) => vaddr >= self.vaddr && end <= own_end,
                _ => false,
            }
        }

        /// Whether the `len` file bytes at `offset` are what this segment
        /// maps at `vaddr`: same displacement, and inside the part of the
        /// segment that comes from the file (the rest is zero-filled).
        fn maps(&self, offset: u64, vaddr: u64, len: u64) -> bool {
            offset.checked_sub(self.offset) == vaddr.checked_sub(self.vaddr)
                && offset
                    .checked_add(len)
                    .is_some_and(|end| end <= self.offset + self.filesz)
        }
    }

    /// The file's layout as read from its header.
    struct Layout {
        is64: bool,
        e: Endian,
    }

    impl Layout {
        fn word(&self, b: &[u8], at: usize) -> u64 {
            if self.is64 {
                self.e.u64(b, at)
            } else {
                u64::from(self.e.u32(b, at))
            }
        }

        fn segment(&self, index: usize, ph: &[u8]) -> Segment {
            let e = self.e;
            if self.is64 {
                Segment {
                    index,
                    kind: e.u32(ph, 0),
                    flags: e.u32(ph, 4),
                    offset: e.u64(ph, 8),
                    vaddr: e.u64(ph, 16),
                    filesz: e.u64(ph, 32),
                    memsz: e.u64(ph, 40),
                    align: e.u64(ph, 48),
                }
            } else {
                Segment {
                    index,
                    kind: e.u32(ph, 0),
                    flags: e.u32(ph, 24),
                    offset: u64::from(e.u32(ph, 4)),
                    vaddr: u64::from(e.u32(ph, 8)),
                    filesz: u64::from(e.u32(ph, 16)),
                    memsz: u64::from(e.u32(ph, 20)),
                    align: u64::from(e.u32(ph, 28)),
                }
            }
        }
    }

    pub(super) fn verify(reader: &mut Reader, head: &[u8]) -> Result<(), VerifyError> {
        if head.len() < 20 {
            return Err(too_short(ObjectFormat::Elf, 20, reader.len));
        }
        let is64 = match head[4] {
            1 => false,
            2 => true,
            class => return Err(corrupt(format!("ELF class {class}"))),
        };
        let little = match head[5] {
            1 => true,
            2 => false,
            data => return Err(corrupt(format!("ELF data encoding {data}"))),
        };
        let host64 = crate::sys::target::POINTER_64;
        if is64 != host64 {
            return Err(VerifyError::Mismatch {
                field: "word size",
                expected: if host64 { "64-bit" } else { "32-bit" }.to_owned(),
                found: if is64 { "64-bit" } else { "32-bit" }.to_owned(),
            });
        }
        let host_little = crate::sys::target::LITTLE_ENDIAN;
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
        let layout = Layout {
            is64,
            e: Endian { little },
        };
        let e = layout.e;
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
        // What glibc's loader refuses in the identification, refused here
        // before it: the versions, the OS ABI and the padding.
        if head[6] != 1 || e.u32(head, 20) != 1 {
            return Err(corrupt(format!(
                "ELF version {} (identification {}), expected 1",
                e.u32(head, 20),
                head[6]
            )));
        }
        let (osabi, abiversion) = (head[7], head[8]);
        let abi_known = match osabi {
            // System V: version 0 only; GNU: the versions glibc knows.
            0 => abiversion == 0,
            3 => abiversion < 5,
            _ => false,
        };
        if !abi_known {
            return Err(corrupt(format!("OS ABI {osabi} version {abiversion}")));
        }
        if head[9..16].iter().any(|&byte| byte != 0) {
            return Err(corrupt(
                "nonzero padding in the ELF identification".to_owned(),
            ));
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
        let (phoff, shoff) = if is64 {
            (e.u64(head, 32), e.u64(head, 40))
        } else {
            (u64::from(e.u32(head, 28)), u64::from(e.u32(head, 32)))
        };
        let at = if is64 { 54 } else { 42 };
        let (phentsize, phnum, shentsize, shnum) = (
            e.u16(head, at),
            e.u16(head, at + 2),
            e.u16(head, at + 4),
            e.u16(head, at + 6),
        );
        let (want_ph, want_sh) = if is64 { (56, 64) } else { (32, 40) };
        if phentsize != want_ph {
            return Err(corrupt(format!(
                "program header size {phentsize}, expected {want_ph}"
            )));
        }
        if phnum == 0 {
            return Err(corrupt("no program headers".to_owned()));
        }
        let table = reader.read(
            || "the program header table".to_owned(),
            phoff,
            usize::from(phnum) * usize::from(phentsize),
        )?;
        let segments: Vec<Segment> = table
            .chunks_exact(usize::from(phentsize))
            .enumerate()
            .map(|(index, ph)| layout.segment(index, ph))
            .collect();
        let loads = check_segments(reader, &segments)?;
        let mut symbols = None;
        if shnum != 0 {
            if shentsize != want_sh {
                return Err(corrupt(format!(
                    "section header size {shentsize}, expected {want_sh}"
                )));
            }
            // The loader never reads section headers, but a table past the end
            // means the file was cut; and every allocated section must be in a
            // loaded segment, which catches a segment whose header lies.
            let sections = reader.read(
                || "the section header table".to_owned(),
                shoff,
                usize::from(shnum) * usize::from(shentsize),
            )?;
            check_sections(&layout, &sections, usize::from(shentsize), &loads)?;
            symbols = dynamic_symbols(&layout, &sections, usize::from(shentsize));
            check_relocations(reader, &layout, &sections, usize::from(shentsize), &loads)?;
        }
        let dynamic = segments
            .iter()
            .find(|s| s.kind == PT_DYNAMIC)
            .ok_or_else(|| VerifyError::Mismatch {
                field: "a dynamic segment",
                expected: "present".to_owned(),
                found: "none".to_owned(),
            })?;
        check_dynamic(reader, &layout, dynamic, &loads, symbols)?;
        // Last: every other check passed, so a caller that allows it may
        // ignore this one.
        if segments
            .iter()
            .any(|s| s.kind == PT_GNU_STACK && s.flags & PF_X != 0)
        {
            return Err(VerifyError::ExecutableStack);
        }
        Ok(())
    }

    /// How many entries the dynamic symbol table has, from its section
    /// header.
    fn dynamic_symbols(layout: &Layout, table: &[u8], entsize: usize) -> Option<u64> {
        const SHT_DYNSYM: u32 = 11;
        let w = if layout.is64 { 8 } else { 4 };
        let symbol = if layout.is64 { 24 } else { 16 };
        table
            .chunks_exact(entsize)
            .find(|sh| layout.e.u32(sh, 4) == SHT_DYNSYM)
            .map(|sh| layout.word(sh, 8 + 3 * w) / symbol)
    }

    /// The `len` file bytes the library maps at `vaddr`, or an error naming
    /// `what` if no loadable segment maps them from the file.
    fn read_mapped(
        reader: &mut Reader,
        loads: &[Segment],
        what: &str,
        vaddr: u64,
        len: u64,
    ) -> Result<Vec<u8>, VerifyError> {
        const MAX_TABLE: u64 = 1 << 26;
        let outside = || corrupt(format!("{what} at {vaddr:#x} is not mapped from the file"));
        if len > MAX_TABLE {
            return Err(corrupt(format!("{what} of {len} bytes")));
        }
        let load = loads
            .iter()
            .find(|load| {
                vaddr
                    .checked_sub(load.vaddr)
                    .and_then(|delta| load.offset.checked_add(delta))
                    .is_some_and(|offset| load.maps(offset, vaddr, len))
            })
            .ok_or_else(outside)?;
        let offset = load.offset + (vaddr - load.vaddr);
        reader.read(|| what.to_owned(), offset, len as usize)
    }

    /// The version tables as the dynamic loader finds them, through the
    /// dynamic section: every name offset inside the string table, every
    /// link inside its table, and every symbol's version index naming a
    /// version they define. Out of range, the loader reads whatever the
    /// process has mapped there, which differs between processes.
    fn check_version_tables(
        reader: &mut Reader,
        layout: &Layout,
        loads: &[Segment],
        values: &[(u64, u64)],
        symbols: Option<u64>,
    ) -> Result<(), VerifyError> {
        let value = |tag: u64| {
            values
                .iter()
                .rev()
                .find(|(t, _)| *t == tag)
                .map(|(_, v)| *v)
        };
        const DT_STRTAB: u64 = 5;
        const DT_STRSZ: u64 = 10;
        const DT_VERSYM: u64 = 0x6fff_fff0;
        const DT_VERDEF: u64 = 0x6fff_fffc;
        const DT_VERDEFNUM: u64 = 0x6fff_fffd;
        const DT_VERNEED: u64 = 0x6fff_fffe;
        const DT_VERNEEDNUM: u64 = 0x6fff_ffff;
        let e = layout.e;
        let (Some(strtab), Some(strsz)) = (value(DT_STRTAB), value(DT_STRSZ)) else {
            return Ok(());
        };
        let strings = read_mapped(reader, loads, "the string table", strtab, strsz)?;
        if strings.last().is_some_and(|&last| last != 0) {
            return Err(corrupt(
                "the string table does not end with a NUL".to_owned(),
            ));
        }
        let name = |offset: u32, what: &str| {
            if u64::from(offset) < strsz {
                Ok(())
            } else {
                Err(corrupt(format!(
                    "{what} names string {offset}, past the string table ({strsz} bytes)"
                )))
            }
        };
        // Names of needed libraries and search paths, read from the string
        // table by offset.
        for (tag, what) in [
            (1, "DT_NEEDED"),
            (14, "DT_SONAME"),
            (15, "DT_RPATH"),
            (29, "DT_RUNPATH"),
        ] {
            for &(_, offset) in values.iter().filter(|(t, _)| *t == tag) {
                if offset >= strsz {
                    return Err(corrupt(format!(
                        "dynamic entry {what} names string {offset}, past the string table ({strsz} bytes)"
                    )));
                }
            }
        }
        let mut known: Vec<u16> = vec![0, 1];
        // Each table is a chain of records linked by byte offsets. The
        // dynamic loader follows the links until one is zero, whatever the
        // counts say, and so does this; a chain that does not end is refused.
        const LONGEST_CHAIN: usize = 1 << 12;
        let long = || corrupt("a symbol version table does not end".to_owned());
        let next = |at: u64, link: u32| {
            at.checked_add(u64::from(link))
                .ok_or_else(|| corrupt("a symbol version table links past the end".to_owned()))
        };
        if let (Some(mut at), Some(_)) = (value(DT_VERNEED), value(DT_VERNEEDNUM)) {
            let mut records = 0;
            loop {
                let need = read_mapped(reader, loads, "a version need", at, 16)?;
                name(e.u32(&need, 4), "a version need")?;
                let mut here = next(at, e.u32(&need, 8))?;
                loop {
                    records += 1;
                    if records > LONGEST_CHAIN {
                        return Err(long());
                    }
                    let entry = read_mapped(reader, loads, "a needed version", here, 16)?;
                    name(e.u32(&entry, 8), "a needed version")?;
                    known.push(e.u16(&entry, 6) & 0x7fff);
                    match e.u32(&entry, 12) {
                        0 => break,
                        link => here = next(here, link)?,
                    }
                }
                match e.u32(&need, 12) {
                    0 => break,
                    link => at = next(at, link)?,
                }
            }
        }
        if let (Some(mut at), Some(_)) = (value(DT_VERDEF), value(DT_VERDEFNUM)) {
            let mut records = 0;
            loop {
                records += 1;
                if records > LONGEST_CHAIN {
                    return Err(long());
                }
                let def = read_mapped(reader, loads, "a version definition", at, 20)?;
                known.push(e.u16(&def, 4) & 0x7fff);
                let mut here = next(at, e.u32(&def, 12))?;
                for _ in 0..e.u16(&def, 6) {
                    let entry = read_mapped(reader, loads, "a version name", here, 8)?;
                    name(e.u32(&entry, 0), "a version name")?;
                    match e.u32(&entry, 4) {
                        0 => break,
                        link => here = next(here, link)?,
                    }
                }
                match e.u32(&def, 16) {
                    0 => break,
                    link => at = next(at, link)?,
                }
            }
        }
        if let (Some(versym), Some(symbols)) = (value(DT_VERSYM), symbols) {
            let indices = read_mapped(reader, loads, "the symbol versions", versym, symbols * 2)?;
            for (symbol, entry) in indices.chunks_exact(2).enumerate() {
                let index = e.u16(entry, 0) & 0x7fff;
                if !known.contains(&index) {
                    return Err(corrupt(format!(
                        "symbol {symbol} has version index {index}, which names no version of the library"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Bounds and consistency of the program headers; returns the loadable
    /// segments.
    fn check_segments(reader: &Reader, segments: &[Segment]) -> Result<Vec<Segment>, VerifyError> {
        let mut loads: Vec<Segment> = Vec::new();
        for s in segments {
            if !matches!(
                s.kind,
                PT_LOAD
                    | PT_DYNAMIC
                    | PT_INTERP
                    | PT_NOTE
                    | PT_PHDR
                    | PT_TLS
                    | PT_GNU_EH_FRAME
                    | PT_GNU_RELRO
            ) {
                // Other types (GNU_STACK, PROPERTY, ...) map nothing.
                continue;
            }
            reader.check(|| s.what(), s.offset, s.filesz)?;
            if s.filesz > s.memsz {
                return Err(corrupt(format!(
                    "{} has {} bytes in the file but {} in memory",
                    s.what(),
                    s.filesz,
                    s.memsz
                )));
            }
            if s.end().is_none_or(|end| end > MAX_IMAGE) {
                return Err(corrupt(format!("{} ends beyond {MAX_IMAGE:#x}", s.what())));
            }
            if s.align > 1 && !s.align.is_power_of_two() {
                return Err(corrupt(format!("{} has alignment {}", s.what(), s.align)));
            }
            if s.kind != PT_LOAD {
                continue;
            }
            if s.flags & PF_R == 0 {
                return Err(corrupt(format!("{} is not readable", s.what())));
            }
            if s.align > 1 && s.offset % s.align != s.vaddr % s.align {
                return Err(corrupt(format!(
                    "{} has offset {:#x} and address {:#x}, which disagree modulo its alignment {:#x}",
                    s.what(),
                    s.offset,
                    s.vaddr,
                    s.align
                )));
            }
            if let Some(previous) = loads.last()
                && previous.end().is_none_or(|end| end > s.vaddr)
            {
                return Err(corrupt(format!(
                    "{} starts at {:#x}, inside or before {}",
                    s.what(),
                    s.vaddr,
                    previous.what()
                )));
            }
            loads.push(*s);
        }
        if loads.is_empty() {
            return Err(corrupt("no loadable segment".to_owned()));
        }
        // Everything else the loader reads in memory must lie inside one
        // loadable segment, at the place that segment maps its file bytes.
        for s in segments {
            // The TLS segment's memory size includes `.tbss`, which occupies
            // no address of its own (each thread's block is allocated
            // elsewhere): only its initialisation image must be mapped.
            let size = if s.kind == PT_TLS { s.filesz } else { s.memsz };
            if matches!(
                s.kind,
                PT_DYNAMIC | PT_TLS | PT_GNU_EH_FRAME | PT_GNU_RELRO | PT_NOTE | PT_PHDR
            ) && !loads.iter().any(|load| {
                load.holds(s.vaddr, size)
                    && (s.filesz == 0 || load.maps(s.offset, s.vaddr, s.filesz))
            }) {
                return Err(corrupt(format!(
                    "{} lies outside every loadable segment",
                    s.what()
                )));
            }
        }
        Ok(loads)
    }

    /// Every relocation must name a symbol of the symbol table and patch a
    /// place inside a loadable segment, and every symbol's name must lie in
    /// the string table. The dynamic loader uses these indices and offsets
    /// unchecked: out of range, they read or write whatever is mapped next
    /// to the library, which differs from one process to the next, so a
    /// probe process that survives says nothing about the host. Checked
    /// where the section headers locate the tables (64-bit only).
    fn check_relocations(
        reader: &mut Reader,
        layout: &Layout,
        table: &[u8],
        entsize: usize,
        loads: &[Segment],
    ) -> Result<(), VerifyError> {
        const SHT_RELA: u32 = 4;
        const SHT_DYNSYM: u32 = 11;
        const MAX_TABLE: u64 = 1 << 26;
        if !layout.is64 {
            return Ok(());
        }
        let e = layout.e;
        let sections: Vec<(u32, u64, u64, u32)> = table
            .chunks_exact(entsize)
            .map(|sh| {
                let kind = e.u32(sh, 4);
                let offset = e.u64(sh, 24);
                let size = e.u64(sh, 32);
                let link = e.u32(sh, 40);
                (kind, offset, size, link)
            })
            .collect();
        let Some(&(_, dynsym_offset, dynsym_size, dynstr_index)) =
            sections.iter().find(|s| s.0 == SHT_DYNSYM)
        else {
            return Ok(());
        };
        let read = |reader: &mut Reader, what: &'static str, offset: u64, size: u64| {
            if size > MAX_TABLE {
                return Err(corrupt(format!("{what} of {size} bytes")));
            }
            reader.read(|| what.to_owned(), offset, size as usize)
        };
        let symbols = dynsym_size / 24;
        let strings = sections
            .get(dynstr_index as usize)
            .map_or(0, |&(_, _, size, _)| size);
        let dynsym = read(
            reader,
            "the dynamic symbol table",
            dynsym_offset,
            dynsym_size,
        )?;
        for (index, symbol) in dynsym.chunks_exact(24).enumerate() {
            let name = u64::from(e.u32(symbol, 0));
            if name >= strings.max(1) {
                return Err(corrupt(format!(
                    "symbol {index} has its name at {name}, past the string table ({strings} bytes)"
                )));
            }
        }
        for &(kind, offset, size, _) in &sections {
            if kind != SHT_RELA {
                continue;
            }
            let relocations = read(reader, "a relocation table", offset, size)?;
            for (index, rela) in relocations.chunks_exact(24).enumerate() {
                let place = e.u64(rela, 0);
                let symbol = e.u64(rela, 8) >> 32;
                if symbol >= symbols {
                    return Err(corrupt(format!(
                        "relocation {index} names symbol {symbol}; the symbol table has {symbols}"
                    )));
                }
                if !loads.iter().any(|load| load.holds(place, 8)) {
                    return Err(corrupt(format!(
                        "relocation {index} patches {place:#x}, outside every loadable segment"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_sections(
        layout: &Layout,
        table: &[u8],
        entsize: usize,
        loads: &[Segment],
    ) -> Result<(), VerifyError> {
        let e = layout.e;
        for (index, sh) in table.chunks_exact(entsize).enumerate() {
            let kind = e.u32(sh, 4);
            let w = if layout.is64 { 8 } else { 4 };
            let flags = layout.word(sh, 8);
            let addr = layout.word(sh, 8 + w);
            let offset = layout.word(sh, 8 + 2 * w);
            let size = layout.word(sh, 8 + 3 * w);
            if flags & SHF_ALLOC == 0 || size == 0 {
                continue;
            }
            let nobits = kind == SHT_NOBITS;
            if nobits && flags & SHF_TLS != 0 {
                // .tbss occupies no address of its own: it follows .tdata in
                // the TLS template, which the TLS segment describes.
                continue;
            }
            let Some(load) = loads
                .iter()
                .find(|load| load.holds(addr, size) && (nobits || load.maps(offset, addr, size)))
            else {
                return Err(corrupt(format!(
                    "allocated section {index} at {addr:#x} lies outside every loadable segment"
                )));
            };
            // A segment that lost its write or execute permission would make
            // the loader's relocations, or the first call, fault.
            for (needed, flag, what) in [
                (SHF_WRITE, PF_W, "writable"),
                (SHF_EXECINSTR, PF_X, "executable"),
            ] {
                if flags & needed != 0 && load.flags & flag == 0 {
                    return Err(corrupt(format!(
                        "{what} section {index} at {addr:#x} lies in {}, which is not {what}",
                        load.what()
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_dynamic(
        reader: &mut Reader,
        layout: &Layout,
        dynamic: &Segment,
        loads: &[Segment],
        symbols: Option<u64>,
    ) -> Result<(), VerifyError> {
        let entry = if layout.is64 { 16 } else { 8 };
        let len = usize::try_from(dynamic.filesz)
            .map_err(|_| corrupt("dynamic segment too large".to_owned()))?;
        let bytes = reader.read(|| dynamic.what(), dynamic.offset, len)?;
        let mut values: Vec<(u64, u64)> = Vec::new();
        let mut terminated = false;
        for chunk in bytes.chunks_exact(entry) {
            let tag = layout.word(chunk, 0);
            if tag == 0 {
                terminated = true;
                break;
            }
            values.push((tag, layout.word(chunk, entry / 2)));
        }
        if !terminated {
            return Err(corrupt(
                "the dynamic section has no DT_NULL terminator".to_owned(),
            ));
        }
        // The dynamic loader keeps the last entry of each tag.
        let value = |tag: u64| {
            values
                .iter()
                .rev()
                .find(|(t, _)| *t == tag)
                .map(|(_, v)| *v)
        };
        for &(tag, name, size_tag) in ADDRESS_TAGS {
            for &(_, address) in values.iter().filter(|(t, _)| *t == tag) {
                let size = if size_tag == 0 {
                    1
                } else {
                    value(size_tag).unwrap_or(0)
                };
                if !loads.iter().any(|load| load.holds(address, size)) {
                    return Err(corrupt(format!(
                        "dynamic entry {name} points at {address:#x}, outside every loadable segment"
                    )));
                }
            }
        }
        check_version_tables(reader, layout, loads, &values, symbols)
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
