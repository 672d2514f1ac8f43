//! An isolated plugin as its handle's `Remote`: a call is a request handed
//! to its process through a slot of their shared memory and an answer
//! handed back, within the call's deadline, several calls at once; a
//! crash, a timeout or a broken protocol fails the call and, if asked,
//! starts the process again.

use std::{
    process::{Child, ChildStdin, ChildStdout, ExitStatus},
    sync::{
        Arc, Mutex, OnceLock, RwLock, TryLockError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use dropin::{CallError, CallErrorKind, abi::Remote, wire::Encode};

use super::*;

/// An isolated plugin's process, as its handle's [`Remote`].
pub(super) struct Isolated {
    /// Held, shared, by each call in flight, and alone by what ends the
    /// process (a newer generation, a disabled plugin), which so waits for
    /// the calls to return.
    pub(super) gate: RwLock<()>,
    /// Held briefly: by a call to learn which process to call (and to
    /// start it again), and to record how that process ended.
    pub(super) state: Mutex<State>,
    /// The channel of `async fn` calls to the process now running, apart
    /// from `state`: an async call never waits for a call being served.
    pub(super) link: Mutex<Option<Arc<calls::Link>>>,
    /// Set when a newer generation replaced this one: where calls go from
    /// then on (nowhere, if the newer generation runs in the host).
    pub(super) successor: OnceLock<Option<Arc<dyn Remote>>>,
    /// Set when the plugin is disabled: its process ends as soon as no
    /// call holds it.
    pub(super) ending: AtomicBool,
    /// Why the plugin failed for good: its process ended and its recovery
    /// starts no other.
    pub(super) failure: OnceLock<String>,
    pub(super) timeout: Duration,
    pub(super) recovery: Recovery,
    pub(super) name: String,
    pub(super) spawner: Spawner,
}

pub(super) struct State {
    pub(super) process: Process,
    /// Each log its process's standard error until it closes.
    pub(super) forwarders: Vec<thread::JoinHandle<()>>,
    pub(super) restarts: u32,
    pub(super) failed_at: Option<Instant>,
    /// A newer generation replaced this one and its process ended.
    pub(super) retired: bool,
}

pub(super) struct Process {
    /// Tells this process from the plugin's others (never 0).
    pub(super) number: u64,
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    /// The memory shared with it for calls.
    pub(super) calls: Arc<slots::Calls>,
    /// How the process ended, once it did.
    pub(super) ended: Option<(CallErrorKind, String)>,
    /// Its channel of `async fn` calls.
    pub(super) link: Option<Arc<calls::Link>>,
}

impl Process {
    /// Records how the process ended, if it exited on its own and nothing
    /// recorded it yet: how, then. Never waits.
    fn exited(&mut self) -> Option<String> {
        if self.ended.is_some() {
            return None;
        }
        let how = describe(self.child.try_wait().ok()??);
        self.ended = Some((CallErrorKind::Crashed, how.clone()));
        Some(how)
    }

    /// Kills and reaps the process (if it still runs), and records how it
    /// ended.
    fn end(&mut self, kind: CallErrorKind, how: String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.ended = Some((kind, how));
    }
}

impl Drop for Process {
    /// A process no longer used is killed and reaped, whatever state it is
    /// in: no process outlives its handle, and none is left a zombie.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends the setup to `process` and waits for the answer on `stdout`, by
/// `deadline`, `timeout` after the process started; how the process
/// ended, if it did instead of answering (which `process` then records).
pub(super) fn setup_round_trip(
    process: &mut Process,
    stdout: &mut ChildStdout,
    frame: &[u8],
    (deadline, timeout): (Instant, Duration),
) -> Result<Vec<u8>, Ended> {
    let answer = write_frame_until(&mut process.stdin, frame, deadline)
        .and_then(|()| read_frame_until(stdout, MAX_FRAME, deadline));
    let (kind, how) = match answer {
        Ok(Some(bytes)) => return Ok(bytes),
        Ok(None) | Err(Wait::Failed) => {
            (CallErrorKind::Crashed, ended(&mut process.child, deadline))
        }
        Err(Wait::Broken(why)) => (
            CallErrorKind::Crashed,
            format!("broke the protocol of its start ({why}) and was killed"),
        ),
        Err(Wait::TimedOut) => (
            CallErrorKind::TimedOut,
            format!("did not start its plugin within {timeout:?} and was killed"),
        ),
    };
    process.end(kind, how.clone());
    Err(Ended {
        kind,
        how,
        release: None,
    })
}

/// A call's hold on its plugin's process (the gate, shared): whatever way
/// the call returns, letting go ends the process if the plugin was
/// disabled meanwhile.
struct InFlight<'a> {
    isolated: &'a Isolated,
    gate: Option<std::sync::RwLockReadGuard<'a, ()>>,
}

impl<'a> InFlight<'a> {
    fn new(isolated: &'a Isolated, gate: std::sync::RwLockReadGuard<'a, ()>) -> Self {
        Self {
            isolated,
            gate: Some(gate),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        drop(self.gate.take());
        self.isolated.end_if_disabled();
    }
}

impl Isolated {
    /// The state, waited for, except on the thread that serves the
    /// process's calls to the host: a thread that holds the state may be
    /// waiting for the process, which may be waiting for that thread. There
    /// `None` if another thread holds it.
    fn lock_state(&self) -> Option<std::sync::MutexGuard<'_, State>> {
        if SERVING.with(std::cell::Cell::get) != self.spawner.id {
            return Some(self.state.lock().unwrap_or_else(|e| e.into_inner()));
        }
        match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Sends one call and waits for the answer, after restarting the
    /// process if it ended earlier and the recovery allows it; `None` if a
    /// newer generation replaced this one.
    fn exchange(&self, frame: &[u8], given: &[u64]) -> Option<Result<Vec<u8>, Ended>> {
        let _in_flight = InFlight::new(self, self.gate.read().unwrap_or_else(|e| e.into_inner()));
        let calls = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.retired {
                return None;
            }
            // Disabled while this call waited for the process: never served
            // (letting go ends the process).
            if self.ending.load(Ordering::SeqCst) {
                return None;
            }
            if let Some((kind, how)) = state.process.ended.clone()
                && let Err(why) = self.restart(&mut state)
            {
                let how = format!("ended earlier ({how}){why}");
                self.settle(&state, &how);
                return Some(Err(Ended {
                    kind: earlier(kind),
                    how,
                    release: None,
                }));
            }
            // The objects this call gives go to this process.
            self.spawner.callbacks.sent(given, state.process.number);
            Arc::clone(&state.process.calls)
        };
        Some(self.send(&calls, frame))
    }

    /// Sends `frame` to the process `calls` reaches and waits for the
    /// answer; how the process failed the call, which ends it.
    fn send(&self, calls: &Arc<slots::Calls>, frame: &[u8]) -> Result<Vec<u8>, Ended> {
        let deadline = crate::child::deadline_in(self.timeout);
        let failure = match calls.round_trip(frame, deadline) {
            Ok(answer) => return Ok(answer),
            Err(failure) => failure,
        };
        if let slots::Failure::Busy = failure {
            return Err(Ended {
                kind: CallErrorKind::Failed,
                how: format!(
                    "had {} calls in flight for the call's whole timeout ({:?})",
                    slots::SLOTS,
                    self.timeout
                ),
                release: None,
            });
        }
        // Not the state if this is the thread that serves the process's
        // calls to the host while another holds it (how the process ended
        // is recorded there), nor if another call saw it end and started
        // another.
        let state = self
            .lock_state()
            .filter(|state| Arc::ptr_eq(&state.process.calls, calls));
        let Some(mut state) = state else {
            return Err(Ended {
                kind: CallErrorKind::Crashed,
                how: "ended while the call waited".to_owned(),
                release: None,
            });
        };
        // Another call may have seen how it ended first. If that call timed
        // out and this one did not, this one was in flight when the process
        // was killed for the other.
        if let Some((kind, how)) = state.process.ended.clone() {
            return Err(match kind {
                CallErrorKind::TimedOut if !matches!(failure, slots::Failure::TimedOut) => Ended {
                    kind: CallErrorKind::Crashed,
                    how: format!(
                        "was killed: another call did not answer within {:?}",
                        self.timeout
                    ),
                    release: None,
                },
                _ => Ended {
                    kind,
                    how,
                    release: None,
                },
            });
        }
        let (kind, how) = match failure {
            slots::Failure::Ended => (
                CallErrorKind::Crashed,
                ended(&mut state.process.child, deadline),
            ),
            slots::Failure::TimedOut => (
                CallErrorKind::TimedOut,
                format!("did not answer within {:?} and was killed", self.timeout),
            ),
            slots::Failure::Broken(why) => (
                CallErrorKind::Crashed,
                format!("broke the protocol of calls ({why}) and was killed"),
            ),
            slots::Failure::Busy => unreachable!("answered above"),
        };
        state.process.end(kind, how.clone());
        state.failed_at = Some(Instant::now());
        self.settle(&state, &how);
        Err(Ended {
            kind,
            how,
            release: Some(state.process.number),
        })
    }

    /// Ends the process if the plugin was disabled and no call holds it.
    /// Whatever holds the gate does the same once it lets go, so the last
    /// one out ends it.
    fn end_if_disabled(&self) {
        // Orders the unlock before the load, as `end` orders its store
        // before its attempt to lock.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.ending.load(Ordering::SeqCst) {
            return;
        }
        let gate = match self.gate.try_write() {
            Ok(gate) => gate,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        // The thread that holds the state ends the process when it lets
        // go, if it is a call's; `relink` does the same.
        let Some(mut state) = self.lock_state() else {
            return;
        };
        if !state.retired {
            self.stop(&mut state, "was disabled");
            drop((state, gate));
            self.spawner.callbacks.release_given(None);
        }
    }

    /// The objects this thread kept for this plugin to give with the call
    /// it is sending.
    fn take_given(&self) -> Vec<u64> {
        GIVEN.with(|given| {
            let mut given = given.borrow_mut();
            let (ours, others) = given
                .drain(..)
                .partition(|(spawner, _)| *spawner == self.spawner.id);
            *given = others;
            ours.into_iter().map(|(_, id)| id).collect::<Vec<u64>>()
        })
    }

    /// Records how the process ended if it did between calls (no call saw
    /// it): then the plugin may have failed for good. Never waits: not for
    /// the state, which a call may hold, nor for the process.
    fn notice_end(&self) {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if !state.process.calls.has_ended() {
            return;
        }
        if let Some(how) = state.process.exited() {
            state.failed_at = Some(Instant::now());
            self.settle(&state, &how);
            let process = state.process.number;
            drop(state);
            self.spawner.callbacks.release_given(Some(process));
        }
    }

    /// Records why the plugin failed for good if its process, which ended
    /// as `how` says, is not to be started again; not if the plugin was
    /// disabled or replaced first (that reason, or the newer generation's,
    /// counts).
    fn settle(&self, state: &State, how: &str) {
        if state.retired || self.ending.load(Ordering::SeqCst) || self.successor.get().is_some() {
            return;
        }
        let restarts_left = match self.recovery {
            Recovery::Disable => false,
            Recovery::Restart { attempts, .. } => state.restarts < attempts,
        };
        if !restarts_left {
            let _ = self.failure.set(format!("its process {how}"));
        }
    }

    /// Starts a new process in place of the one that ended; why not, as
    /// the end of a sentence, if it does not.
    fn restart(&self, state: &mut State) -> Result<(), String> {
        let Recovery::Restart { attempts, backoff } = self.recovery else {
            return Err(String::new());
        };
        if state.restarts >= attempts {
            return Err(format!("; not restarted: {attempts} restarts already"));
        }
        // Never longer than a call may take.
        let wait = backoff
            .saturating_mul(1 << state.restarts.min(16))
            .min(self.timeout);
        if let Some(failed_at) = state.failed_at {
            thread::sleep(wait.saturating_sub(failed_at.elapsed()));
        }
        state.restarts += 1;
        let (process, forwarder, ready) = self.spawner.spawn().map_err(|kind| match kind {
            crate::LoadErrorKind::Isolated { reason } => {
                format!("; restarting it failed: {reason}")
            }
            kind => format!("; restarting it failed: {kind}"),
        })?;
        state.forwarders.push(forwarder);
        state.process = process;
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = state.process.link.clone();
        if ready.name != self.name {
            state.process.ended = Some((
                CallErrorKind::Crashed,
                format!("was restarted as '{}'", ready.name),
            ));
            return Err(format!("; restarted, it named itself '{}'", ready.name));
        }
        log::warn!(
            target: &dropin::log_target(&self.name),
            "its process was restarted ({} of {attempts})",
            state.restarts
        );
        Ok(())
    }
}

/// The kind of error of a call made after its process ended as `kind`
/// says: a call that timed out killed the process, and a later call did
/// not wait; it fails as after a crash.
fn earlier(kind: CallErrorKind) -> CallErrorKind {
    match kind {
        CallErrorKind::TimedOut => CallErrorKind::Crashed,
        kind => kind,
    }
}

/// How an isolated process failed a call.
pub(super) struct Ended {
    pub(super) kind: CallErrorKind,
    pub(super) how: String,
    /// The number of the process whose end this call recorded: what it was
    /// given goes, once the call lets go of the plugin.
    pub(super) release: Option<u64>,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.how)
    }
}

