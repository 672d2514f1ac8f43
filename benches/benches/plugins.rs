//! Plugin calls and loads, each against its baseline in the same run.
//!
//! `cargo bench -p greeter-benches` runs them all; `docs/BENCHMARKS.md` has
//! the figures and what they mean.

use std::{
    fs,
    future::Future,
    hint::black_box,
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    pin::Pin,
    process::{Child, Command},
    sync::atomic::{AtomicUsize, Ordering},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use abi_stable::library::{RawLibrary, lib_header_from_path};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use dropin_host::{Loader, LockEntry, Lockfile, isolation::Recovery, probe::Probe};
use greeter_benches::{build_plugins, library_file_name};
use greeter_interface::GreeterPlugin;
use noop_interface::{NoopHost, NoopHostHandle, NoopObject, NoopPlugin};
use raw_interface::{RawModRef, RawPlugin};
use sha2::{Digest, Sha256};

trait Named {
    fn value(&self, x: u64) -> u64;
}

struct Local;

impl Named for Local {
    #[inline(never)]
    fn value(&self, x: u64) -> u64 {
        x
    }
}

unsafe extern "C" {
    /// The C library's `labs`: a trivial function in another shared object.
    safe fn labs(x: i64) -> i64;
}

#[inline(never)]
extern "C" fn local_extern(x: u64) -> u64 {
    x
}

/// The application's object of the no-op trait.
struct LocalObject;

impl NoopObject for LocalObject {
    #[inline]
    fn noop(&self, x: u64) -> u64 {
        x
    }
}

/// Waits for every future of `futures` on this thread, polling each again
/// when any is woken: a minimal executor, so that the benchmark measures
/// the calls, not a runtime.
fn block_on_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut answers: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    loop {
        for (future, answer) in futures.iter_mut().zip(&mut answers) {
            if answer.is_none()
                && let Poll::Ready(output) = future.as_mut().poll(&mut context)
            {
                *answer = Some(output);
            }
        }
        if answers.iter().all(Option::is_some) {
            return answers.into_iter().map(Option::unwrap).collect();
        }
        std::thread::park();
    }
}

#[inline(never)]
fn direct(x: u64) -> u64 {
    x
}

trait DynGreeter {
    fn greet(&self) -> String;
}

/// The benchmarks' host service: returns its argument.
struct EchoHost;

impl NoopHost for EchoHost {
    #[inline(never)]
    fn echo(&self, x: u64) -> u64 {
        x
    }
}

struct LocalGreeter;

impl DynGreeter for LocalGreeter {
    #[inline(never)]
    fn greet(&self) -> String {
        "Hello!".to_owned()
    }
}

