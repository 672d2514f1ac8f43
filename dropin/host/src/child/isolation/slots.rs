//! Calls to an isolated plugin's process through memory the host shares
//! with it: a slot per call in flight, so that calls from several threads
//! proceed at once, and a handover that never passes through the scheduler
//! while both sides are busy.
//!
//! A slot is a head of atomic words and a buffer. Its `turn` says whose the
//! buffer is: the host's while even, the process's while odd; each side
//! hands it over by adding one. A request goes in chunks of at most the
//! buffer's size, each handed to the process, which hands the buffer back
//! empty to ask for the next; the answer comes back the same way. Each side
//! waits for its turn by spinning for a while ([`HOST_SPIN`],
//! [`CHILD_SPIN`]), then by sleeping on the `turn` word; a side that hands
//! the buffer over wakes the other only if it said it sleeps. A process
//! waiting for calls uses no processor once its spin is over.
//!
//! Nothing the process writes there is taken as a fact: the host keeps its
//! own count of the turn and the slots in use, bounds every length it reads
//! by the buffer and the largest answer, copies the bytes out before it
//! decodes them, and waits until the call's deadline at most. A turn the
//! host did not expect, or a length past the buffer, fails the call, and the
//! process is killed: what a process writes into its memory fails its own
//! calls and nothing else. The memory's size is sealed: the process cannot
//! shrink it under the host. Whether the process still lives is the host's
//! own knowledge: it ended when the pipe only it held closed (and a process
//! that writes on that pipe after its setup broke the protocol).

use std::{
    io::Write,
    sync::{
        Condvar, Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::sys::{self, SharedMemory};

use super::MAX_FRAME;

/// How many calls may be in flight to one process at once.
pub(super) const SLOTS: usize = 8;

/// The bytes of one slot: its head, then its buffer.
pub(super) const STRIDE: usize = 64 << 10;

/// The bytes of a slot's head.
const HEAD: usize = 64;

/// The bytes one handover carries.
const CAPACITY: usize = STRIDE - HEAD;

/// How long the host spins for an answer before it sleeps.
const HOST_SPIN: Duration = Duration::from_micros(50);

/// How long the process spins for the next call before it sleeps.
const CHILD_SPIN: Duration = Duration::from_micros(100);

/// The longest sleep of the host between two looks at its deadline and at
/// whether the process ended (a wake-up can be missed in between).
const HOST_NAP: Duration = Duration::from_millis(50);

/// How many times in a row the host may be woken within [`HOST_POLL`]
/// without the turn handed back before it stops sleeping on the turn and
/// polls it instead: a process wakes the host only as it hands the turn
/// back, so one that wakes it again and again means to keep it busy.
const SPURIOUS_WAKES: u32 = 32;

/// How often the host looks at a turn it polls.
const HOST_POLL: Duration = Duration::from_millis(1);

/// A slot's head, at the start of its stride in the shared memory.
#[repr(C)]
struct Head {
    /// Whose the buffer is: the host's while even, the process's while odd.
    turn: AtomicU32,
    /// Set while the host sleeps (or is about to) on `turn`.
    host_asleep: AtomicU32,
    /// Set while the process sleeps (or is about to) on `turn`.
    child_asleep: AtomicU32,
    /// The bytes in the buffer.
    len: AtomicU32,
    /// Whether more chunks of the same message follow.
    more: AtomicU32,
}

/// One slot of a mapping: its head and its buffer.
#[derive(Clone, Copy)]
struct Slot<'a> {
    head: &'a Head,
    data: *mut u8,
}

/// The slot `index` of `memory`, which holds `SLOTS` slots.
fn slot(memory: &SharedMemory, index: usize) -> Slot<'_> {
    assert!(index < SLOTS && memory.len() >= SLOTS * STRIDE);
    // SAFETY: within the mapping (checked above), which is page-aligned, so
    // the head is aligned; the head is atomics only, which any bytes are.
    let at = unsafe { memory.as_ptr().add(index * STRIDE) };
    Slot {
        // SAFETY: as above; the mapping outlives the borrow of `memory`.
        head: unsafe { &*at.cast::<Head>() },
        // SAFETY: as above.
        data: unsafe { at.add(HEAD) },
    }
}

