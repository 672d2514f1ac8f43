//! `store-app [--plugins-dir DIR] [--isolate] [--config NAME=TEXT]... REQUEST...`:
//! sends each request (`get:KEY`, `put:KEY=VALUE`, `list`, `list:PREFIX`,
//! `table:NAME:KEY`, `rows:NAME`, `scan:PREFIX[:LIMIT]`, `scan-panic:PREFIX`,
//! `watch`, `unwatch`, `fetch:KEY` or `follow:PREFIX:COUNT`, which waits for
//! COUNT entries) to every store plugin of the folder (default
//! `./plugins`), in this process or, with `--isolate`, each plugin in a
//! process of its own, and says what each answered: the store's errors are
//! matched one by one, apart from the framework's own failures.

use std::{
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use dropin::CallError;
use dropin_host::{
    ErrorChain, Loader, isolation,
    probe::{self, Probe},
};
use store_interface::{StoreError, StorePlugin, Visitor, Watcher};

/// The application's visitor of a scan: lists what it is shown, and stops
/// after `limit` entries (or panics at the first, to show that a panic in
/// the application's callback is contained).
struct Lister {
    listed: Mutex<Vec<String>>,
    limit: u64,
    panics: bool,
}

impl Visitor for Lister {
    fn entry(&self, key: &str, value: &str) -> bool {
        assert!(!self.panics, "the visitor refuses {key}");
        let mut listed = self.listed.lock().unwrap_or_else(|e| e.into_inner());
        listed.push(format!("{key}={value}"));
        (listed.len() as u64) < self.limit
    }
}

/// The application's watcher: each change it is told of goes to the
/// requests' loop; its drop is recorded.
struct Forward {
    changes: Mutex<mpsc::Sender<String>>,
    dropped: Arc<AtomicBool>,
}

impl Watcher for Forward {
    fn changed(&self, key: &str, value: &str) {
        let changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let _ = changes.send(format!("{key}={value}"));
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// What a plugin's watcher tells the requests' loop: its changes, and
/// whether it was dropped.
struct Watching {
    changes: mpsc::Receiver<String>,
    dropped: Arc<AtomicBool>,
}

/// How long the application waits for a watcher to be told of a change.
const TOLD_WITHIN: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // Started again by the loader, this program is the isolated plugins'
    // process (and the probe's): it serves, and exits.
    probe::serve_if_requested();
    isolation::serve_if_requested::<StorePlugin>();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = "plugins".to_owned();
    let mut isolate = false;
    let mut configs = Vec::new();
    loop {
        match args.first().map(String::as_str) {
            Some("--plugins-dir") if args.len() > 1 => dir = args.remove(1),
            Some("--config") if args.len() > 1 => match args.remove(1).split_once('=') {
                Some((name, text)) => configs.push((name.to_owned(), text.to_owned())),
                None => return usage(),
            },
            Some("--isolate") => isolate = true,
            _ => break,
        }
        args.remove(0);
    }
    if args.is_empty() {
        return usage();
    }
    let mut builder = Loader::<StorePlugin>::builder().dir(&dir);
    for (name, text) in configs {
        builder = builder.config(name, text);
    }
    let loader = if isolate {
        match Probe::current_exe() {
            Ok(probe) => builder.probe(probe).build_isolated(),
            Err(error) => {
                eprintln!("store-app: cannot find this program to run plugins: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        // SAFETY: the plugins folder holds the stores built from this
        // repository (`examples/store/`), which run in this process as this
        // program's own code does.
        unsafe { builder.build() }
    };
    let report = match loader.load() {
        Ok(report) => report,
        Err(error) => {
            eprintln!("store-app: {}", ErrorChain(&error));
            return ExitCode::from(2);
        }
    };
    let mut ok = report.rejected.is_empty();
    for error in &report.rejected {
        eprintln!("store-app: rejected {}", ErrorChain(error));
    }
    for plugin in report.registry.iter() {
        let mut watching = None;
        for request in &args {
            match answer(plugin.handle(), request, &mut watching) {
                Ok(answer) => println!("{}: {request}: {answer}", plugin.name()),
                Err(error) => {
                    eprintln!("store-app: {request}: {error}");
                    ok = false;
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What `store` answered `request`, in words; or how the call failed (the
/// plugin panicked, its process crashed, ...).
fn answer(
    store: &StorePlugin,
    request: &str,
    watching: &mut Option<Watching>,
) -> Result<String, CallError> {
    let answered = if let Some(key) = request.strip_prefix("get:") {
        store.get(key)?.map(String::from)
    } else if let Some((key, value)) = request.strip_prefix("put:").and_then(|r| r.split_once('='))
    {
        let stored = store.put(key, value)?.map(|replaced| match replaced {
            Some(old) => format!("stored, replacing {old}"),
            None => "stored".to_owned(),
        });
        // A watcher is told from the store's thread, a moment later.
        match (stored, watching.as_ref()) {
            (Ok(stored), Some(watching)) => match watching.changes.recv_timeout(TOLD_WITHIN) {
                Ok(change) => Ok(format!("{stored}; watcher told {change}")),
                Err(_) => Ok(format!("{stored}; watcher not told")),
            },
            (stored, _) => stored,
        }
    } else if let Some(rest) = request.strip_prefix("scan:") {
        // A callback lent for the call: the store calls it with each entry.
        let (prefix, limit) = match rest.split_once(':') {
            Some((prefix, limit)) => (prefix, limit.parse().unwrap_or(u64::MAX)),
            None => (rest, u64::MAX),
        };
        let lister = Lister {
            listed: Mutex::new(Vec::new()),
            limit,
            panics: false,
        };
        let visited = store.scan(prefix, &lister)?;
        let listed = lister
            .listed
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        return Ok(format!("visited {visited}: {}", listed.join(", ")));
    } else if let Some(prefix) = request.strip_prefix("scan-panic:") {
        let lister = Lister {
            listed: Mutex::new(Vec::new()),
            limit: u64::MAX,
            panics: true,
        };
        // The call fails; the plugin, which did nothing wrong, stays.
        return Ok(match store.scan(prefix, &lister) {
            Ok(visited) => format!("visited {visited}"),
            Err(error) => format!("{:?}: {}", error.kind(), error.message()),
        });
    } else if let Some(key) = request.strip_prefix("fetch:") {
        // An `async fn`, awaited: on this program's own small executor.
        block_on(store.fetch(key))?.map(String::from)
    } else if let Some((prefix, count)) = request
        .strip_prefix("follow:")
        .and_then(|rest| rest.split_once(':'))
    {
        // An async stream: the first COUNT entries, then dropped.
        let feed = store.follow(prefix)?;
        let mut followed = Vec::new();
        for _ in 0..count.parse().unwrap_or(0) {
            match block_on(feed.next())? {
                Some((key, value)) => followed.push(format!("{key}={value}")),
                None => break,
            }
        }
        return Ok(followed.join(", "));
    } else if request == "watch" {
        // A callback given to the plugin, which keeps it.
        let (send, changes) = mpsc::channel();
        let dropped = Arc::new(AtomicBool::new(false));
        store.watch(Box::new(Forward {
            changes: Mutex::new(send),
            dropped: Arc::clone(&dropped),
        }))?;
        *watching = Some(Watching { changes, dropped });
        return Ok("watching".to_owned());
    } else if request == "unwatch" {
        let count = store.unwatch()?;
        let dropped = watching
            .take()
            .is_some_and(|watching| watching.dropped.load(Ordering::SeqCst));
        return Ok(format!(
            "dropped {count} watcher(s); ours dropped: {dropped}"
        ));
    } else if let Some((name, key)) = request
        .strip_prefix("table:")
        .and_then(|rest| rest.split_once(':'))
    {
        // An object of the store's: opened, read, dropped (in the store).
        return Ok(match store.open(name)? {
            Ok(table) => {
                let value = table.get(key)?;
                format!("{value:?} ({} read)", table.reads()?)
            }
            Err(StoreError::NotFound { key }) => format!("no table {key:?}"),
            Err(StoreError::ReadOnly) => "refused: the store is read-only".to_owned(),
        });
    } else if let Some(name) = request.strip_prefix("rows:") {
        // Objects returned by an object: the table's rows, one by one.
        let table = match store.open(name)? {
            Ok(table) => table,
            Err(error) => return Ok(format!("no table: {error:?}")),
        };
        let rows = table.rows()?;
        let mut listed = Vec::new();
        while let Some((key, value)) = rows.next()? {
            listed.push(format!("{key}={value}"));
        }
        return Ok(listed.join(", "));
    } else if let Some(prefix) = request.strip_prefix("list") {
        let entries = store.entries(prefix.strip_prefix(':'))?;
        let listed: Vec<String> = entries
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let noun = if listed.len() == 1 {
            "entry"
        } else {
            "entries"
        };
        return Ok(format!("{} {noun}: {}", listed.len(), listed.join(", ")));
    } else {
        return Ok(
            "not a request: expected get:KEY, put:KEY=VALUE, list[:PREFIX], table:NAME:KEY, \
             rows:NAME, scan:PREFIX[:LIMIT], scan-panic:PREFIX, watch, unwatch, fetch:KEY or \
             follow:PREFIX:COUNT"
                .to_owned(),
        );
    };
    // The store's own errors, matched as the values they are.
    Ok(match answered {
        Ok(text) => text,
        Err(StoreError::NotFound { key }) => format!("nothing stored under {key}"),
        Err(StoreError::ReadOnly) => "refused: the store is read-only".to_owned(),
    })
}

/// Runs `future` to its end on this thread: the application's futures of
/// plugins run on any executor, and this program needs no more than this.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: store-app [--plugins-dir DIR] [--isolate] [--config NAME=TEXT]... \
         get:KEY|put:KEY=VALUE|list[:PREFIX]..."
    );
    ExitCode::from(2)
}
