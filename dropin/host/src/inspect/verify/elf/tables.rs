//! The tables the dynamic loader indexes without checking, and the
//! segments, relocations, sections and dynamic entries checked against them.

use object::read::elf::{Dyn, Rela, SectionHeader, Sym};

use super::*;

/// How many entries the dynamic symbol table has, from its section
/// header.
pub(super) fn dynamic_symbols<Elf: FileHeader<Endian = Endianness>>(
    sections: &[Elf::SectionHeader],
    e: Endianness,
) -> Option<u64> {
    sections
        .iter()
        .find(|sh| sh.sh_type(e) == elf::SHT_DYNSYM)
        .map(|sh| sh.sh_size(e).into() / size_of::<Elf::Sym>() as u64)
}

/// The `len` file bytes the library maps at `vaddr`, or an error naming
/// `what` if no loadable segment maps them from the file.
pub(super) fn read_mapped(
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

/// The structure of type `T` the library maps at `vaddr`.
fn read_mapped_one<T: Pod>(
    reader: &mut Reader,
    loads: &[Segment],
    what: &str,
    vaddr: u64,
) -> Result<T, VerifyError> {
    let bytes = read_mapped(reader, loads, what, vaddr, size_of::<T>() as u64)?;
    Ok(*at_start::<T>(&bytes))
}

/// The version tables as the dynamic loader finds them, through the
/// dynamic section: every name offset inside the string table, every
/// link inside its table, and every symbol's version index naming a
/// version they define. Out of range, the loader reads whatever the
/// process has mapped there, which differs between processes.
pub(super) fn check_version_tables(
    reader: &mut Reader,
    e: Endianness,
    loads: &[Segment],
    values: &[(u64, u64)],
    symbols: Option<u64>,
) -> Result<(), VerifyError> {
    let value = |tag: u32| {
        values
            .iter()
            .rev()
            .find(|(t, _)| *t == u64::from(tag))
            .map(|(_, v)| *v)
    };
    let (Some(strtab), Some(strsz)) = (value(elf::DT_STRTAB), value(elf::DT_STRSZ)) else {
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
        (elf::DT_NEEDED, "DT_NEEDED"),
        (elf::DT_SONAME, "DT_SONAME"),
        (elf::DT_RPATH, "DT_RPATH"),
        (elf::DT_RUNPATH, "DT_RUNPATH"),
    ] {
        for &(_, offset) in values.iter().filter(|(t, _)| *t == u64::from(tag)) {
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
    if let (Some(mut at), Some(_)) = (value(elf::DT_VERNEED), value(elf::DT_VERNEEDNUM)) {
        let mut records = 0;
        loop {
            let need: elf::Verneed<Endianness> =
                read_mapped_one(reader, loads, "a version need", at)?;
            name(need.vn_file.get(e), "a version need")?;
            let mut here = next(at, need.vn_aux.get(e))?;
            loop {
                records += 1;
                if records > LONGEST_CHAIN {
                    return Err(long());
                }
                let entry: elf::Vernaux<Endianness> =
                    read_mapped_one(reader, loads, "a needed version", here)?;
                name(entry.vna_name.get(e), "a needed version")?;
                known.push(entry.vna_other.get(e) & elf::VERSYM_VERSION);
                match entry.vna_next.get(e) {
                    0 => break,
                    link => here = next(here, link)?,
                }
            }
            match need.vn_next.get(e) {
                0 => break,
                link => at = next(at, link)?,
            }
        }
    }
    if let (Some(mut at), Some(_)) = (value(elf::DT_VERDEF), value(elf::DT_VERDEFNUM)) {
        let mut records = 0;
        loop {
            records += 1;
            if records > LONGEST_CHAIN {
                return Err(long());
            }
            let def: elf::Verdef<Endianness> =
                read_mapped_one(reader, loads, "a version definition", at)?;
            known.push(def.vd_ndx.get(e) & elf::VERSYM_VERSION);
            let mut here = next(at, def.vd_aux.get(e))?;
            for _ in 0..def.vd_cnt.get(e) {
                let entry: elf::Verdaux<Endianness> =
                    read_mapped_one(reader, loads, "a version name", here)?;
                name(entry.vda_name.get(e), "a version name")?;
                match entry.vda_next.get(e) {
                    0 => break,
                    link => here = next(here, link)?,
                }
            }
            match def.vd_next.get(e) {
                0 => break,
                link => at = next(at, link)?,
            }
        }
    }
    if let (Some(versym), Some(symbols)) = (value(elf::DT_VERSYM), symbols) {
        let bytes = read_mapped(
            reader,
            loads,
            "the symbol versions",
            versym,
            symbols * size_of::<elf::Versym<Endianness>>() as u64,
        )?;
        for (symbol, entry) in all::<elf::Versym<Endianness>>(&bytes).iter().enumerate() {
            let index = entry.0.get(e) & elf::VERSYM_VERSION;
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
pub(super) fn check_segments(
    reader: &Reader,
    segments: &[Segment],
) -> Result<Vec<Segment>, VerifyError> {
    let mut loads: Vec<Segment> = Vec::new();
    for s in segments {
        if !matches!(
            s.kind,
            elf::PT_LOAD
                | elf::PT_DYNAMIC
                | elf::PT_INTERP
                | elf::PT_NOTE
                | elf::PT_PHDR
                | elf::PT_TLS
                | elf::PT_GNU_EH_FRAME
                | elf::PT_GNU_RELRO
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
        if s.kind != elf::PT_LOAD {
            continue;
        }
        if s.flags & elf::PF_R == 0 {
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
        let size = if s.kind == elf::PT_TLS {
            s.filesz
        } else {
            s.memsz
        };
        if matches!(
            s.kind,
            elf::PT_DYNAMIC
                | elf::PT_TLS
                | elf::PT_GNU_EH_FRAME
                | elf::PT_GNU_RELRO
                | elf::PT_NOTE
                | elf::PT_PHDR
        ) && !loads.iter().any(|load| {
            load.holds(s.vaddr, size) && (s.filesz == 0 || load.maps(s.offset, s.vaddr, s.filesz))
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
pub(super) fn check_relocations<Elf: FileHeader<Endian = Endianness>>(
    reader: &mut Reader,
    sections: &[Elf::SectionHeader],
    e: Endianness,
    loads: &[Segment],
) -> Result<(), VerifyError> {
    const MAX_TABLE: u64 = 1 << 26;
    if !Elf::is_type_64_sized() {
        return Ok(());
    }
    let Some(dynsym) = sections.iter().find(|s| s.sh_type(e) == elf::SHT_DYNSYM) else {
        return Ok(());
    };
    let read = |reader: &mut Reader, what: &'static str, section: &Elf::SectionHeader| {
        let size: u64 = section.sh_size(e).into();
        if size > MAX_TABLE {
            return Err(corrupt(format!("{what} of {size} bytes")));
        }
        reader.read(
            || what.to_owned(),
            section.sh_offset(e).into(),
            size as usize,
        )
    };
    let strings: u64 = sections
        .get(dynsym.sh_link(e) as usize)
        .map_or(0, |strtab| strtab.sh_size(e).into());
    let bytes = read(reader, "the dynamic symbol table", dynsym)?;
    let table = all::<Elf::Sym>(&bytes);
    let symbols = table.len() as u64;
    for (index, symbol) in table.iter().enumerate() {
        let name = u64::from(symbol.st_name(e));
        if name >= strings.max(1) {
            return Err(corrupt(format!(
                "symbol {index} has its name at {name}, past the string table ({strings} bytes)"
            )));
        }
    }
    for section in sections {
        if section.sh_type(e) != elf::SHT_RELA {
            continue;
        }
        let bytes = read(reader, "a relocation table", section)?;
        for (index, rela) in all::<Elf::Rela>(&bytes).iter().enumerate() {
            let place: u64 = rela.r_offset(e).into();
            let symbol = u64::from(rela.r_sym(e, false));
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

pub(super) fn check_sections<Elf: FileHeader<Endian = Endianness>>(
    sections: &[Elf::SectionHeader],
    e: Endianness,
    loads: &[Segment],
) -> Result<(), VerifyError> {
    for (index, sh) in sections.iter().enumerate() {
        let flags: u64 = sh.sh_flags(e).into();
        let addr: u64 = sh.sh_addr(e).into();
        let offset: u64 = sh.sh_offset(e).into();
        let size: u64 = sh.sh_size(e).into();
        if flags & u64::from(elf::SHF_ALLOC) == 0 || size == 0 {
            continue;
        }
        let nobits = sh.sh_type(e) == elf::SHT_NOBITS;
        if nobits && flags & u64::from(elf::SHF_TLS) != 0 {
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
            (elf::SHF_WRITE, elf::PF_W, "writable"),
            (elf::SHF_EXECINSTR, elf::PF_X, "executable"),
        ] {
            if flags & u64::from(needed) != 0 && load.flags & flag == 0 {
                return Err(corrupt(format!(
                    "{what} section {index} at {addr:#x} lies in {}, which is not {what}",
                    load.what()
                )));
            }
        }
    }
    Ok(())
}

/// Dynamic tags whose value is an address in the image, with the tag of
/// the size that goes with it (0: none).
const ADDRESS_TAGS: &[(u32, &str, u32)] = &[
    (elf::DT_PLTGOT, "DT_PLTGOT", 0),
    (elf::DT_HASH, "DT_HASH", 0),
    (elf::DT_STRTAB, "DT_STRTAB", elf::DT_STRSZ),
    (elf::DT_SYMTAB, "DT_SYMTAB", 0),
    (elf::DT_RELA, "DT_RELA", elf::DT_RELASZ),
    (elf::DT_INIT, "DT_INIT", 0),
    (elf::DT_FINI, "DT_FINI", 0),
    (elf::DT_REL, "DT_REL", elf::DT_RELSZ),
    (elf::DT_JMPREL, "DT_JMPREL", elf::DT_PLTRELSZ),
    (elf::DT_INIT_ARRAY, "DT_INIT_ARRAY", elf::DT_INIT_ARRAYSZ),
    (elf::DT_FINI_ARRAY, "DT_FINI_ARRAY", elf::DT_FINI_ARRAYSZ),
    (
        elf::DT_PREINIT_ARRAY,
        "DT_PREINIT_ARRAY",
        elf::DT_PREINIT_ARRAYSZ,
    ),
    (elf::DT_GNU_HASH, "DT_GNU_HASH", 0),
    (elf::DT_VERSYM, "DT_VERSYM", 0),
    (elf::DT_VERDEF, "DT_VERDEF", 0),
    (elf::DT_VERNEED, "DT_VERNEED", 0),
];

pub(super) fn check_dynamic<Elf: FileHeader<Endian = Endianness>>(
    reader: &mut Reader,
    e: Endianness,
    dynamic: &Segment,
    loads: &[Segment],
    symbols: Option<u64>,
) -> Result<(), VerifyError> {
    let len = usize::try_from(dynamic.filesz)
        .map_err(|_| corrupt("dynamic segment too large".to_owned()))?;
    let bytes = reader.read(|| dynamic.what(), dynamic.offset, len)?;
    let mut values: Vec<(u64, u64)> = Vec::new();
    let mut terminated = false;
    for entry in all::<Elf::Dyn>(&bytes) {
        let tag: u64 = entry.d_tag(e).into();
        if tag == u64::from(elf::DT_NULL) {
            terminated = true;
            break;
        }
        values.push((tag, entry.d_val(e).into()));
    }
    if !terminated {
        return Err(corrupt(
            "the dynamic section has no DT_NULL terminator".to_owned(),
        ));
    }
    // The dynamic loader keeps the last entry of each tag.
    let value = |tag: u32| {
        values
            .iter()
            .rev()
            .find(|(t, _)| *t == u64::from(tag))
            .map(|(_, v)| *v)
    };
    for &(tag, name, size_tag) in ADDRESS_TAGS {
        for &(_, address) in values.iter().filter(|(t, _)| *t == u64::from(tag)) {
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
    check_version_tables(reader, e, loads, &values, symbols)
}