impl Slot<'_> {
    /// Writes `bytes` (at most `CAPACITY`) into the buffer, and whether more
    /// follow.
    fn put(self, bytes: &[u8], more: bool) {
        debug_assert!(bytes.len() <= CAPACITY);
        let words = bytes.len() / 8;
        for (i, word) in bytes.chunks_exact(8).enumerate() {
            let word = u64::from_ne_bytes(word.try_into().expect("8 bytes"));
            // SAFETY: within the buffer, 8-aligned (the buffer is); shared
            // memory is only ever reached through atomics.
            unsafe { AtomicU64::from_ptr(self.data.add(i * 8).cast()) }
                .store(word, Ordering::Relaxed);
        }
        for (i, &byte) in bytes.iter().enumerate().skip(words * 8) {
            // SAFETY: within the buffer.
            unsafe { AtomicU8::from_ptr(self.data.add(i)) }.store(byte, Ordering::Relaxed);
        }
        self.head.len.store(bytes.len() as u32, Ordering::Relaxed);
        self.head.more.store(u32::from(more), Ordering::Relaxed);
    }

    /// Appends the buffer's bytes to `out`: whether more follow; or why
    /// not: the length is past the buffer, makes `out` longer than `limit`,
    /// or is short of a full buffer while more follow (every chunk but the
    /// last is full, so a message takes a bounded number of handovers).
    fn take(self, out: &mut Vec<u8>, limit: usize) -> Result<bool, &'static str> {
        let len = self.head.len.load(Ordering::Relaxed) as usize;
        let more = self.head.more.load(Ordering::Relaxed) != 0;
        if len > CAPACITY {
            return Err("a length past its buffer");
        }
        if out.len() + len > limit {
            return Err("a message past the largest one");
        }
        if more && len != CAPACITY {
            return Err("a chunk short of its buffer before the last");
        }
        out.reserve(len);
        let words = len / 8;
        for i in 0..words {
            // SAFETY: within the buffer (`len` was bounded), 8-aligned.
            let word =
                unsafe { AtomicU64::from_ptr(self.data.add(i * 8).cast()) }.load(Ordering::Relaxed);
            out.extend_from_slice(&word.to_ne_bytes());
        }
        for i in words * 8..len {
            // SAFETY: within the buffer.
            out.push(unsafe { AtomicU8::from_ptr(self.data.add(i)) }.load(Ordering::Relaxed));
        }
        Ok(more)
    }

    /// Hands the buffer to the other side (`turn` becomes `to`), waking it
    /// if it sleeps (`asleep` is the other side's flag).
    fn hand(self, to: u32, asleep: &AtomicU32) {
        self.head.turn.store(to, Ordering::SeqCst);
        if asleep.load(Ordering::SeqCst) != 0 {
            sys::wake_all(&self.head.turn);
        }
    }
}

/// `message` in chunks of a buffer each, with whether more follow: every
/// chunk but the last full, and one empty chunk for an empty message.
fn chunks(message: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let count = message.len().div_ceil(CAPACITY).max(1);
    (0..count).map(move |i| {
        let start = i * CAPACITY;
        let end = (start + CAPACITY).min(message.len());
        (&message[start..end], i + 1 < count)
    })
}

/// Spins while `ready` says no, for `spin` at most: whether it said yes.
fn spin_until(spin: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if spin.is_zero() {
        return ready();
    }
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        if ready() {
            return true;
        }
        round += 1;
        if round < 64 {
            std::hint::spin_loop();
        } else {
            // Spinning longer lends the processor to whatever else is
            // ready, on a machine with fewer cores than busy threads.
            std::thread::yield_now();
            if start.elapsed() >= spin {
                return false;
            }
        }
    }
}

/// Whether spinning can help: not on a machine with one processor, where
/// the other side cannot run while this one spins.
fn spin(duration: Duration) -> Duration {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, Into::into));
    if cores > 1 { duration } else { Duration::ZERO }
}

