//! Inspect layer: which build of the host is running: the GNU build ID of the loaded
//! object (the program, or a library) that holds a given function.
//!
//! The linker computes a build ID from the contents of what it links, so
//! two objects with the same ID hold the same code and the same constants;
//! the snapshot cache keys what a build proved about a kept copy on it.

/// The GNU build ID of the loaded object that holds `code`, as lowercase
/// hexadecimal; `None` where the object has none or the platform does not
/// say.
pub(crate) fn of(code: *const ()) -> Option<String> {
    crate::sys::search_loaded_notes(code, find_build_id).map(|id| crate::digest::hex(&id))
}

/// The description of the `NT_GNU_BUILD_ID` note among `notes`, the
/// contents of a `PT_NOTE` segment aligned to `align`, of this process.
fn find_build_id(notes: &[u8], align: u64) -> Option<&[u8]> {
    use object::{
        NativeEndian,
        elf::{ELF_NOTE_GNU, FileHeader64, NT_GNU_BUILD_ID},
        read::elf::NoteIterator,
    };
    // A note's header is three 32-bit words in either class.
    let align = if align == 8 { 8 } else { 4 };
    let mut notes =
        NoteIterator::<FileHeader64<NativeEndian>>::new(NativeEndian, align, notes).ok()?;
    while let Ok(Some(note)) = notes.next() {
        if note.n_type(NativeEndian) == NT_GNU_BUILD_ID && note.name() == ELF_NOTE_GNU {
            return Some(note.desc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_searched_for_the_gnu_build_id() {
        let mut notes = Vec::new();
        // Another note first: a name of 5 bytes, padded to 8.
        for word in [5u32, 4, 1] {
            notes.extend(word.to_ne_bytes());
        }
        notes.extend(b"Other\0\0\0abcd");
        for word in [4u32, 3, 3] {
            notes.extend(word.to_ne_bytes());
        }
        notes.extend(b"GNU\0\x01\x02\x03\0");
        assert_eq!(find_build_id(&notes, 4), Some(&[1u8, 2, 3][..]));
        assert_eq!(find_build_id(&notes[..notes.len() - 6], 4), None);
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn this_test_program_has_the_build_id_its_file_holds() {
        // Linked by the platform's C compiler, which on Linux distributions
        // asks the linker for a build ID.
        let id = of(notes_are_searched_for_the_gnu_build_id as *const ()).expect("a build ID");
        assert!(id.len() >= 32, "{id}");
        let bytes: Vec<u8> = (0..id.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&id[at..at + 2], 16).unwrap())
            .collect();
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(exe.windows(bytes.len()).any(|window| window == bytes));
        // Code outside every object has none.
        assert_eq!(of(std::ptr::null()), None);
    }
}