fn calls(c: &mut Criterion) {
    let plugins = build_plugins();
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        plugins.join(library_file_name("noop_plugin")),
        dir.path().join(library_file_name("noop_plugin")),
    )
    .unwrap();
    fs::copy(
        plugins.join(library_file_name("hello")),
        dir.path().join(library_file_name("hello")),
    )
    .unwrap();

    // SAFETY: the folder holds the workspace's own plugins, built by this
    // benchmark.
    let noop_loader = unsafe {
        Loader::<NoopPlugin>::builder()
            .dir(dir.path())
            .services(NoopHostHandle::provided_by(EchoHost))
            .build()
    };
    let noop = noop_loader.load().unwrap();
    // SAFETY: the same folder of the workspace's own plugins.
    let greeters = unsafe { Loader::<GreeterPlugin>::builder().dir(dir.path()).build() }
        .load()
        .unwrap();
    // The same calls written by hand against abi_stable, loaded by it.
    let raw = RawPlugin::new(
        lib_header_from_path(&plugins.join(library_file_name("raw_plugin")))
            .and_then(|header| header.init_root_module::<RawModRef>())
            .expect("the hand-written plugin loads"),
    );

    let mut group = c.benchmark_group("call");
    group.bench_function("direct", |b| b.iter(|| direct(black_box(7))));
    let local: &dyn Named = black_box(&Local);
    group.bench_function("dyn", |b| b.iter(|| local.value(black_box(7))));
    // The handle is taken from the registry once, outside the loop.
    let plugin = noop.registry.get(NOOP_NAME).expect("the noop plugin loads");
    group.bench_function("plugin", |b| b.iter(|| plugin.noop(black_box(7))));
    // The same no-op, as a method of an object the plugin returned.
    let object = plugin
        .object()
        .expect("the noop plugin hands out an object");
    group.bench_function("object", |b| b.iter(|| object.noop(black_box(7))));
    group.bench_function("handwritten", |b| b.iter(|| raw.noop(black_box(7))));
    // Through a `Live` reference, as code that follows reloads calls: one
    // atomic load per call finds the current generation. Reloaded once, so
    // that it is a second generation that answers.
    noop_loader
        .reload(&noop.registry, NOOP_NAME)
        .expect("the noop plugin reloads");
    let live = noop
        .registry
        .live(NOOP_NAME)
        .expect("the noop plugin loads");
    assert_eq!(live.generation(), 2);
    group.bench_function("live", |b| b.iter(|| live.noop(black_box(7))));
    // The same no-op plugin in a process of its own.
    let isolated_noop = Loader::<NoopPlugin>::builder()
        .dir(dir.path())
        .services(NoopHostHandle::provided_by(EchoHost))
        .probe(Probe::command(env!("CARGO_BIN_EXE_noop-runner")))
        .build_isolated()
        .load()
        .unwrap();
    let isolated_noop = isolated_noop
        .registry
        .get(NOOP_NAME)
        .expect("the noop plugin loads isolated");
    assert_eq!(isolated_noop.noop(7).unwrap(), 7);
    group.bench_function("isolated", |b| b.iter(|| isolated_noop.noop(black_box(7))));
    // Baselines that explain call/plugin: the same function pointer call to a
    // function of the host, and to one of the C library (another shared
    // object, like a plugin).
    group.finish();
    // Calls from a plugin into its host, timed inside one call that makes
    // `iters` of them (`call_host`), against the same loop through `&dyn`
    // in the host.
    let mut services = c.benchmark_group("service");
    let echo: &dyn NoopHost = black_box(&EchoHost);
    services.bench_function("dyn", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let sum: u64 = (0..iters).map(|i| echo.echo(black_box(i))).sum();
            black_box(sum);
            start.elapsed()
        });
    });
    services.bench_function("plugin_to_host", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            black_box(plugin.call_host(iters).unwrap());
            start.elapsed()
        });
    });
    assert_eq!(isolated_noop.call_host(4).unwrap(), 6);
    services.bench_function("isolated", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            black_box(isolated_noop.call_host(iters).unwrap());
            start.elapsed()
        });
    });
    services.finish();
    // Calls from a plugin to an object of the application's (a callback),
    // timed inside one call that makes `iters` of them, against the host
    // services' `plugin_to_host` above.
    let mut callbacks = c.benchmark_group("callback");
    callbacks.bench_function("plugin_to_application", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            black_box(plugin.call_back(&LocalObject, iters).unwrap());
            start.elapsed()
        });
    });
    callbacks.finish();
    // An `async fn` whose future is ready at once, polled once by the
    // application, against `call/plugin`.
    let mut group = c.benchmark_group("call");
    let mut context = Context::from_waker(Waker::noop());
    group.bench_function("async_ready", |b| {
        b.iter(|| {
            let future = std::pin::pin!(plugin.noop_async(black_box(7)));
            match future.poll(&mut context) {
                Poll::Ready(answer) => answer,
                Poll::Pending => unreachable!("the no-op future is ready at once"),
            }
        });
    });
    group.finish();
    // Isolated `async fn` calls: one in flight at a time, against 8 at once
    // to the same plugin (throughput in calls).
    let mut group = c.benchmark_group("isolated");
    for in_flight in [1_u64, 8] {
        group.throughput(Throughput::Elements(in_flight));
        group.bench_function(format!("async_x{in_flight}"), |b| {
            b.iter(|| {
                let calls = (0..in_flight)
                    .map(|i| isolated_noop.noop_async(i))
                    .collect();
                let answers = block_on_all(calls);
                assert_eq!(answers.len() as u64, in_flight);
            });
        });
    }
    group.finish();
    let mut group = c.benchmark_group("call");
    let local_fn: extern "C" fn(u64) -> u64 = black_box(local_extern);
    group.bench_function("local_fnptr", |b| b.iter(|| local_fn(black_box(7))));
    let libc_fn: extern "C" fn(i64) -> i64 = black_box(labs);
    group.bench_function("libc_fnptr", |b| b.iter(|| libc_fn(black_box(7))));
    group.finish();

    let mut group = c.benchmark_group("greet");
    let local: &dyn DynGreeter = black_box(&LocalGreeter);
    group.bench_function("dyn", |b| b.iter(|| local.greet()));
    let hello = greeters
        .registry
        .get("hello")
        .expect("the hello plugin loads");
    group.bench_function("plugin", |b| b.iter(|| hello.greet().unwrap()));
    group.bench_function("handwritten", |b| b.iter(|| raw.greet().unwrap()));
    let mut ipc = IpcGreeter::spawn(dir.path());
    assert_eq!(ipc.greet(), "Hello!");
    group.bench_function("ipc", |b| b.iter(|| ipc.greet()));
    // The same plugin file, isolated: its own process, reached through the
    // same handle, through memory shared with it.
    let isolated = Loader::<GreeterPlugin>::builder()
        .dir(dir.path())
        .probe(Probe::command(plugins.join("greeter-host")))
        .build_isolated()
        .load()
        .unwrap();
    let isolated = isolated
        .registry
        .get("hello")
        .expect("the hello plugin loads isolated");
    assert!(isolated.is_isolated());
    group.bench_function("isolated", |b| b.iter(|| isolated.greet().unwrap()));
    group.finish();
    // One isolated plugin called from 1 and from 4 threads at once
    // (throughput in calls): each thread makes the same number of calls.
    let mut group = c.benchmark_group("isolated");
    for threads in [1_u64, 4] {
        group.throughput(Throughput::Elements(threads));
        group.bench_function(format!("greet_threads_x{threads}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..threads {
                        scope.spawn(|| {
                            for _ in 0..iters {
                                black_box(isolated.greet().unwrap());
                            }
                        });
                    }
                });
                start.elapsed()
            });
        });
    }
    group.finish();

    // From a crash to the restarted plugin answering again: the isolated
    // process is killed, the next call reports it, the one after starts a
    // new process (its `init` runs again) and answers.
    let restarting = Loader::<GreeterPlugin>::builder()
        .dir(dir.path())
        .probe(Probe::command(plugins.join("greeter-host")))
        .isolation_recovery(Recovery::Restart {
            attempts: u32::MAX,
            backoff: Duration::ZERO,
        })
        .build_isolated()
        .load()
        .unwrap();
    let restarting = restarting.registry.get("hello").unwrap();
    let mut group = c.benchmark_group("isolated");
    group.sample_size(20);
    group.bench_function("restart", |b| {
        b.iter(|| {
            let pid = restarting.core().process_id().expect("running");
            // SAFETY: sending a signal to the plugin's own process.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            // The plugin runs below that process, in a PID namespace that
            // ends with it a moment later: calls may still be answered
            // before it does, the more of them the busier the machine.
            let killed = std::time::Instant::now();
            while restarting.greet().is_ok() {
                assert!(
                    killed.elapsed() < Duration::from_secs(10),
                    "the killed process kept answering"
                );
            }
            restarting.greet().unwrap()
        });
    });
    group.finish();
}