/// How a call through a slot failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The process ended.
    Ended,
    /// No answer by the deadline.
    TimedOut,
    /// The process broke the protocol (why).
    Broken(&'static str),
    /// Every slot stayed in use until the deadline.
    Busy,
}

/// A slot the host holds for one call, and the turn it expects there.
struct Held {
    index: usize,
    /// The turn at which the buffer is the host's again.
    turn: u32,
}

/// The host's side: the shared memory, the slots free for calls, and
/// whether the process ended.
pub(super) struct Calls {
    memory: SharedMemory,
    /// Free slots, the last used last: a call takes the slot whose thread
    /// in the process most likely still spins.
    free: Mutex<Vec<Held>>,
    freed: Condvar,
    ended: AtomicBool,
    /// Why the process's calls fail from now on, if it broke the protocol
    /// outside a call (and is to be killed).
    broken: std::sync::OnceLock<&'static str>,
    /// The bytes of answers being received, for all slots together: at
    /// most `MAX_FRAME`, as when one call at a time was answered.
    receiving: std::sync::atomic::AtomicUsize,
}

impl Calls {
    /// New shared memory for a process's calls.
    pub(super) fn new() -> std::io::Result<Self> {
        Ok(Self {
            memory: SharedMemory::create(SLOTS * STRIDE)?,
            free: Mutex::new(
                (0..SLOTS)
                    .rev()
                    .map(|index| Held { index, turn: 0 })
                    .collect(),
            ),
            freed: Condvar::new(),
            ended: AtomicBool::new(false),
            broken: std::sync::OnceLock::new(),
            receiving: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The memory, to give the process.
    pub(super) fn memory(&self) -> &SharedMemory {
        &self.memory
    }

    /// The process ended: every call waiting for it fails now.
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        for index in 0..SLOTS {
            sys::wake_all(&slot(&self.memory, index).head.turn);
        }
        let _free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        self.freed.notify_all();
    }

    /// The process broke the protocol outside any call (`why`): every call
    /// fails now, as broken, and the process is killed for it.
    pub(super) fn break_off(&self, why: &'static str) {
        let _ = self.broken.set(why);
        self.end();
    }

    /// Whether the process ended.
    pub(super) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// How a call fails once the process ended.
    fn ending(&self) -> Failure {
        match self.broken.get() {
            Some(why) => Failure::Broken(why),
            None => Failure::Ended,
        }
    }

    /// Sends `request` and returns the answer, by `deadline`.
    pub(super) fn round_trip(&self, request: &[u8], deadline: Instant) -> Result<Vec<u8>, Failure> {
        let mut held = self.hold(deadline)?;
        let mut counted = 0;
        let answer = self.exchange(&mut held, request, deadline, &mut counted);
        self.receiving.fetch_sub(counted, Ordering::SeqCst);
        // A slot whose call failed is left: its state is unknown, and the
        // process is ended for it.
        if answer.is_ok() {
            self.free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(held);
            self.freed.notify_one();
        }
        answer
    }

    /// A free slot, waiting for one until `deadline`.
    fn hold(&self, deadline: Instant) -> Result<Held, Failure> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.has_ended() {
                return Err(self.ending());
            }
            if let Some(held) = free.pop() {
                return Ok(held);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Busy);
            }
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// One call through the slot `held`; `counted` is how many bytes of the
    /// answer it counted in `receiving`.
    fn exchange(
        &self,
        held: &mut Held,
        request: &[u8],
        deadline: Instant,
        counted: &mut usize,
    ) -> Result<Vec<u8>, Failure> {
        let slot = slot(&self.memory, held.index);
        // The process hands the buffer back empty for each chunk but the
        // last, and with the answer's first chunk after the last.
        for (chunk, more) in chunks(request) {
            slot.put(chunk, more);
            self.hand_and_wait(slot, held, deadline)?;
        }
        let mut answer = Vec::new();
        loop {
            let before = answer.len();
            let more = slot.take(&mut answer, MAX_FRAME);
            // The answers being received, all slots together, stay within
            // the largest answer (a chunk over it at most per slot).
            let added = answer.len() - before;
            *counted += added;
            if self.receiving.fetch_add(added, Ordering::SeqCst) + added > MAX_FRAME {
                return Err(Failure::Broken(
                    "answers longer than the largest answer, counting its other calls'",
                ));
            }
            match more {
                Err(why) => return Err(Failure::Broken(why)),
                Ok(false) => return Ok(answer),
                Ok(true) => self.hand_and_wait(slot, held, deadline)?,
            }
        }
    }

    /// Hands the buffer to the process and waits until it hands it back.
    fn hand_and_wait(
        &self,
        slot: Slot<'_>,
        held: &mut Held,
        deadline: Instant,
    ) -> Result<(), Failure> {
        // Checked at every handover, not only when the process is slow: a
        // process that answers at once, for ever, is stopped here too.
        if Instant::now() >= deadline {
            return Err(Failure::TimedOut);
        }
        let theirs = held.turn.wrapping_add(1);
        let ours = held.turn.wrapping_add(2);
        slot.hand(theirs, &slot.head.child_asleep);
        let turn = &slot.head.turn;
        let answered = || turn.load(Ordering::Acquire) != theirs;
        if !spin_until(spin(HOST_SPIN), answered) {
            let mut spurious = 0;
            loop {
                slot.head.host_asleep.store(1, Ordering::SeqCst);
                if turn.load(Ordering::SeqCst) != theirs {
                    break;
                }
                if self.has_ended() {
                    return Err(self.ending());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Failure::TimedOut);
                }
                if spurious >= SPURIOUS_WAKES {
                    std::thread::sleep(left.min(HOST_POLL));
                    continue;
                }
                let asleep = Instant::now();
                sys::wait_on(turn, theirs, Some(left.min(HOST_NAP)));
                if asleep.elapsed() < HOST_POLL {
                    spurious += 1;
                } else {
                    spurious = 0;
                }
            }
            slot.head.host_asleep.store(0, Ordering::SeqCst);
        }
        if turn.load(Ordering::Acquire) != ours {
            return Err(Failure::Broken("a turn the host did not give"));
        }
        held.turn = ours;
        Ok(())
    }
}

