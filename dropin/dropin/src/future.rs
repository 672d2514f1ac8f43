//! `async fn` methods across the boundary: the plugin's future as the
//! application polls it, and the application's waker as the plugin wakes
//! it, both as `#[repr(C)]` tables of `extern "C"` functions. No runtime
//! crosses: the application polls on whatever executor it runs, and the
//! plugin's future wakes the application's task through the waker it was
//! polled with.

use std::{
    ffi::c_void,
    fmt,
    future::Future,
    marker::PhantomData,
    mem::{ManuallyDrop, size_of},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, RawWaker, RawWakerVTable, Waker},
};

use abi_stable::std_types::{RResult, RSlice};

use crate::{
    Stable, TypeDesc,
    error::{CallError, RawError},
    handle::PluginState,
};

/// A waker as it crosses the boundary: the waking side's data and
/// functions.
#[doc(hidden)]
#[repr(C)]
#[allow(missing_debug_implementations)]
pub struct FfiWaker {
    data: *const c_void,
    table: &'static FfiWakerTable,
}

/// The functions of an [`FfiWaker`], all the waking side's.
#[doc(hidden)]
#[repr(C)]
#[allow(missing_debug_implementations)]
pub struct FfiWakerTable {
    clone: extern "C" fn(*const c_void) -> FfiWaker,
    wake: extern "C" fn(*const c_void),
    wake_by_ref: extern "C" fn(*const c_void),
    drop: extern "C" fn(*const c_void),
}

/// What one poll of a plugin's future gives.
#[doc(hidden)]
#[repr(C, u8)]
#[allow(missing_debug_implementations)]
pub enum FfiPoll<T> {
    Pending,
    Ready(RResult<T, RawError>),
}

/// A plugin's future as the application holds it: the plugin's state, and
/// its functions to poll and to drop it.
#[doc(hidden)]
#[repr(C)]
#[allow(missing_debug_implementations)]
pub struct FfiFuture<T> {
    this: *mut c_void,
    poll: extern "C" fn(*mut c_void, *const FfiWaker) -> FfiPoll<T>,
    drop: extern "C" fn(*mut c_void) -> RResult<(), RawError>,
}

// SAFETY: the plugin's future is `Send` (the interface's trait requires it),
// and its functions are statics.
unsafe impl<T: Send> Send for FfiFuture<T> {}

/// What the call that starts an `async fn` gives: its output, if the
/// plugin's future was ready at its first poll, or the future.
#[doc(hidden)]
#[repr(C, u8)]
#[allow(missing_debug_implementations)]
pub enum FfiStart<T> {
    Ready(T),
    Pending(FfiFuture<T>),
}

/// The descriptor of an `async fn`'s result: `async` of the output's.
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub struct Async<T>(PhantomData<T>);

impl<T: Stable> Async<T> {
    /// `async<T>`: the size of what the call that starts it returns, and the
    /// room the application lends the plugin's future, as a field: a host
    /// and a plugin that disagree on either are refused.
    pub const DESC: &'static TypeDesc = &TypeDesc {
        args: RSlice::from_slice(&[T::DESC]),
        fields: RSlice::from_slice(&[crate::FieldDesc {
            name: abi_stable::std_types::RStr::from_str("room"),
            ty: &TypeDesc::leaf("bytes", ROOM, std::mem::align_of::<Room>()),
        }]),
        ..TypeDesc::leaf(
            "async",
            size_of::<FfiStart<T::Ffi>>(),
            std::mem::align_of::<FfiStart<T::Ffi>>(),
        )
    };
}

// --- The plugin's side -----------------------------------------------------

/// The plugin's `future` as it crosses: polled, each time, under the panic
/// guard; its output converted by the plugin. The poll that finishes it
/// drops it too (the application calls no `drop` then); after a panic it
/// is left as it is.
#[doc(hidden)]
pub fn into_ffi_future<T, F>(future: F) -> FfiFuture<T>
where
    F: Future<Output = Result<T, RawError>> + Send,
{
    extern "C" fn poll<T, F: Future<Output = Result<T, RawError>>>(
        this: *mut c_void,
        waker: *const FfiWaker,
    ) -> FfiPoll<T> {
        // SAFETY: `this` is the box `into_ffi_future` made, never moved
        // (so pinned), polled by one caller at a time and never after it
        // finished; `drop` drops it.
        unsafe { poll_then::<T, F>(this, waker, drop::<F>) }
    }
    extern "C" fn drop<F>(this: *mut c_void) -> RResult<(), RawError> {
        crate::guest::guarded(|| {
            // SAFETY: the box `into_ffi_future` made, dropped once.
            std::mem::drop(unsafe { Box::from_raw(this.cast::<F>()) });
            Ok(())
        })
    }
    FfiFuture {
        this: Box::into_raw(Box::new(future)).cast(),
        poll: poll::<T, F>,
        drop: drop::<F>,
    }
}