impl Isolated {
    /// Sends one request and returns the plugin's encoded outcome; `None`
    /// if a newer generation replaced this one.
    fn request(&self, request: &Request) -> Option<Result<Vec<u8>, CallError>> {
        // Taken whatever way the call returns: a call that is never sent
        // releases what it gives itself, if it fails.
        let given = self.take_given();
        if SERVING.with(std::cell::Cell::get) == self.spawner.id {
            // This thread serves the plugin's service calls: the plugin may
            // be waiting for it right now, and would never answer.
            return Some(Err(CallError::from_parts(
                CallErrorKind::Failed,
                &self.name,
                "refused: the host's service that serves this plugin called it back; the \
                 plugin may be waiting for that very service"
                    .to_owned(),
                None,
            )));
        }
        let mut frame = Vec::new();
        request.encode(&mut frame);
        let answer = self
            .exchange(&frame, &given)?
            .map_err(|ended| self.ended(ended));
        Some(answer.and_then(|answer| {
            dropin::abi::decode_outcome(&self.name, &answer).map(<[u8]>::to_vec)
        }))
    }

    /// How the process failed a request, as the call's error; what the
    /// application gave that process goes with it, if this call saw it
    /// end. Called once the call no longer holds the gate nor the state:
    /// dropping the objects runs the application's code, which may call
    /// the plugin.
    fn ended(&self, ended: Ended) -> CallError {
        if let Some(process) = ended.release {
            self.spawner.callbacks.release_given(Some(process));
        }
        CallError::from_parts(
            ended.kind,
            &self.name,
            format!("its process {}", ended.how),
            None,
        )
    }

