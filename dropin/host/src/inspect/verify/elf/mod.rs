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
//!
//! The `object` crate knows the structures and their fields; what is
//! checked of them, and how it is worded, is dropin's.

use object::{
    Endianness, Pod,
    elf::{self, FileHeader32, FileHeader64},
    read::elf::{FileHeader, ProgramHeader},
};

use super::{ObjectFormat, Reader, VerifyError, all, at_start, too_short};

mod tables;
use tables::*;

/// No plugin needs a memory image anywhere near this large.
const MAX_IMAGE: u64 = 1 << 32;

/// `e_machine` values, by Rust's `target_arch` names.
const MACHINES: &[(&str, u16)] = &[
    ("x86", elf::EM_386),
    ("mips", elf::EM_MIPS),
    ("powerpc", elf::EM_PPC),
    ("powerpc64", elf::EM_PPC64),
    ("s390x", elf::EM_S390),
    ("arm", elf::EM_ARM),
    ("sparc64", elf::EM_SPARCV9),
    ("x86_64", elf::EM_X86_64),
    ("aarch64", elf::EM_AARCH64),
    ("riscv64", elf::EM_RISCV),
    ("loongarch64", elf::EM_LOONGARCH),
];

fn machine_name(machine: u16) -> String {
    MACHINES.iter().find(|(_, m)| *m == machine).map_or_else(
        || format!("machine {machine}"),
        |(name, _)| (*name).to_owned(),
    )
}

fn segment_name(kind: u32) -> String {
    match kind {
        elf::PT_LOAD => "LOAD".to_owned(),
        elf::PT_DYNAMIC => "DYNAMIC".to_owned(),
        elf::PT_INTERP => "INTERP".to_owned(),
        elf::PT_NOTE => "NOTE".to_owned(),
        elf::PT_PHDR => "PHDR".to_owned(),
        elf::PT_TLS => "TLS".to_owned(),
        elf::PT_GNU_EH_FRAME => "GNU_EH_FRAME".to_owned(),
        elf::PT_GNU_RELRO => "GNU_RELRO".to_owned(),
        other => format!("type {other:#x}"),
    }
}

fn corrupt(message: String) -> VerifyError {
    VerifyError::Corrupt(message)
}

/// One program header, as the checks use it.
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
    fn of<Elf: FileHeader<Endian = Endianness>>(
        index: usize,
        header: &Elf::ProgramHeader,
        e: Endianness,
    ) -> Self {
        Self {
            index,
            kind: header.p_type(e),
            flags: header.p_flags(e),
            offset: header.p_offset(e).into(),
            vaddr: header.p_vaddr(e).into(),
            filesz: header.p_filesz(e).into(),
            memsz: header.p_memsz(e).into(),
            align: header.p_align(e).into(),
        }
    }

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