/// Polls the plugin's future at `this` once, under the panic guard, with
/// the waker the application lent; the poll that finishes it drops it with
/// `drop`.
///
/// # Safety
///
/// `this` must be a pinned `F`, polled by one caller at a time and never
/// after it finished, which `drop` drops; `waker` the waker lent for this
/// poll.
unsafe fn poll_then<T, F: Future<Output = Result<T, RawError>>>(
    this: *mut c_void,
    waker: *const FfiWaker,
    drop: extern "C" fn(*mut c_void) -> RResult<(), RawError>,
) -> FfiPoll<T> {
    // SAFETY: the caller's promise.
    let future = unsafe { Pin::new_unchecked(&mut *this.cast::<F>()) };
    // SAFETY: as above.
    let waker = ManuallyDrop::new(unsafe { Waker::from_raw(lent_waker(waker)) });
    let mut context = Context::from_waker(&waker);
    match crate::guest::guarded(|| Ok(future.poll(&mut context))) {
        RResult::ROk(Poll::Pending) => FfiPoll::Pending,
        RResult::ROk(Poll::Ready(output)) => match drop(this) {
            RResult::ROk(()) => FfiPoll::Ready(output.into()),
            RResult::RErr(error) => FfiPoll::Ready(RResult::RErr(error)),
        },
        RResult::RErr(error) => FfiPoll::Ready(RResult::RErr(error)),
    }
}

/// Starts the plugin's `future` for the application: in `room` (the
/// application's [`PluginFuture`]'s, pinned, [`ROOM`] bytes aligned to 16)
/// if it fits, else boxed; polled once with `waker`, unless it is null (then
/// only made). Run inside the call's guard: a panic in the first poll
/// leaves the future where it is, never dropped, as after any panic.
#[doc(hidden)]
// Inlined into the plugin's function of each method: the future is then
// made in place, not moved into a call.
#[inline(always)]
pub fn start_ffi_future<T, F>(
    future: F,
    room: *mut c_void,
    waker: *const FfiWaker,
) -> Result<FfiStart<T>, RawError>
where
    F: Future<Output = Result<T, RawError>> + Send,
{
    extern "C" fn poll_here<T, F: Future<Output = Result<T, RawError>>>(
        this: *mut c_void,
        waker: *const FfiWaker,
    ) -> FfiPoll<T> {
        // SAFETY: `this` is the room `start_ffi_future` wrote the future in,
        // pinned, polled by one caller at a time and never after it
        // finished; `drop_here` drops it.
        unsafe { poll_then::<T, F>(this, waker, drop_here::<F>) }
    }
    extern "C" fn drop_here<F>(this: *mut c_void) -> RResult<(), RawError> {
        crate::guest::guarded(|| {
            // SAFETY: the future `start_ffi_future` wrote there, dropped
            // once; the room is the application's.
            unsafe { std::ptr::drop_in_place(this.cast::<F>()) };
            Ok(())
        })
    }
    let fits = size_of::<F>() <= ROOM && std::mem::align_of::<F>() <= 16;
    if waker.is_null() || room.is_null() || !fits {
        let boxed = into_ffi_future(future);
        if waker.is_null() {
            return Ok(FfiStart::Pending(boxed));
        }
        return match (boxed.poll)(boxed.this, waker) {
            FfiPoll::Pending => Ok(FfiStart::Pending(boxed)),
            FfiPoll::Ready(ready) => Result::from(ready).map(FfiStart::Ready),
        };
    }
    let place = room.cast::<F>();
    // SAFETY: the room holds `ROOM` bytes aligned to 16, which `F` fits.
    unsafe { place.write(future) };
    // SAFETY: the room is pinned: the application's future does not move
    // from its first poll on.
    let pinned = unsafe { Pin::new_unchecked(&mut *place) };
    // SAFETY: the waker the application lent for this poll.
    let lent = ManuallyDrop::new(unsafe { Waker::from_raw(lent_waker(waker)) });
    let mut context = Context::from_waker(&lent);
    match pinned.poll(&mut context) {
        Poll::Ready(output) => {
            // SAFETY: finished: dropped once, here.
            unsafe { std::ptr::drop_in_place(place) };
            output.map(FfiStart::Ready)
        }
        Poll::Pending => Ok(FfiStart::Pending(FfiFuture {
            this: room,
            poll: poll_here::<T, F>,
            drop: drop_here::<F>,
        })),
    }
}

