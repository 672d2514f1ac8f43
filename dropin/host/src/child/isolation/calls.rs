//! `async fn` calls to an isolated plugin, many in flight at once over the
//! channel at file descriptor 4: each call is a numbered frame, each answer
//! names its call. On the host's side one thread reads the answers and
//! wakes the futures that wait for them; no thread waits per call. On the
//! process's side each call is served on a thread of its own, and a
//! cancelled call's future is dropped there.

use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
    thread,
    time::Duration,
};

use dropin::{CallError, CallErrorKind, Interface, wire::Encode};

use crate::sys;

use super::*;

/// What the host sends on the channel of `async fn` calls.
#[derive(dropin::Stable)]
pub(super) enum Call {
    /// Starts the call number `id` of method `method`.
    Start { id: u64, method: u32, args: Vec<u8> },
    /// The host dropped the call's future: drop the plugin's.
    Cancel { id: u64 },
    /// Starts the call number `id` of method `method` of the object number
    /// `object` that the process keeps.
    Object {
        id: u64,
        object: u64,
        method: u32,
        args: Vec<u8>,
    },
}

/// What the process answers a call: its number and the encoded outcome.
#[derive(dropin::Stable)]
pub(super) struct Answered {
    id: u64,
    outcome: Vec<u8>,
}

/// The host's end of one process's channel of `async fn` calls.
pub(super) struct Link {
    writer: Mutex<sys::Channel>,
    pending: Mutex<Pending>,
    name: String,
}

#[derive(Default)]
struct Pending {
    slots: HashMap<u64, Slot>,
    next: u64,
    /// Why no call can be answered any more.
    closed: Option<String>,
}

#[derive(Default)]
struct Slot {
    answer: Option<Result<Vec<u8>, CallError>>,
    waker: Option<Waker>,
}

impl Link {
    /// The link over `channel` to the process of the plugin `name`, whose
    /// answers a thread of its own reads. A write waits at most `timeout`
    /// for the process to read.
    pub(super) fn start(
        channel: sys::Channel,
        name: &str,
        timeout: Duration,
    ) -> io::Result<Arc<Self>> {
        channel.set_write_timeout(Some(timeout))?;
        let reader = channel.try_clone()?;
        let link = Arc::new(Self {
            writer: Mutex::new(channel),
            pending: Mutex::new(Pending::default()),
            name: name.to_owned(),
        });
        let answers = Arc::clone(&link);
        thread::Builder::new()
            .name("dropin-async".to_owned())
            .spawn(move || answers.read(reader))?;
        Ok(link)
    }

    /// Reads answers until the process closes its end, then fails the calls
    /// still waiting.
    fn read(&self, reader: sys::Channel) {
        let mut input = &reader;
        let why = loop {
            let frame = match read_frame(&mut input, MAX_FRAME) {
                Ok(Some(frame)) => frame,
                Ok(None) => break "its process ended during the call".to_owned(),
                Err(error) => break format!("its process's channel failed: {error}"),
            };
            let Ok(Answered { id, outcome }) = message::<Answered>(&frame) else {
                break "its process sent an answer that does not decode".to_owned();
            };
            let answer = dropin::abi::decode_outcome(&self.name, &outcome).map(<[u8]>::to_vec);
            let mut pending = self.lock();
            // A call cancelled meanwhile is no longer waited for.
            if let Some(slot) = pending.slots.get_mut(&id) {
                slot.answer = Some(answer);
                if let Some(waker) = slot.waker.take() {
                    drop(pending);
                    waker.wake();
                }
            }
        };
        self.close(why);
    }