/// A client of `greeter-ipc-server`, over one persistent connection.
struct IpcGreeter {
    child: Child,
    stream: UnixStream,
    buffer: Vec<u8>,
}

impl IpcGreeter {
    fn spawn(dir: &Path) -> Self {
        let socket = dir.join("greeter.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_greeter-ipc-server"))
            .arg(&socket)
            .spawn()
            .expect("the IPC server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(error) => panic!("cannot connect to the IPC server: {error}"),
            }
        };
        Self {
            child,
            stream,
            buffer: Vec::new(),
        }
    }

    fn greet(&mut self) -> String {
        const REQUEST: &[u8] = b"\x05\0\0\0greet";
        self.stream.write_all(REQUEST).unwrap();
        let mut len = [0; 4];
        self.stream.read_exact(&mut len).unwrap();
        self.buffer.resize(u32::from_le_bytes(len) as usize, 0);
        self.stream.read_exact(&mut self.buffer).unwrap();
        String::from_utf8(self.buffer.clone()).unwrap()
    }
}

impl Drop for IpcGreeter {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

const COPIES: usize = 100;

/// The noop plugin's name, which each copy gets a distinct variant of:
/// `noop-0000`, `noop-0001`, ...
const NOOP_NAME: &str = "noop-0000";

/// Writes `count` distinct plugins made from `library` into `dir`: each a
/// copy whose plugin name is patched to its own (`noop-0042`, same length),
/// in a file named by `file_stem`. Returns each file's name, plugin name
/// and SHA-256.
fn write_plugins(
    library: &[u8],
    dir: &Path,
    count: usize,
    file_stem: impl Fn(usize) -> String,
) -> Vec<(String, String, String)> {
    fs::create_dir(dir).unwrap();
    // Every place the name is: the root module's, the description's.
    let places: Vec<usize> = library
        .windows(NOOP_NAME.len())
        .enumerate()
        .filter(|(_, window)| *window == NOOP_NAME.as_bytes())
        .map(|(at, _)| at)
        .collect();
    assert!(!places.is_empty(), "the plugin name is in the library");
    let mut bytes = library.to_vec();
    (0..count)
        .map(|i| {
            let name = format!("noop-{i:04}");
            for &at in &places {
                bytes[at..at + name.len()].copy_from_slice(name.as_bytes());
            }
            let file = library_file_name(&file_stem(i));
            fs::write(dir.join(&file), &bytes).unwrap();
            (file, name, format!("{:x}", Sha256::digest(&bytes)))
        })
        .collect()
}

/// A fresh folder of `COPIES` distinct plugins made from `library`, under
/// file names never used before in this process (a library is never
/// unloaded, and the dynamic loader returns the already-loaded one for a
/// path it has seen). Returns the folder and each file's name, plugin name
/// and SHA-256.
fn fresh_plugins(library: &[u8], root: &Path) -> (PathBuf, Vec<(String, String, String)>) {
    static ROUND: AtomicUsize = AtomicUsize::new(0);
    let round = ROUND.fetch_add(1, Ordering::Relaxed);
    let dir = root.join(format!("round-{round}"));
    let files = write_plugins(library, &dir, COPIES, |i| format!("noop_{round}_{i}"));
    (dir, files)
}

/// How many plugins `load/*_x1000` loads.
const THOUSAND: usize = 1000;

/// A folder of `count` distinct plugins made from `library`, with a lock
/// file approving each.
fn distinct_plugins(library: &[u8], root: &Path, count: usize) -> PathBuf {
    let dir = root.join(format!("distinct-{count}"));
    let files = write_plugins(library, &dir, count, |i| format!("noop_{i:04}"));
    lock(&dir, &files);
    dir
}

/// Runs `load-runner MODE DIR` on a folder of `expected` plugins: how long
/// its loading took, and the resident memory it added per plugin, in KiB.
fn run_loads(mode: &str, dir: &Path, expected: usize) -> (Duration, f64) {
    let output = Command::new(env!("CARGO_BIN_EXE_load-runner"))
        .arg(mode)
        .arg(dir)
        .output()
        .expect("load-runner runs");
    assert!(
        output.status.success(),
        "load-runner {mode}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|field| field.parse().unwrap())
        .collect();
    let [nanos, before, after, count] = fields[..] else {
        panic!("load-runner printed {line:?}");
    };
    assert_eq!(count, expected as u64, "load-runner {mode}");
    (
        Duration::from_nanos(nanos),
        after.saturating_sub(before) as f64 / count as f64,
    )
}

/// A lock file in `dir` approving each of `files`.
fn lock(dir: &Path, files: &[(String, String, String)]) {
    let entries = files
        .iter()
        .map(|(file, name, sha256)| LockEntry {
            file: file.clone(),
            sha256: sha256.clone(),
            name: name.clone(),
            version: "1.0.0".to_owned(),
            interface_version: "1.0.0".to_owned(),
        })
        .collect();
    Lockfile::new(entries)
        .write(&dir.join(dropin_host::LOCKFILE_NAME))
        .unwrap();
}

fn loads(c: &mut Criterion) {
    let plugins = build_plugins();
    let library = fs::read(plugins.join(library_file_name("noop_plugin"))).unwrap();
    let root = tempfile::tempdir().unwrap();

    let mut group = c.benchmark_group("load");
    // Libraries are never unloaded: every iteration maps 100 more, and the
    // process must stay below the kernel's limit on mappings
    // (vm.max_map_count, about ten per library). Ten samples of one
    // iteration each, hardly any warm-up.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(500));
    let load = |dir: &Path, probe: Option<Probe>| {
        let mut builder = Loader::<NoopPlugin>::builder()
            .dir(dir)
            .max_mapped(usize::MAX);
        if let Some(probe) = probe {
            builder = builder.probe(probe);
        }
        // SAFETY: the folder holds copies of the workspace's own noop
        // plugin, written by this benchmark.
        let report = unsafe { builder.build() }.load().unwrap();
        assert_eq!(report.registry.len(), COPIES, "{:?}", report.rejected);
        report
    };
    let probe = || Some(Probe::command(plugins.join("greeter-host")));
    // Reading one plugin's description from its file (the export table,
    // then its bytes): what the loader reads of every file before any
    // process opens it.
    let one = write_plugins(&library, &root.path().join("describe"), 1, |i| {
        format!("described_{i}")
    });
    let described = root.path().join("describe").join(&one[0].0);
    group.bench_function("describe", |b| {
        b.iter(|| dropin_host::read_description(black_box(&described)).unwrap());
    });
    // Every file is a distinct plugin: all 100 load, as all 100 are opened
    // by the baseline.
    group.bench_function("plugin_x100", |b| {
        b.iter_batched(
            || fresh_plugins(&library, root.path()).0,
            |dir| load(&dir, None),
            BatchSize::PerIteration,
        );
    });
    // The deployment mode: a lock file approves every file, so none is
    // probed, and each is hashed while it is copied.
    group.bench_function("plugin_x100_locked", |b| {
        b.iter_batched(
            || {
                let (dir, files) = fresh_plugins(&library, root.path());
                lock(&dir, &files);
                dir
            },
            |dir| load(&dir, probe()),
            BatchSize::PerIteration,
        );
    });
    // Without a lock file, with the probe: one process per library.
    group.bench_function("plugin_x100_probed", |b| {
        b.iter_batched(
            || fresh_plugins(&library, root.path()).0,
            |dir| load(&dir, probe()),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("dlopen_x100", |b| {
        b.iter_batched(
            || fresh_plugins(&library, root.path()).0,
            |dir| {
                for entry in fs::read_dir(&dir).unwrap() {
                    let library = RawLibrary::load_at(&entry.unwrap().path()).unwrap();
                    // SAFETY: the symbol is only looked up, never called.
                    let symbol = unsafe {
                        library.get::<*const u8>(
                            abi_stable::library::ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes(),
                        )
                    };
                    if let Err(error) = symbol {
                        panic!("{error}");
                    }
                    std::mem::forget(library);
                }
            },
            BatchSize::PerIteration,
        );
    });

    // Every sample a process of its own (`load-runner`), since one process
    // maps only so many libraries and never unmaps a plugin. Each folder is
    // made once: a fresh process has loaded none of its files, which stay
    // in the page cache for every mode alike. Each sample reports the time
    // of its loading alone. `cached`: locked, with a snapshot cache that
    // the warm-up fills; the samples map the copies it kept, which this
    // build proved (the deployment mode, from the second start on). A
    // hundred: the cached mode against `dlopen` of the same warm folder
    // (the other modes at a hundred are measured in this process above).
    let mut rss = Vec::new();
    for (count, modes) in [
        (100, &["cached", "dlopen"][..]),
        (
            THOUSAND,
            &["plugin", "locked", "cached", "floor", "dlopen"][..],
        ),
    ] {
        let folder = distinct_plugins(&library, root.path(), count);
        for &mode in modes {
            let id = match (mode, count) {
                ("plugin", _) => format!("plugin_x{count}"),
                ("locked", _) => format!("plugin_x{count}_locked"),
                ("cached", _) => format!("plugin_x{count}_cached"),
                ("floor", _) => format!("floor_x{count}_locked"),
                (_, THOUSAND) => format!("dlopen_x{count}"),
                _ => format!("dlopen_x{count}_warm"),
            };
            let mut per_plugin = Vec::new();
            group.bench_function(&id, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let (elapsed, kib) = run_loads(mode, &folder, count);
                            per_plugin.push(kib);
                            elapsed
                        })
                        .sum()
                });
            });
            per_plugin.sort_by(f64::total_cmp);
            rss.push((id, per_plugin.get(per_plugin.len() / 2).copied()));
        }
    }
    for (id, kib) in rss {
        if let Some(kib) = kib {
            println!("load/{id}: {kib:.0} KiB resident per plugin (median over the samples)");
        }
    }
    group.finish();

    let mut group = c.benchmark_group("verify");
    let mib = vec![0x5a_u8; 1 << 20];
    group.throughput(Throughput::Bytes(mib.len() as u64));
    group.bench_function("sha256", |b| b.iter(|| Sha256::digest(black_box(&mib))));
    group.finish();
}

criterion_group!(benches, calls, loads);
criterion_main!(benches);