/// The application's waker, lent for one poll, as a waker of the plugin's.
fn lent_waker(waker: *const FfiWaker) -> RawWaker {
    RawWaker::new(waker.cast(), &LENT)
}

/// A waker lent for one poll: its clone is the application's own clone.
static LENT: RawWakerVTable = RawWakerVTable::new(
    |data| {
        // SAFETY: `data` is the `FfiWaker` lent for the poll.
        let waker = unsafe { &*data.cast::<FfiWaker>() };
        kept((waker.table.clone)(waker.data))
    },
    |data| {
        // SAFETY: as above.
        let waker = unsafe { &*data.cast::<FfiWaker>() };
        (waker.table.wake_by_ref)(waker.data);
    },
    |data| {
        // SAFETY: as above.
        let waker = unsafe { &*data.cast::<FfiWaker>() };
        (waker.table.wake_by_ref)(waker.data);
    },
    |_| {},
);

/// A waker the plugin keeps: a box of the application's clone.
fn kept(waker: FfiWaker) -> RawWaker {
    RawWaker::new(Box::into_raw(Box::new(waker)).cast(), &KEPT)
}

static KEPT: RawWakerVTable = RawWakerVTable::new(
    |data| {
        // SAFETY: `data` is a box `kept` made, alive until its drop.
        let waker = unsafe { &*data.cast::<FfiWaker>() };
        kept((waker.table.clone)(waker.data))
    },
    |data| {
        // SAFETY: as above; waking by value consumes it.
        let waker = unsafe { Box::from_raw(data.cast::<FfiWaker>().cast_mut()) };
        (waker.table.wake)(waker.data);
    },
    |data| {
        // SAFETY: as above.
        let waker = unsafe { &*data.cast::<FfiWaker>() };
        (waker.table.wake_by_ref)(waker.data);
    },
    |data| {
        // SAFETY: as above; dropped once.
        let waker = unsafe { Box::from_raw(data.cast::<FfiWaker>().cast_mut()) };
        (waker.table.drop)(waker.data);
    },
);

// --- The application's side ------------------------------------------------

/// The application's waker lent for one poll.
fn lend(waker: &Waker) -> FfiWaker {
    FfiWaker {
        data: std::ptr::from_ref(waker).cast(),
        table: &APPLICATION_LENT,
    }
}

extern "C" fn lent_clone(data: *const c_void) -> FfiWaker {
    // SAFETY: `data` is the `Waker` lent for the poll.
    let waker = unsafe { &*data.cast::<Waker>() };
    FfiWaker {
        data: Box::into_raw(Box::new(waker.clone())).cast(),
        table: &APPLICATION_KEPT,
    }
}

extern "C" fn lent_wake(data: *const c_void) {
    // SAFETY: as above.
    unsafe { &*data.cast::<Waker>() }.wake_by_ref();
}

extern "C" fn lent_drop(_: *const c_void) {}

static APPLICATION_LENT: FfiWakerTable = FfiWakerTable {
    clone: lent_clone,
    wake: lent_wake,
    wake_by_ref: lent_wake,
    drop: lent_drop,
};

extern "C" fn kept_wake(data: *const c_void) {
    // SAFETY: a box `lent_clone` made, consumed once.
    unsafe { Box::from_raw(data.cast::<Waker>().cast_mut()) }.wake();
}

extern "C" fn kept_drop(data: *const c_void) {
    // SAFETY: as above.
    drop(unsafe { Box::from_raw(data.cast::<Waker>().cast_mut()) });
}

static APPLICATION_KEPT: FfiWakerTable = FfiWakerTable {
    clone: lent_clone,
    wake: kept_wake,
    wake_by_ref: lent_wake,
    drop: kept_drop,
};

