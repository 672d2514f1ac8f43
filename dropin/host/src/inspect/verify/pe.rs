//! PE/COFF (Windows): the headers, within the file.

use object::{
    LittleEndian as LE,
    pe::{self, ImageDosHeader, ImageFileHeader, ImageSectionHeader},
};

use super::{ObjectFormat, Reader, VerifyError, all, at_start, too_short};

pub(super) fn verify(reader: &mut Reader, head: &[u8]) -> Result<(), VerifyError> {
    let dos_len = size_of::<ImageDosHeader>();
    if head.len() < dos_len {
        return Err(too_short(ObjectFormat::Pe, dos_len, reader.len));
    }
    let dos: &ImageDosHeader = at_start(head);
    let pe_offset = u64::from(dos.e_lfanew.get(LE));
    // The signature, then the file header.
    let coff = reader.read(
        || "the PE header".to_owned(),
        pe_offset,
        4 + size_of::<ImageFileHeader>(),
    )?;
    if coff[..4] != *b"PE\0\0" {
        return Err(VerifyError::Corrupt("missing PE signature".to_owned()));
    }
    let file: &ImageFileHeader = at_start(&coff[4..]);
    if file.characteristics.get(LE) & pe::IMAGE_FILE_DLL == 0 {
        return Err(VerifyError::Mismatch {
            field: "file type",
            expected: "a DLL".to_owned(),
            found: "an executable".to_owned(),
        });
    }
    let table_at = pe_offset + coff.len() as u64 + u64::from(file.size_of_optional_header.get(LE));
    let table = reader.read(
        || "the section table".to_owned(),
        table_at,
        usize::from(file.number_of_sections.get(LE)) * size_of::<ImageSectionHeader>(),
    )?;
    for (index, section) in all::<ImageSectionHeader>(&table).iter().enumerate() {
        reader.check(
            || format!("section {index}"),
            u64::from(section.pointer_to_raw_data.get(LE)),
            u64::from(section.size_of_raw_data.get(LE)),
        )?;
    }
    Ok(())
}
