//! Mach-O (macOS): the header and the segments, within the file.

use object::{
    Endianness,
    macho::{self, LoadCommand, MachHeader64, SegmentCommand64},
};

use super::{ObjectFormat, Reader, VerifyError, at_start, too_short};

pub(super) fn verify(reader: &mut Reader, head: &[u8]) -> Result<(), VerifyError> {
    let e = match head[..4] {
        [0xcf, 0xfa, 0xed, 0xfe] => Endianness::Little,
        [0xfe, 0xed, 0xfa, 0xcf] => Endianness::Big,
        _ => {
            return Err(VerifyError::Mismatch {
                field: "Mach-O kind",
                expected: "a thin 64-bit library".to_owned(),
                found: "a 32-bit or universal file".to_owned(),
            });
        }
    };
    let header_len = size_of::<MachHeader64<Endianness>>();
    if head.len() < header_len {
        return Err(too_short(ObjectFormat::MachO, header_len, reader.len));
    }
    let header: &MachHeader64<Endianness> = at_start(head);
    let filetype = header.filetype.get(e);
    if filetype != macho::MH_DYLIB {
        return Err(VerifyError::Mismatch {
            field: "file type",
            expected: "a dynamic library".to_owned(),
            found: format!("file type {filetype}"),
        });
    }
    let cmds = reader.read(
        || "the load commands".to_owned(),
        header_len as u64,
        header.sizeofcmds.get(e) as usize,
    )?;
    let mut at = 0usize;
    for index in 0..header.ncmds.get(e) {
        if at + size_of::<LoadCommand<Endianness>>() > cmds.len() {
            return Err(VerifyError::Corrupt(format!(
                "load command {index} overruns the table"
            )));
        }
        let command: &LoadCommand<Endianness> = at_start(&cmds[at..]);
        let (cmd, size) = (command.cmd.get(e), command.cmdsize.get(e) as usize);
        let least = if cmd == macho::LC_SEGMENT_64 {
            size_of::<SegmentCommand64<Endianness>>()
        } else {
            size_of::<LoadCommand<Endianness>>()
        };
        if size < least || at + size > cmds.len() {
            return Err(VerifyError::Corrupt(format!(
                "load command {index} has size {size}"
            )));
        }
        if cmd == macho::LC_SEGMENT_64 {
            let segment: &SegmentCommand64<Endianness> = at_start(&cmds[at..]);
            reader.check(
                || format!("segment {index}"),
                segment.fileoff.get(e),
                segment.filesize.get(e),
            )?;
        }
        at += size;
    }
    Ok(())
}
