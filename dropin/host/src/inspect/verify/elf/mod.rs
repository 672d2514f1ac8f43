//! ELF: the headers, and every segment consistent with the others.
//!
//! The dynamic loader maps every `PT_LOAD` segment, then trusts the
//! dynamic section and the other segments to point into what it mapped.
//! A header that lies (a moved or resized segment, a segment whose type
//! changed, a TLS or RELRO range past its segment) makes it read, write
//! or jump outside the mapping: a crash, not an error. So besides the
//! bounds of the file, the checks here prove that the segments are
//! consistent with each other, with the dynamic section and with the
//! section headers, as every linker writes them.

use super::{Endian, ObjectFormat, Reader, VerifyError, too_short};

mod tables;
use tables::*;

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
