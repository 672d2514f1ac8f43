//! The tables the dynamic loader indexes without checking, and the
//! segments, relocations, sections and dynamic entries checked against them.

use super::*;

/// How many entries the dynamic symbol table has, from its section
/// header.
pub(super) fn dynamic_symbols(layout: &Layout, table: &[u8], entsize: usize) -> Option<u64> {
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

/// The version tables as the dynamic loader finds them, through the
/// dynamic section: every name offset inside the string table, every
/// link inside its table, and every symbol's version index naming a
/// version they define. Out of range, the loader reads whatever the
/// process has mapped there, which differs between processes.
pub(super) fn check_version_tables(
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
pub(super) fn check_segments(
    reader: &Reader,
    segments: &[Segment],
) -> Result<Vec<Segment>, VerifyError> {
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
pub(super) fn check_relocations(
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

pub(super) fn check_sections(
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

pub(super) fn check_dynamic(
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