/// The future of an `async fn` method of a plugin, as the application
/// awaits it: on any executor, from any thread. Dropping it before it
/// finishes cancels the call: the plugin's future is dropped, in the
/// plugin's code.
///
/// The call starts at the first poll, which is also the plugin's future's
/// first poll: a future that is ready at once crosses the boundary once.
/// The plugin's future lives in this one's room when it fits, else in the
/// plugin's allocation.
///
/// Its output is the method's result, or how the call failed
/// ([`CallError`]): the plugin panicked while polled (which disables it, as
/// a panic in any call does), was disabled, or lacks the method.
#[must_use = "a plugin's future does nothing until it is awaited"]
pub struct PluginFuture<
    'a,
    F,
    T,
    S = fn(*mut c_void, *const FfiWaker) -> RResult<FfiStart<F>, RawError>,
    C = fn(F) -> T,
> {
    state: State<F, T, S>,
    plugin: &'a PluginState,
    /// Converts the plugin's output (a function's own type, so that the
    /// conversion is inlined).
    convert: C,
    /// Where the plugin's future lives while it is pending, if it fits:
    /// this future is pinned from its first poll on, and so is the room.
    room: Room,
    /// The call's borrowed arguments, which the plugin's future reads.
    _borrows: PhantomData<&'a ()>,
    _pinned: std::marker::PhantomPinned,
}

/// How many bytes of a plugin's future fit in a [`PluginFuture`].
#[doc(hidden)]
pub const ROOM: usize = 128;

/// The room for a plugin's future: `ROOM` bytes, aligned to 16.
#[repr(C, align(16))]
struct Room(std::mem::MaybeUninit<[u8; ROOM]>);

/// The answer of an isolated plugin's process to an `async fn` call.
#[doc(hidden)]
pub type RemoteAnswer<T> = Pin<Box<dyn Future<Output = Result<T, CallError>> + Send>>;

enum State<F, T, S> {
    /// Not polled yet: what starts the call.
    Unstarted(S),
    /// The plugin's future, in this process.
    Running(FfiFuture<F>),
    /// The answer of the plugin's process.
    Remote(RemoteAnswer<T>),
    Failed(CallError),
    Finished,
}

