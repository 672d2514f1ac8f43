//! Mach-O (macOS): the header and the segments, within the file.

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
