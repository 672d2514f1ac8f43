//! Hostile and broken files never crash the host: over a thousand bad
//! files, generated from real plugins with seeded randomness (random bytes,
//! truncations, headers, and every table the dynamic loader reads), in one
//! folder with good plugins. The binary must list every bad file as rejected
//! with a reason, still greet with the good plugins, and end with status 1:
//! not a signal, not the dynamic loader's 127.
//!
//! Each bad file must be refused by the checks aimed at what was changed
//! (a header by the header checks; a table the dynamic loader reads by the
//! table checks, or in the probe process), or else pass every check: then it
//! is a library whose code may differ (a changed relocation moves a
//! pointer), and run in a process of its own it greets or fails its call,
//! never taking the host down.
//!
//! Every run draws a fresh seed, printed when the test fails;
//! `GREETER_CORPUS_SEED=<n>` replays a run.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use greeter_tests::{PluginDir, artifacts, library_file_name};
use serde_json::Value;

/// SplitMix64: small, seedable, good enough to pick offsets and bits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The bad files of one run, by category.
struct Corpus {
    dir: PluginDir,
    made: BTreeMap<PathBuf, &'static str>,
}

impl Corpus {
    fn add(&mut self, category: &'static str, bytes: &[u8]) {
        // "zz": after the good plugins, so that a mutant that still loads
        // is a duplicate of a good plugin, not its replacement.
        let file = library_file_name(&format!("zz-{:03}-{category}", self.made.len()));
        let path = self.dir.write(&file, bytes);
        self.made.insert(path, category);
    }