impl<'a, F, T, S, C> PluginFuture<'a, F, T, S, C>
where
    S: FnOnce(*mut c_void, *const FfiWaker) -> RResult<FfiStart<F>, RawError>,
    C: Fn(F) -> T,
{
    /// The call `start` makes into the plugin of `plugin` at the first poll,
    /// with the room for the plugin's future and the task's waker;
    /// `convert` converts the output.
    #[doc(hidden)]
    #[inline]
    pub fn start(plugin: &'a Arc<PluginState>, start: S, convert: C) -> Self {
        Self::with(plugin, State::Unstarted(start), convert)
    }

    #[inline]
    fn with(plugin: &'a PluginState, state: State<F, T, S>, convert: C) -> Self {
        Self {
            state,
            plugin,
            convert,
            room: Room(std::mem::MaybeUninit::uninit()),
            _borrows: PhantomData,
            _pinned: std::marker::PhantomPinned,
        }
    }

    /// A call to an isolated plugin (of state `plugin`) that `send` sends
    /// unless the plugin is disabled; its process's answer decoded. `since`
    /// names a method the plugin may lack, as `(name, version)`.
    pub(crate) fn remote(
        plugin: &'a Arc<PluginState>,
        send: impl FnOnce() -> RemoteAnswer<Vec<u8>>,
        since: Option<(&'static str, &'static str)>,
        convert: C,
    ) -> Self
    where
        T: crate::wire::Decode + Send + 'static,
    {
        if plugin.failure().is_some() {
            return Self::failed(plugin, plugin.disabled(), convert);
        }
        let answer = send();
        let name = plugin.name();
        let state = Arc::clone(plugin);
        let decoded = async move {
            let answer = answer.await.map_err(|error| state.lacking(error, since))?;
            crate::handle::decode_answer::<T>(name, &answer)
        };
        Self::with(plugin, State::Remote(Box::pin(decoded)), convert)
    }

    /// A call that failed before it started.
    #[doc(hidden)]
    pub fn failed(plugin: &'a Arc<PluginState>, error: CallError, convert: C) -> Self {
        Self::with(plugin, State::Failed(error), convert)
    }

    /// The output of a finished plugin's future (the state is `Finished`
    /// already).
    #[inline]
    fn output(&self, ready: RResult<F, RawError>) -> Poll<Result<T, CallError>> {
        Poll::Ready(match ready {
            RResult::ROk(value) => Ok((self.convert)(value)),
            RResult::RErr(error) => Err(self.plugin.failed(error)),
        })
    }

    /// A poll of a call to another process, or of one that failed before
    /// it started: out of line, so that a call in this process inlines
    /// only its own.
    #[cold]
    #[inline(never)]
    fn poll_elsewhere(&mut self, context: &mut Context<'_>) -> Poll<Result<T, CallError>> {
        match &mut self.state {
            State::Remote(answer) => {
                let answer = std::task::ready!(answer.as_mut().poll(context));
                self.state = State::Finished;
                if let Err(error) = &answer
                    && error.kind() == crate::CallErrorKind::Panicked
                {
                    // As in-process: a plugin that panicked is not called
                    // again.
                    self.plugin
                        .disable(format!("panicked: {}", error.message()));
                }
                Poll::Ready(answer)
            }
            State::Failed(_) => {
                let State::Failed(error) = std::mem::replace(&mut self.state, State::Finished)
                else {
                    unreachable!()
                };
                Poll::Ready(Err(error))
            }
            State::Finished => panic!("a plugin's future was polled after it finished"),
            State::Unstarted(_) | State::Running(_) => unreachable!("polled in this process"),
        }
    }

    /// The first poll: starts the call.
    #[inline]
    fn begin(&mut self, context: &mut Context<'_>) -> Poll<Result<T, CallError>> {
        // SAFETY: the state is `Unstarted` (the caller matched it), read
        // once: `Finished` is written over it before anything can read it
        // again (nothing below runs before that write).
        let State::Unstarted(start) = (unsafe { std::ptr::read(&self.state) }) else {
            unreachable!("called for an unstarted call only")
        };
        // SAFETY: what was there was moved out above: nothing to drop.
        unsafe { std::ptr::write(&mut self.state, State::Finished) };
        if self.plugin.failure().is_some() {
            return Poll::Ready(Err(self.plugin.disabled()));
        }
        let waker = lend(context.waker());
        let room = std::ptr::from_mut(&mut self.room).cast::<c_void>();
        match start(room, &waker) {
            RResult::ROk(FfiStart::Ready(value)) => self.output(RResult::ROk(value)),
            RResult::ROk(FfiStart::Pending(future)) => {
                // SAFETY: `Finished`, written above: nothing to drop.
                unsafe { std::ptr::write(&mut self.state, State::Running(future)) };
                Poll::Pending
            }
            // Made and dropped in the call, or left after a panic.
            RResult::RErr(error) => self.output(RResult::RErr(error)),
        }
    }
}

impl<F, T, S, C> Future for PluginFuture<'_, F, T, S, C>
where
    S: FnOnce(*mut c_void, *const FfiWaker) -> RResult<FfiStart<F>, RawError>,
    C: Fn(F) -> T,
{
    type Output = Result<T, CallError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: nothing is moved out of `this`: its room, where the
        // plugin's future may live, stays where it is.
        let this = unsafe { self.get_unchecked_mut() };
        let future = match &mut this.state {
            State::Running(future) => future,
            State::Unstarted(_) => return this.begin(context),
            State::Remote(_) | State::Failed(_) | State::Finished => {
                return this.poll_elsewhere(context);
            }
        };
        if this.plugin.failure().is_some() {
            return Poll::Ready(Err(this.plugin.disabled()));
        }
        let waker = lend(context.waker());
        match (future.poll)(future.this, &waker) {
            FfiPoll::Pending => Poll::Pending,
            // The poll that finished the plugin's future dropped it, unless
            // the plugin panicked (and is disabled).
            FfiPoll::Ready(ready) => {
                this.state = State::Finished;
                this.output(ready)
            }
        }
    }
}

impl<F, T, S, C> Drop for PluginFuture<'_, F, T, S, C> {
    /// Drops the plugin's future, in the plugin's code, before its room
    /// goes. A disabled plugin's boxed future is left as it is (its state
    /// may be broken after a panic); one in the room is dropped all the
    /// same, since the room is about to be freed under it, and it may have
    /// lent its address to something that outlives it.
    #[inline]
    fn drop(&mut self) {
        if let State::Running(future) = &self.state {
            self.drop_running(future);
        }
    }
}

