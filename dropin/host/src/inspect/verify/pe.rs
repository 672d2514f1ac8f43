//! PE/COFF (Windows): the headers, within the file.

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
