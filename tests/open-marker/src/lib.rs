//! A static constructor for test fixtures: code the dynamic loader runs the
//! moment a library is opened, as a hostile plugin's would. With
//! `GREETER_OPEN_MARKERS` naming a folder, it leaves a file there named
//! `<library>-<id of the process that opened it>`, so a test can prove which
//! processes mapped a library, not only whether its `init` ran.

/// Gives the library a static constructor: the dynamic loader calls
/// `$function` (an `extern "C" fn()`) the moment it opens the library.
#[macro_export]
macro_rules! constructor {
    ($function:path) => {
        // SAFETY: a function pointer in the constructor section is called
        // once by the dynamic loader, with no arguments, as the function
        // expects.
        #[cfg(target_os = "linux")]
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __CONSTRUCTOR: extern "C" fn() = $function;

        // SAFETY: as above, in Mach-O's constructor section.
        #[cfg(target_vendor = "apple")]
        #[used]
        #[unsafe(link_section = "__DATA,__mod_init_func")]
        static __CONSTRUCTOR: extern "C" fn() = $function;
    };
}

/// Gives the library a constructor that leaves the marker
/// `$GREETER_OPEN_MARKERS/<name>-<process id>`.
#[macro_export]
macro_rules! mark_opens {
    ($name:literal) => {
        #[cfg_attr(
            not(any(target_os = "linux", target_vendor = "apple")),
            allow(dead_code)
        )]
        extern "C" fn __open_marker() {
            $crate::leave($name);
        }

        $crate::constructor!(__open_marker);
    };
}

/// Leaves the marker for the library `name` in this process, if asked to.
pub fn leave(name: &str) {
    if let Some(dir) = std::env::var_os("GREETER_OPEN_MARKERS") {
        let file = format!("{name}-{}", std::process::id());
        let _ = std::fs::write(std::path::Path::new(&dir).join(file), b"opened\n");
    }
}

/// The processes that opened each library, from the markers in `dir`:
/// `(library, process id)`, sorted.
pub fn openers(dir: &std::path::Path) -> Vec<(String, u32)> {
    let mut found: Vec<(String, u32)> = std::fs::read_dir(dir)
        .expect("the markers folder")
        .map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let (library, pid) = name.rsplit_once('-').expect("<library>-<pid>");
            (library.to_owned(), pid.parse().expect("a process id"))
        })
        .collect();
    found.sort();
    found
}