/// The process's side of one slot: waits for each request, has it served,
/// and answers, for as long as the process lives.
pub(super) fn serve_slot(
    memory: &SharedMemory,
    index: usize,
    mut serve: impl FnMut(&[u8], &mut Vec<u8>),
) -> ! {
    let slot = slot(memory, index);
    // The turn at which the buffer is this side's next.
    let mut mine: u32 = 1;
    let mut request = Vec::new();
    let mut answer = Vec::new();
    loop {
        request.clear();
        loop {
            wait_for(slot, mine);
            let Ok(more) = slot.take(&mut request, MAX_FRAME) else {
                // Not the host's lengths: nothing here can be served.
                let _ = writeln!(
                    std::io::stderr(),
                    "isolated plugin process: a request past its buffer or the largest frame"
                );
                std::process::exit(1);
            };
            if !more {
                break;
            }
            // Asks for the next chunk.
            slot.hand(mine.wrapping_add(1), &slot.head.host_asleep);
            mine = mine.wrapping_add(2);
        }
        answer.clear();
        serve(&request, &mut answer);
        for (chunk, more) in chunks(&answer) {
            slot.put(chunk, more);
            slot.hand(mine.wrapping_add(1), &slot.head.host_asleep);
            mine = mine.wrapping_add(2);
            if more {
                // Waits for the host to take this chunk.
                wait_for(slot, mine);
            }
        }
    }
}

/// Waits, in the process, until the turn is `mine`.
fn wait_for(slot: Slot<'_>, mine: u32) {
    let turn = &slot.head.turn;
    if spin_until(spin(CHILD_SPIN), || turn.load(Ordering::Acquire) == mine) {
        return;
    }
    loop {
        slot.head.child_asleep.store(1, Ordering::SeqCst);
        let now = turn.load(Ordering::SeqCst);
        if now == mine {
            break;
        }
        sys::wait_on(turn, now, None);
    }
    slot.head.child_asleep.store(0, Ordering::SeqCst);
}