impl<F, T, S, C> PluginFuture<'_, F, T, S, C> {
    /// Drops the plugin's future that is still running.
    #[cold]
    #[inline(never)]
    fn drop_running(&self, future: &FfiFuture<F>) {
        let in_room = std::ptr::eq(
            future.this.cast_const(),
            std::ptr::from_ref(&self.room).cast(),
        );
        if self.plugin.failure().is_some() && !in_room {
            return;
        }
        if let RResult::RErr(error) = (future.drop)(future.this) {
            drop(self.plugin.failed(error));
        }
    }
}

impl<F, T, S, C> fmt::Debug for PluginFuture<'_, F, T, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginFuture")
            .field("plugin", &self.plugin.name())
            .finish_non_exhaustive()
    }
}

/// Another binary's future (the application's object's, in a plugin), as a
/// future of this one: its output, or how it failed. Dropping it unfinished
/// drops the other's.
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub struct Foreign<F> {
    future: Option<FfiFuture<F>>,
    ready: Option<F>,
}

impl<F> Foreign<F> {
    /// The future `start` made.
    pub fn new(start: FfiStart<F>) -> Self {
        match start {
            FfiStart::Pending(future) => Self {
                future: Some(future),
                ready: None,
            },
            FfiStart::Ready(value) => Self {
                future: None,
                ready: Some(value),
            },
        }
    }
}

impl<F> Future for Foreign<F> {
    type Output = RResult<F, RawError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(future) = &this.future else {
            return match this.ready.take() {
                Some(value) => Poll::Ready(RResult::ROk(value)),
                None => panic!("a future was polled after it finished"),
            };
        };
        let waker = lend(context.waker());
        match (future.poll)(future.this, &waker) {
            FfiPoll::Pending => Poll::Pending,
            FfiPoll::Ready(ready) => {
                // The finishing poll dropped it.
                this.future = None;
                Poll::Ready(ready)
            }
        }
    }
}

impl<F> Drop for Foreign<F> {
    fn drop(&mut self) {
        if let Some(future) = self.future.take() {
            // A panic there was caught and is the other side's to report.
            let _ = (future.drop)(future.this);
        }
    }
}

// SAFETY: as `FfiFuture`'s; the ready value is `F`.
unsafe impl<F: Send> Send for Foreign<F> {}

impl<F> Unpin for Foreign<F> {}

/// `reference`, for as long as the application's future that lent it:
/// how the plugin's future keeps a borrowed argument.
///
/// # Safety
///
/// The referent must outlive every use the plugin's future makes of it.
#[doc(hidden)]
pub unsafe fn extend<T: ?Sized>(reference: &T) -> &'static T {
    // SAFETY: the caller's promise.
    unsafe { &*std::ptr::from_ref(reference) }
}

/// As [`extend`], for an optional argument.
///
/// # Safety
///
/// As `extend`.
#[doc(hidden)]
pub unsafe fn extend_option<T: ?Sized>(reference: Option<&T>) -> Option<&'static T> {
    // SAFETY: the caller's promise.
    reference.map(|reference| unsafe { extend(reference) })
}

thread_local! {
    /// The flag that cancels the call this thread serves, if any.
    static CANCELLED: std::cell::RefCell<Option<Arc<std::sync::atomic::AtomicBool>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f`, a call served on this thread, which `flag` cancels: a
/// [`block_on`] inside gives up once it is set (and the thread unparked).
#[doc(hidden)]
pub fn cancellable<R>(flag: Arc<std::sync::atomic::AtomicBool>, f: impl FnOnce() -> R) -> R {
    /// Puts the previous flag back, even if `f` panics.
    struct Restore(Option<Arc<std::sync::atomic::AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CANCELLED.with(|cancelled| cancelled.replace(previous));
        }
    }
    let _restore = Restore(CANCELLED.with(|cancelled| cancelled.replace(Some(flag))));
    f()
}

/// Runs `future` to its end on this thread, which sleeps while it is
/// pending: how an isolated plugin's process serves an `async fn` call.
/// `None` (the future dropped unfinished) if the call this thread serves
/// was cancelled ([`cancellable`]).
#[doc(hidden)]
pub fn block_on<F: Future>(future: F) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let cancelled = CANCELLED.with(|cancelled| cancelled.borrow().clone());
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if cancelled
            .as_ref()
            .is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst))
        {
            return None;
        }
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
        std::thread::park();
    }
}