pub(super) fn verify(reader: &mut Reader, head: &[u8]) -> Result<(), VerifyError> {
    // The identification, the file type and the machine.
    if head.len() < 20 {
        return Err(too_short(ObjectFormat::Elf, 20, reader.len));
    }
    // The identification is the same in both classes: read it through the
    // larger header, the bytes past the file's end left zero.
    let mut padded = [0; size_of::<FileHeader64<Endianness>>()];
    let known = head.len().min(padded.len());
    padded[..known].copy_from_slice(&head[..known]);
    let ident = at_start::<FileHeader64<Endianness>>(&padded).e_ident();
    let is64 = match ident.class {
        elf::ELFCLASS32 => false,
        elf::ELFCLASS64 => true,
        class => return Err(corrupt(format!("ELF class {class}"))),
    };
    let little = match ident.data {
        elf::ELFDATA2LSB => true,
        elf::ELFDATA2MSB => false,
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
    let e = if little {
        Endianness::Little
    } else {
        Endianness::Big
    };
    if is64 {
        verify_as::<FileHeader64<Endianness>>(reader, head, e)
    } else {
        verify_as::<FileHeader32<Endianness>>(reader, head, e)
    }
}

/// The checks past the identification, for the word size `Elf` has.
fn verify_as<Elf: FileHeader<Endian = Endianness>>(
    reader: &mut Reader,
    head: &[u8],
    e: Endianness,
) -> Result<(), VerifyError> {
    let header_len = size_of::<Elf>();
    if head.len() < header_len {
        return Err(too_short(ObjectFormat::Elf, header_len, reader.len));
    }
    let header: &Elf = at_start(head);
    let ident = header.e_ident();
    let kind = header.e_type(e);
    if kind != elf::ET_DYN {
        let found = match kind {
            elf::ET_NONE => "no file type".to_owned(),
            elf::ET_REL => "a relocatable object".to_owned(),
            elf::ET_EXEC => "an executable".to_owned(),
            elf::ET_CORE => "a core dump".to_owned(),
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
    let version = header.e_version(e);
    if ident.version != elf::EV_CURRENT || version != u32::from(elf::EV_CURRENT) {
        return Err(corrupt(format!(
            "ELF version {version} (identification {}), expected 1",
            ident.version
        )));
    }
    let (osabi, abiversion) = (ident.os_abi, ident.abi_version);
    let abi_known = match osabi {
        // System V: version 0 only; GNU: the versions glibc knows.
        elf::ELFOSABI_SYSV => abiversion == 0,
        elf::ELFOSABI_GNU => abiversion < 5,
        _ => false,
    };
    if !abi_known {
        return Err(corrupt(format!("OS ABI {osabi} version {abiversion}")));
    }
    if ident.padding.iter().any(|&byte| byte != 0) {
        return Err(corrupt(
            "nonzero padding in the ELF identification".to_owned(),
        ));
    }
    let machine = header.e_machine(e);
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
    // The program headers, and the segments they describe.
    let (phentsize, phnum) = (header.e_phentsize(e), header.e_phnum(e));
    let want_ph = size_of::<Elf::ProgramHeader>();
    if usize::from(phentsize) != want_ph {
        return Err(corrupt(format!(
            "program header size {phentsize}, expected {want_ph}"
        )));
    }
    if phnum == 0 {
        return Err(corrupt("no program headers".to_owned()));
    }
    let table = reader.read(
        || "the program header table".to_owned(),
        header.e_phoff(e).into(),
        usize::from(phnum) * want_ph,
    )?;
    let segments: Vec<Segment> = all::<Elf::ProgramHeader>(&table)
        .iter()
        .enumerate()
        .map(|(index, ph)| Segment::of::<Elf>(index, ph, e))
        .collect();
    let loads = check_segments(reader, &segments)?;
    // The section headers, where the file has them.
    let (shentsize, shnum) = (header.e_shentsize(e), header.e_shnum(e));
    let mut symbols = None;
    if shnum != 0 {
        let want_sh = size_of::<Elf::SectionHeader>();
        if usize::from(shentsize) != want_sh {
            return Err(corrupt(format!(
                "section header size {shentsize}, expected {want_sh}"
            )));
        }
        // The loader never reads section headers, but a table past the end
        // means the file was cut; and every allocated section must be in a
        // loaded segment, which catches a segment whose header lies.
        let bytes = reader.read(
            || "the section header table".to_owned(),
            header.e_shoff(e).into(),
            usize::from(shnum) * want_sh,
        )?;
        let sections = all::<Elf::SectionHeader>(&bytes);
        check_sections::<Elf>(sections, e, &loads)?;
        symbols = dynamic_symbols::<Elf>(sections, e);
        check_relocations::<Elf>(reader, sections, e, &loads)?;
    }
    // The dynamic section, and the tables it points at.
    let dynamic = segments
        .iter()
        .find(|s| s.kind == elf::PT_DYNAMIC)
        .ok_or_else(|| VerifyError::Mismatch {
            field: "a dynamic segment",
            expected: "present".to_owned(),
            found: "none".to_owned(),
        })?;
    check_dynamic::<Elf>(reader, e, dynamic, &loads, symbols)?;
    // Last: every other check passed, so a caller that allows it may
    // ignore this one.
    if segments
        .iter()
        .any(|s| s.kind == elf::PT_GNU_STACK && s.flags & elf::PF_X != 0)
    {
        return Err(VerifyError::ExecutableStack);
    }
    Ok(())
}