    /// Sends `request` to this generation's process only: once a newer
    /// generation replaced it, the request fails with `replaced` (or the
    /// error of a plugin without a successor).
    fn request_here(&self, request: &Request, replaced: &str) -> Result<Vec<u8>, CallError> {
        self.request(request).unwrap_or_else(|| {
            self.successor()?;
            Err(CallError::from_parts(
                CallErrorKind::Failed,
                &self.name,
                replaced.to_owned(),
                None,
            ))
        })
    }

    /// The newer generation that replaced this one, or the error a call
    /// gets when there is none.
    fn successor(&self) -> Result<&Arc<dyn Remote>, CallError> {
        match self.successor.get() {
            Some(Some(successor)) => Ok(successor),
            _ if self.ending.load(Ordering::SeqCst) => Err(CallError::from_parts(
                CallErrorKind::Disabled,
                &self.name,
                "its process ended: the plugin was disabled".to_owned(),
                None,
            )),
            _ => Err(CallError::from_parts(
                CallErrorKind::Failed,
                &self.name,
                "its process ended: a newer generation replaced it in the host; call the \
                 plugin through the registry again"
                    .to_owned(),
                None,
            )),
        }
    }
}

impl Remote for Isolated {
    fn call(&self, method: usize, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let request = Request::Call {
            method: u32::try_from(method).unwrap_or(u32::MAX),
            args,
        };
        match self.request(&request) {
            Some(outcome) => outcome,
            None => {
                let Request::Call { args, .. } = request else {
                    unreachable!("built as a call above")
                };
                self.successor()?.call(method, args)
            }
        }
    }

