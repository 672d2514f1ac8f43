//! Trust layer, step 1: which files in the plugins folder are candidates.

use std::{
    env::consts::DLL_SUFFIX,
    ffi::OsStr,
    fs, io,
    path::{Path, PathBuf},
};

/// Why the plugins folder could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// The folder does not exist.
    #[error("plugins folder {} does not exist", path.display())]
    NotFound {
        /// The folder that was asked for.
        path: PathBuf,
    },
    /// The path exists but is not a folder.
    #[error("plugins folder {} is not a folder", path.display())]
    NotADirectory {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The folder could not be read.
    #[error("cannot read plugins folder {}", path.display())]
    Read {
        /// The folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// Whether a file name looks like a dynamic library of this platform
/// (`.so`, `.dylib`, `.dll`) and is not hidden.
pub(crate) fn is_candidate_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    !name.starts_with('.') && name.len() > DLL_SUFFIX.len() && name.ends_with(DLL_SUFFIX)
}

/// Lists the candidate plugin files in `dir`, sorted by path.
///
/// A candidate is an entry whose name ends with the platform's library suffix
/// and does not start with a dot. Folders and broken links named like
/// libraries are candidates too, so that loading reports them instead of
/// silently skipping them.
///
/// # Errors
///
/// [`DiscoverError`] if `dir` does not exist, is not a folder or cannot be
/// read. Entries that cannot be inspected are kept as candidates; loading
/// reports why they fail.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, DiscoverError> {
    let entries = fs::read_dir(dir).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => DiscoverError::NotFound {
            path: dir.to_owned(),
        },
        io::ErrorKind::NotADirectory => DiscoverError::NotADirectory {
            path: dir.to_owned(),
        },
        _ => DiscoverError::Read {
            path: dir.to_owned(),
            source,
        },
    })?;
    let mut candidates = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DiscoverError::Read {
            path: dir.to_owned(),
            source,
        })?;
        if !is_candidate_name(&entry.file_name()) {
            continue;
        }
        candidates.push(entry.path());
    }
    // All in one folder: ordered by their names' bytes, which is the order
    // of the paths, without comparing them a component at a time.
    candidates.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_need_the_platform_suffix_and_no_leading_dot() {
        let ok = format!("libhello{DLL_SUFFIX}");
        assert!(is_candidate_name(OsStr::new(&ok)));
        assert!(is_candidate_name(OsStr::new(&format!("hello{DLL_SUFFIX}"))));
        assert!(!is_candidate_name(OsStr::new(&format!(".{ok}"))));
        assert!(!is_candidate_name(OsStr::new(DLL_SUFFIX)));
        assert!(!is_candidate_name(OsStr::new("libhello.rlib")));
        assert!(!is_candidate_name(OsStr::new(&format!("{ok}.bak"))));
    }
}