    fn add_path(&mut self, category: &'static str, make: impl FnOnce(&Path)) {
        let path = self.dir.path().join(library_file_name(&format!(
            "zz-{:03}-{category}",
            self.made.len()
        )));
        make(&path);
        self.made.insert(path, category);
    }
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u64(b: &mut [u8], at: usize, value: u64) {
    b[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Builds over a thousand bad files, most of them mutations of the tables
/// the dynamic loader reads.
fn generate(rng: &mut Rng, dir: PluginDir) -> Corpus {
    let mut corpus = Corpus {
        dir,
        made: BTreeMap::new(),
    };
    let hello = fs::read(artifacts().library("hello")).unwrap();
    let counter = fs::read(artifacts().library("counter")).unwrap();
    let phoff = u64_at(&hello, 32) as usize;
    let phnum = u16_at(&hello, 56);
    let header_end = phoff + phnum * 56;

    for _ in 0..20 {
        let len = rng.below(16_384);
        corpus.add("random", &rng.bytes(len));
    }
    for _ in 0..20 {
        // Random bytes behind a valid ELF identification.
        let mut bytes = hello[..16].to_vec();
        let len = rng.below(16_384);
        bytes.extend(rng.bytes(len));
        corpus.add("random-elf", &bytes);
    }
    for _ in 0..50 {
        let base = if rng.below(2) == 0 { &hello } else { &counter };
        let cut = 1 + rng.below(base.len() - 1);
        corpus.add("truncated", &base[..cut]);
    }
    for _ in 0..60 {
        // 1 to 4 bit flips in the ELF header and program header table.
        let mut bytes = hello.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(header_end);
            bytes[at] ^= 1 << rng.below(8);
        }
        corpus.add("bitflip", &bytes);
    }
    for _ in 0..20 {
        // A program header whose offset or size points past the end.
        let mut bytes = hello.clone();
        let ph = phoff + rng.below(phnum) * 56;
        let field = if rng.below(2) == 0 { 8 } else { 32 };
        let value = match rng.below(3) {
            0 => bytes.len() as u64 + rng.below(1 << 20) as u64,
            1 => u64::MAX - rng.below(4096) as u64,
            _ => rng.next(),
        };
        put_u64(&mut bytes, ph + field, value);
        corpus.add("segment", &bytes);
    }
    for (category, patch) in [
        ("aarch64", &[(18usize, 183u8), (19, 0)][..]),
        ("riscv", &[(18, 243), (19, 0)]),
        ("x86", &[(18, 3), (19, 0)]),
        ("elf32", &[(4, 1)]),
        ("big-endian", &[(5, 2)]),
        ("executable", &[(16, 2), (17, 0)]),
        ("relocatable", &[(16, 1), (17, 0)]),
        ("core", &[(16, 4), (17, 0)]),
        ("elf-class-7", &[(4, 7)]),
        ("elf-version", &[(6, 2)]),
        ("os-abi", &[(7, 9)]),
        ("ident-padding", &[(12, 1)]),
    ] {
        let mut bytes = hello.clone();
        for &(at, value) in patch {
            bytes[at] = value;
        }
        corpus.add(category, &bytes);
    }
    let mut macho = vec![
        0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 1, 0, 0, 0, 0, 6, 0, 0, 0,
    ];
    macho.extend(rng.bytes(4096));
    corpus.add("mach-o", &macho);
    let mut fat = vec![0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2];
    fat.extend(rng.bytes(4096));
    corpus.add("mach-o-universal", &fat);
    let mut pe = vec![0u8; 512];
    pe[..2].copy_from_slice(b"MZ");
    pe[60] = 128;
    pe[128..132].copy_from_slice(b"PE\0\0");
    pe[132..134].copy_from_slice(&0xaa64u16.to_le_bytes());
    corpus.add("pe", &pe);
    corpus.add("wasm", b"\0asm\x01\0\0\0");
    corpus.add("script", b"#!/bin/sh\necho not a library\n");
    corpus.add(
        "linker-script",
        b"/* GNU ld script */\nGROUP ( /lib/libc.so.6 )\n",
    );
    for _ in 0..5 {
        corpus.add("empty", b"");
    }
    for _ in 0..5 {
        corpus.add_path("folder", |path| fs::create_dir(path).unwrap());
    }
    for _ in 0..5 {
        corpus.add_path("broken-link", |path| {
            std::os::unix::fs::symlink(path.with_extension("missing"), path).unwrap();
        });
    }
    let libraries = system_libraries();
    if greeter_tests::precondition(
        "system-libraries",
        !libraries.is_empty(),
        "none of the small system libraries the corpus copies was found",
    ) {
        for library in libraries {
            corpus.add("system-library", &fs::read(library).unwrap());
        }
    }
    // Every table the dynamic loader reads, beyond the headers: one to four
    // flipped bits, or one random 8-byte word, inside the section. The
    // dynamic loader trusts all of them; the probe process takes the fall.
    for (category, section) in [
        ("dynamic", ".dynamic"),
        ("rela-dyn", ".rela.dyn"),
        ("rela-plt", ".rela.plt"),
        ("gnu-hash", ".gnu.hash"),
        ("versym", ".gnu.version"),
        ("verneed", ".gnu.version_r"),
        ("dynsym", ".dynsym"),
        ("dynstr", ".dynstr"),
        ("note", ".note.gnu.build-id"),
        ("init-array", ".init_array"),
        ("data-rel-ro", ".data.rel.ro"),
        ("eh-frame-hdr", ".eh_frame_hdr"),
    ] {
        let Some((start, len)) = greeter_tests::elf_section(&hello, section) else {
            panic!("hello has no {section} section");
        };
        for _ in 0..REGION_MUTANTS {
            let mut bytes = hello.clone();
            if rng.below(2) == 0 {
                for _ in 0..1 + rng.below(4) {
                    let at = start + rng.below(len);
                    bytes[at] ^= 1 << rng.below(8);
                }
            } else if len >= 8 {
                let at = start + rng.below(len / 8) * 8;
                put_u64(&mut bytes, at, rng.next());
            }
            corpus.add(category, &bytes);
        }
    }
    corpus
}

/// Mutants per section: with the rest, over a thousand files per run.
const REGION_MUTANTS: usize = 70;

/// A few ordinary shared libraries of the system, none of them a plugin.
/// Only small, self-contained ones: a second copy of the C library or the
/// dynamic loader in one process is not a plugin problem.
fn system_libraries() -> Vec<PathBuf> {
    let names = [
        "libz.so.1",
        "libbz2.so.1.0",
        "liblzma.so.5",
        "libzstd.so.1",
        "libexpat.so.1",
        "libffi.so.8",
    ];
    let folders = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/usr/lib",
    ];
    names
        .iter()
        .filter_map(|name| {
            folders
                .iter()
                .map(|folder| Path::new(folder).join(name))
                .find(|path| path.is_file())
        })
        .collect()
}

/// What may refuse a file of `category`, as the start of the reason (after
/// the path), and whether the file may instead pass every check.
fn aimed_checks(category: &str) -> (&'static [&'static str], bool) {
    const HEADERS: &[&str] = &["not a loadable library: "];
    const TABLES: &[&str] = &[
        "not a loadable library: corrupt header: ",
        "the probe process that opened it first ",
        "the dynamic loader refused it: ",
        "not a plugin: ",
        // abi_stable's checks of the root module's header and layouts, found
        // through the symbol table, in relocated data.
        "not a dropin root module of a compatible layout ",
        "built with an incompatible abi_stable: ",
        // The host's policy, which reads the root module's strings and
        // versions, in relocated data: a relocation that moves a pointer
        // hands it other bytes (seed 1796467602742415972 moved the dropin
        // version's).
        "built with dropin ",
        "built against ",
        "expected a dropin plugin of ",
        "not compatible with ",
        "requires a host matching ",
        "invalid ",
        // The description, found through the dynamic symbol table, and the
        // root module that must agree with it.
        "its description cannot be read",
        "its description says ",
    ];
    match category {
        "folder" => (&["expected a regular library file, found a folder"], false),
        "broken-link" => (&["cannot read the file: "], false),
        "system-library" => (&["not a plugin: "], false),
        // A flipped bit in the ELF header may land in the section table's
        // offset, count or entry size, which the description reader uses to
        // find the dynamic symbol table (seed 1796497725527170507 left one
        // section). Or it may land where no reader looks.
        "bitflip" => (
            &[
                "not a loadable library: ",
                "not a plugin: expected the description a dropin plugin exports, found a library without one",
                "its description cannot be read",
            ],
            true,
        ),
        // A moved segment may land where no loader looks.
        "segment" => (HEADERS, true),
        "dynamic" | "rela-dyn" | "rela-plt" | "gnu-hash" | "versym" | "verneed" | "dynsym"
        | "dynstr" | "note" | "init-array" | "data-rel-ro" | "eh-frame-hdr" => (TABLES, true),
        _ => (HEADERS, false),
    }
}