    fn call_object(&self, object: u64, method: usize, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let request = Request::Object {
            id: object,
            method: u32::try_from(method).unwrap_or(u32::MAX),
            args,
        };
        // Objects stay in the process that made them.
        self.request_here(
            &request,
            "the object's process ended: a newer generation replaced it; open the object again",
        )
    }

    fn drop_object(&self, object: u64) -> Result<(), CallError> {
        let gate = if SERVING.with(std::cell::Cell::get) == self.spawner.id {
            // The thread that serves the process's calls to the host (an
            // application's callback dropped a handle): a call in flight
            // may wait for this thread, and what waits to end the process
            // waits for that call. Then the object is left to its process,
            // which is ending and drops it as it ends.
            match self.gate.try_read() {
                Ok(gate) => gate,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    log::debug!(
                        target: &dropin::log_target(&self.name),
                        "object {object} left to its process: dropped while the process ends"
                    );
                    return Ok(());
                }
            }
        } else {
            self.gate.read().unwrap_or_else(|e| e.into_inner())
        };
        let _in_flight = InFlight::new(self, gate);
        let calls = {
            let Some(state) = self.lock_state() else {
                log::debug!(
                    target: &dropin::log_target(&self.name),
                    "object {object} left to its process: dropped while the process starts"
                );
                return Ok(());
            };
            // The process ended, or was replaced: the object went with it.
            // Never restarted for a drop.
            if state.retired || state.process.ended.is_some() || self.ending.load(Ordering::SeqCst)
            {
                return Ok(());
            }
            Arc::clone(&state.process.calls)
        };
        let mut frame = Vec::new();
        Request::DropObject { id: object }.encode(&mut frame);
        let answer = self.send(&calls, &frame);
        drop(_in_flight);
        let answer = answer.map_err(|ended| self.ended(ended))?;
        dropin::abi::decode_outcome(&self.name, &answer).map(|_| ())
    }

    fn call_here(&self, method: usize, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let request = Request::Call {
            method: u32::try_from(method).unwrap_or(u32::MAX),
            args,
        };
        // What a newer generation would return lives in its process.
        self.request_here(
            &request,
            "its process ended: a newer generation replaced it; call the plugin through the \
             registry again",
        )
    }

    fn save_state(&self) -> Result<Option<(u32, Vec<u8>)>, CallError> {
        let Some(outcome) = self.request(&Request::Save) else {
            return self.successor()?.save_state();
        };
        let saved = message::<Option<Saved>>(&outcome?).map_err(|_| {
            CallError::from_parts(
                CallErrorKind::Failed,
                &self.name,
                "its process sent a saved state that does not decode".to_owned(),
                None,
            )
        })?;
        Ok(saved.map(|Saved { version, bytes }| (version, bytes)))
    }

    fn retire(&self, successor: Option<Arc<dyn Remote>>) {
        let _ = self.successor.set(successor);
        // Waits for the calls in flight, if any.
        let gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.stop(&mut state, "was replaced by a newer generation");
        drop((state, gate));
        self.spawner.callbacks.release_given(None);
    }

    fn end(&self) {
        // No successor: later calls fail.
        let _ = self.successor.set(None);
        // Never waits for a call being served: the plugin may be disabled
        // by a service it is calling, which that call waits for.
        self.ending.store(true, Ordering::SeqCst);
        self.end_if_disabled();
    }

    fn call_async(&self, method: usize, args: Vec<u8>) -> dropin::__private::RemoteAnswer<Vec<u8>> {
        match self.successor.get() {
            Some(Some(successor)) => return successor.call_async(method, args),
            Some(None) => {
                return calls::failed(self.successor().err().expect("no successor is an error"));
            }
            None => {}
        }
        let link = self.link.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match link {
            Some(link) if !link.is_closed() => link.call(method, args),
            _ => {
                let relinked = self.relink();
                // Disabled while it restarted the process: ended now.
                self.end_if_disabled();
                match relinked {
                    Ok(link) => link.call(method, args),
                    Err(error) => calls::failed(error),
                }
            }
        }
    }

    fn call_object_async(
        &self,
        object: u64,
        method: usize,
        args: Vec<u8>,
    ) -> dropin::__private::RemoteAnswer<Vec<u8>> {
        // Objects stay in the process that made them: a call of a retired
        // generation's fails, as `call_object`'s does.
        if self.successor.get().is_some() {
            return calls::failed(CallError::from_parts(
                CallErrorKind::Failed,
                &self.name,
                "the object's process ended: a newer generation replaced it; open the object \
                 again"
                    .to_owned(),
                None,
            ));
        }
        let link = self.link.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match link {
            Some(link) if !link.is_closed() => link.call_object(object, method, args),
            _ => calls::failed(CallError::from_parts(
                CallErrorKind::Crashed,
                &self.name,
                "the object's process ended".to_owned(),
                None,
            )),
        }
    }

    fn keep_callback(&self, served: dropin::__private::Served) -> u64 {
        let lent = served.is_lent();
        let id = self.spawner.callbacks.keep(served);
        if !lent {
            // The call about to be sent from this thread gives it: which
            // process gets it is known when the call is sent.
            GIVEN.with(|given| given.borrow_mut().push((self.spawner.id, id)));
        }
        id
    }

    fn release_callback(&self, id: u64) {
        self.spawner.callbacks.release(id);
    }

    fn failure(&self) -> Option<&str> {
        match self.successor.get() {
            // Calls go there now.
            Some(Some(successor)) => successor.failure(),
            // Disabled, or replaced in the host: what failed before stands.
            Some(None) => self.failure.get().map(String::as_str),
            None => {
                if self.failure.get().is_none() {
                    self.notice_end();
                }
                self.failure.get().map(String::as_str)
            }
        }
    }

    fn process_id(&self) -> Option<u32> {
        let state = self.lock_state()?;
        let id = state
            .process
            .ended
            .is_none()
            .then(|| state.process.child.id());
        drop(state);
        id
    }
}