    /// Fails every call still waiting, and every later one, with `why`.
    fn close(&self, why: String) {
        let mut pending = self.lock();
        let mut wakers = Vec::new();
        for slot in pending.slots.values_mut() {
            if slot.answer.is_none() {
                slot.answer = Some(Err(crashed(&self.name, &why)));
                wakers.extend(slot.waker.take());
            }
        }
        pending.closed.get_or_insert(why);
        drop(pending);
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether no call can be answered any more.
    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Starts the call of method `method` with `args`; its answer.
    pub(super) fn call(self: &Arc<Self>, method: usize, args: Vec<u8>) -> Answer {
        self.send_call(|id| Call::Start {
            id,
            method: u32::try_from(method).unwrap_or(u32::MAX),
            args,
        })
    }

    /// Starts the call of method `method` of the object number `object`.
    pub(super) fn call_object(
        self: &Arc<Self>,
        object: u64,
        method: usize,
        args: Vec<u8>,
    ) -> Answer {
        self.send_call(|id| Call::Object {
            id,
            object,
            method: u32::try_from(method).unwrap_or(u32::MAX),
            args,
        })
    }

    /// Sends the call `call` makes of its number; its answer.
    fn send_call(self: &Arc<Self>, call: impl FnOnce(u64) -> Call) -> Answer {
        let id = {
            let mut pending = self.lock();
            if let Some(why) = &pending.closed {
                return failed(crashed(&self.name, why));
            }
            let id = pending.next;
            pending.next += 1;
            pending.slots.insert(id, Slot::default());
            id
        };
        if let Err(error) = self.send(&call(id)) {
            self.close(format!("its process did not read the call: {error}"));
        }
        Box::pin(Waiting {
            link: Arc::clone(self),
            id,
            finished: false,
        })
    }

    fn send(&self, call: &Call) -> io::Result<()> {
        let mut frame = Vec::new();
        call.encode(&mut frame);
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let result = write_frame(&mut &*writer, &frame);
        if result.is_err() {
            // Part of a frame may have gone: nothing more can be said.
            let _ = writer.shutdown(std::net::Shutdown::Both);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An `async fn` call's answer, as the handle awaits it.
pub(super) type Answer = Pin<Box<dyn Future<Output = Result<Vec<u8>, CallError>> + Send>>;

/// An answer that is already known.
pub(super) fn failed(error: CallError) -> Answer {
    Box::pin(std::future::ready(Err(error)))
}

fn crashed(name: &str, why: &str) -> CallError {
    CallError::from_parts(CallErrorKind::Crashed, name, why.to_owned(), None)
}

/// A call waiting for its answer.
struct Waiting {
    link: Arc<Link>,
    id: u64,
    finished: bool,
}

impl Future for Waiting {
    type Output = Result<Vec<u8>, CallError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut pending = self.link.lock();
        let Some(slot) = pending.slots.get_mut(&self.id) else {
            return Poll::Ready(Err(crashed(&self.link.name, "its call was lost")));
        };
        match slot.answer.take() {
            Some(answer) => {
                pending.slots.remove(&self.id);
                drop(pending);
                self.finished = true;
                Poll::Ready(answer)
            }
            None => {
                // The waker it replaces is dropped once the lock is let
                // go: its drop may drop another call of this link.
                let replaced = slot.waker.replace(context.waker().clone());
                drop(pending);
                drop(replaced);
                Poll::Pending
            }
        }
    }
}

impl Drop for Waiting {
    /// A call dropped before its answer is cancelled in the process.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let waited = self.link.lock().slots.remove(&self.id);
        let answered = waited.is_some_and(|slot| slot.answer.is_some());
        if !answered && !self.link.is_closed() {
            let _ = self.link.send(&Call::Cancel { id: self.id });
        }
    }
}

// --- The process's side ----------------------------------------------------

/// Serves the `async fn` calls that arrive on `channel`, each on a thread
/// of its own, until the host closes it.
pub(super) fn serve<I: Interface>(channel: sys::Channel, plugin: &'static crate::load::Plugin<I>) {
    let writer = match channel.try_clone() {
        Ok(writer) => Arc::new(Mutex::new(writer)),
        Err(error) => {
            log::warn!(target: LOG_TARGET, "cannot serve async calls: {error}");
            return;
        }
    };
    let running: Arc<Mutex<HashMap<u64, Running>>> = Arc::default();
    let spawned = thread::Builder::new()
        .name("dropin-async".to_owned())
        .spawn(move || {
            let mut input = &channel;
            while let Ok(Some(frame)) = read_frame(&mut input, MAX_FRAME) {
                match message::<Call>(&frame) {
                    Ok(Call::Start { id, method, args }) => {
                        start(plugin, id, Target::Plugin(method), args, &running, &writer);
                    }
                    Ok(Call::Object {
                        id,
                        object,
                        method,
                        args,
                    }) => {
                        let target = Target::Object(object, method);
                        start(plugin, id, target, args, &running, &writer);
                    }
                    Ok(Call::Cancel { id }) => {
                        let running = running.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(call) = running.get(&id) {
                            call.cancelled.store(true, Ordering::SeqCst);
                            if let Some(thread) = &call.thread {
                                thread.unpark();
                            }
                        }
                    }
                    Err(_) => break,
                }
            }
        });
    if let Err(error) = spawned {
        log::warn!(target: LOG_TARGET, "cannot serve async calls: {error}");
    }
}

/// A call being served: whether it was cancelled, and its thread.
struct Running {
    cancelled: Arc<AtomicBool>,
    thread: Option<thread::Thread>,
}

/// What a call calls: a method of the plugin, or of an object it keeps.
#[derive(Clone, Copy)]
enum Target {
    Plugin(u32),
    Object(u64, u32),
}

fn start<I: Interface>(
    plugin: &'static crate::load::Plugin<I>,
    id: u64,
    target: Target,
    args: Vec<u8>,
    running: &Arc<Mutex<HashMap<u64, Running>>>,
    writer: &Arc<Mutex<sys::Channel>>,
) {
    let cancelled = Arc::new(AtomicBool::new(false));
    running.lock().unwrap_or_else(|e| e.into_inner()).insert(
        id,
        Running {
            cancelled: Arc::clone(&cancelled),
            thread: None,
        },
    );
    let (calls, answers) = (Arc::clone(running), Arc::clone(writer));
    let flag = Arc::clone(&cancelled);
    let spawned = thread::Builder::new()
        .name("dropin-call".to_owned())
        .spawn(move || {
            let mut out = Vec::new();
            // A panic outside the plugin's guards still answers the call.
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                dropin::__private::cancellable(flag, || match target {
                    Target::Plugin(method) => {
                        plugin.handle().serve(method as usize, &args, &mut out)
                    }
                    Target::Object(object, method) => {
                        dropin::__private::serve_object(object, method as usize, &args, &mut out)
                    }
                })
            }))
            .unwrap_or_else(|_| {
                Err(dropin::wire::WireError(
                    "serving it panicked in the process".to_owned(),
                ))
            });
            calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            if cancelled.load(Ordering::SeqCst) {
                return;
            }
            match served {
                Ok(()) => answer(&answers, id, out),
                Err(error) => answer_failed(
                    &answers,
                    id,
                    plugin.name(),
                    format!("its process could not read the call: {error}"),
                ),
            }
        });
    match spawned {
        Ok(handle) => {
            if let Some(call) = running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&id)
            {
                call.thread = Some(handle.thread().clone());
                // Cancelled before its thread was known: woken now.
                if call.cancelled.load(Ordering::SeqCst) {
                    handle.thread().unpark();
                }
            }
        }
        Err(error) => {
            // Answered at once: the call must not wait for ever.
            running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            answer_failed(
                writer,
                id,
                plugin.name(),
                format!("its process cannot start a thread for the call: {error}"),
            );
        }
    }
}

/// Answers the call number `id` with `outcome`, as `encode_outcome` wrote it.
fn answer(writer: &Mutex<sys::Channel>, id: u64, outcome: Vec<u8>) {
    let mut frame = Vec::new();
    Answered { id, outcome }.encode(&mut frame);
    let writer = writer.lock().unwrap_or_else(|e| e.into_inner());
    let _ = write_frame(&mut &*writer, &frame);
}

/// Answers the call number `id` of the plugin `name` with a failure that
/// says `why`.
fn answer_failed(writer: &Mutex<sys::Channel>, id: u64, name: &str, why: String) {
    let mut outcome = Vec::new();
    dropin::abi::encode_outcome::<()>(
        &Err(CallError::from_parts(
            CallErrorKind::Failed,
            name,
            why,
            None,
        )),
        &mut outcome,
    );
    answer(writer, id, outcome);
}