/// Prints the seed if the test fails, so that the run can be replayed.
struct Replay(u64);

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "corpus seed {0}: replay with GREETER_CORPUS_SEED={0}",
                self.0
            );
        }
    }
}

#[test]
fn a_thousand_bad_files_are_all_rejected_and_the_good_plugins_still_greet() {
    let seed = std::env::var("GREETER_CORPUS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            now.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
        });
    let _replay = Replay(seed);
    let corpus = generate(&mut Rng(seed), PluginDir::with(&["hello", "hellohello"]));
    assert!(
        corpus.made.len() >= 1000,
        "only {} bad files",
        corpus.made.len()
    );

    // `GREETER_CORPUS_KEEP=<folder>` keeps a copy of the corpus to debug.
    if let Some(keep) = std::env::var_os("GREETER_CORPUS_KEEP") {
        let _ = std::process::Command::new("cp")
            .arg("-r")
            .arg(corpus.dir.path())
            .arg(keep)
            .status();
    }
    // Greeting loads: every mutant the descriptions let through is mapped.
    let output = corpus.dir.run(&["greet", "--format", "json"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "ended by a signal? {:?}",
        output.status
    );
    let entries: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut by_path: BTreeMap<PathBuf, &Value> = entries
        .iter()
        .map(|entry| (PathBuf::from(entry["path"].as_str().unwrap()), entry))
        .collect();
    let hello = corpus.dir.path().join(library_file_name("hello"));
    for good in ["hello", "hellohello"] {
        let entry = by_path
            .remove(&corpus.dir.path().join(library_file_name(good)))
            .unwrap();
        assert_eq!(entry["status"], "loaded", "{entry}");
    }
    // Mutants that passed every check: refused only for their name, which
    // the good `hello` has already.
    let duplicate = format!(
        "a plugin named 'hello' is already loaded from {}",
        hello.display()
    );
    let mut passed = Vec::new();
    for (path, category) in &corpus.made {
        let entry = by_path
            .remove(path)
            .unwrap_or_else(|| panic!("{category} file {} not listed", path.display()));
        assert_eq!(entry["status"], "rejected", "{category}: {entry}");
        let error = entry["error"].as_str().unwrap();
        let reason = error
            .strip_prefix(&format!("{}: ", path.display()))
            .unwrap_or_else(|| panic!("{category}: {error}"));
        let (checks, may_pass) = aimed_checks(category);
        if may_pass && reason == duplicate {
            passed.push(path);
            continue;
        }
        assert!(
            checks.iter().any(|check| reason.starts_with(check)),
            "{category} file {} refused by another check than {checks:?}: {reason}",
            path.display()
        );
    }
    assert!(by_path.is_empty(), "unexpected entries: {by_path:?}");

    let output = corpus.dir.run(&["greet"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "ended by a signal? {:?}",
        output.status
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "hello: Hello!\nhellohello: Hello!Hello!!\n"
    );

    // Some mutants always pass (no loader reads the build-id note's bytes).
    assert!(!passed.is_empty());
    // What passed every check, run alone in a process of its own, greets or
    // fails its call; the host ends normally either way.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(path) =
                    passed.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    let alone = PluginDir::new();
                    fs::copy(path, alone.path().join(library_file_name("mutant"))).unwrap();
                    let output = alone.run(&["--isolate", "--call-timeout", "20s", "greet"]);
                    let stdout = greeter_tests::stdout(&output);
                    let outcome = (output.status.code(), stdout.as_str());
                    assert!(
                        outcome == (Some(0), "hello: Hello!\n") || outcome.0 == Some(1),
                        "{} passed every check; isolated, the host ended with {:?}: {stdout}{}",
                        path.display(),
                        output.status,
                        greeter_tests::stderr(&output)
                    );
                }
            });
        }
    });
}