impl Isolated {
    /// The channel of `async fn` calls once the one in use closed: the
    /// process ended, and is restarted as a call would restart it.
    fn relink(&self) -> Result<Arc<calls::Link>, CallError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.retired || self.ending.load(Ordering::SeqCst) {
            drop(state);
            return Err(self.successor().err().unwrap_or_else(|| {
                CallError::from_parts(
                    CallErrorKind::Failed,
                    &self.name,
                    "its process ended: a newer generation replaced it".to_owned(),
                    None,
                )
            }));
        }
        let ended_now = state.process.exited().map(|_| state.process.number);
        let link = 'link: {
            if let Some((kind, how)) = state.process.ended.clone()
                && let Err(why) = self.restart(&mut state)
            {
                let how = format!("ended earlier ({how}){why}");
                self.settle(&state, &how);
                break 'link Err(CallError::from_parts(
                    earlier(kind),
                    &self.name,
                    format!("its process {how}"),
                    None,
                ));
            }
            match &state.process.link {
                Some(link) if !link.is_closed() => Ok(Arc::clone(link)),
                _ => Err(CallError::from_parts(
                    CallErrorKind::Crashed,
                    &self.name,
                    "its process closed its channel of async calls".to_owned(),
                    None,
                )),
            }
        };
        drop(state);
        // As a call that sees the process end: what it was given goes.
        if let Some(process) = ended_now {
            self.spawner.callbacks.release_given(Some(process));
        }
        link
    }

    /// Ends the process, and every process it started, for good: `why`
    /// says why later calls fail. The caller then releases the
    /// application's objects the process held, once it no longer holds the
    /// lock (their drop is the application's code, which may call the
    /// plugin).
    fn stop(&self, state: &mut State, why: &str) {
        let name = &self.name;
        state.retired = true;
        state.process.end(CallErrorKind::Failed, why.to_owned());
        log::debug!(target: &dropin::log_target(name), "its process ended: it {why}");
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = state.process.child.kill();
        let _ = state.process.child.wait();
        // What the processes wrote before they ended is still in the pipes:
        // log all of it before the handle goes. (A grandchild that kept a
        // pipe open would keep it open for ever: then the rest is left to
        // the thread, after a second.)
        let deadline = Instant::now() + Duration::from_secs(1);
        for forwarder in state.forwarders.drain(..) {
            while !forwarder.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if forwarder.is_finished() {
                let _ = forwarder.join();
            }
        }
    }
}

/// How a process that closed its pipe to the host ended. An ending
/// process closes its pipes as it ends, so its status is waited for only
/// a moment: until `by`, but at least [`ENDING_GRACE`] and at most
/// [`ENDING_WAIT`]. One still running then is killed, and said to have
/// closed its pipe without ending.
pub(super) fn ended(child: &mut Child, by: Instant) -> String {
    let started = Instant::now();
    let by = by.clamp(started + ENDING_GRACE, started + ENDING_WAIT);
    match crate::child::exit_by(child, by) {
        Ok(Some(status)) => return describe(status),
        Ok(None) => {}
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return "ended".to_owned();
        }
    }
    let _ = child.kill();
    match child.wait() {
        // It ended on its own after all, between the last look and the kill
        // (which, on Unix, ends it by `SIGKILL`).
        Ok(status) if crate::sys::target::UNIX && crate::sys::signal_of(status) != Some(9) => {
            describe(status)
        }
        _ => format!(
            "closed its pipe to the host but had not ended {:?} later, and was killed",
            Duration::from_millis(by.duration_since(started).as_millis() as u64)
        ),
    }
}

/// The least time [`ended`] waits for a process that closed its pipe to
/// end. On Linux the host's child ends after the plugin's process and its
/// two waiting processes, a few steps of the scheduler each.
const ENDING_GRACE: Duration = Duration::from_millis(200);

/// The most time [`ended`] waits, whatever time its call has left: it holds
/// the plugin's state meanwhile.
const ENDING_WAIT: Duration = Duration::from_secs(1);

pub(super) fn describe(status: ExitStatus) -> String {
    // In the probe's words, without its standard error (which is logged).
    crate::ended::ProbeFailure::from_status(status, String::new()).to_string()
}
