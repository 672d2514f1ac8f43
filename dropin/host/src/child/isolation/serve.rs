//! The isolated process's side: load the plugin the host names, serve its
//! calls, log to standard error, reach the host's services.

use std::{
    io::{self, Write},
    sync::{Arc, Mutex},
};

use dropin::{CallError, CallErrorKind, Interface, wire::Encode};

use crate::{
    load::{self, Policy},
    sys,
};

use super::*;

/// The child's side: load the plugin the host names, then serve its calls
/// until the host closes the pipe.
/// The longest first frame read: a nonce is 32 bytes.
const NONCE_FRAME: usize = 64;

pub(super) fn serve<I: Interface>(nonce: &str) -> Result<(), String> {
    let not_started = |why: &str| {
        crate::child::role::refuse(crate::child::role::NotStarted(format!(
            "{ISOLATED_ENV} is set, but {why}"
        )))
    };
    let mut input = io::stdin().lock();
    // The host's first frame is the nonce in this process's environment,
    // then the setup.
    let first = read_frame(&mut input, NONCE_FRAME)
        .ok()
        .flatten()
        .unwrap_or_else(|| not_started("standard input does not start with the host's nonce"));
    if let Err(not) = crate::child::role::check(ISOLATED_ENV, nonce, &first) {
        crate::child::role::refuse(not);
    }
    let setup = read_frame(&mut input, MAX_FRAME)
        .map_err(|e| e.to_string())?
        .ok_or("the host closed the pipe before the setup")?;
    let setup = message::<Setup>(&setup).map_err(|e| e.to_string())?;
    if (setup.slots as usize, setup.stride as usize) != (slots::SLOTS, slots::STRIDE) {
        return Err(format!(
            "the host shares {} slots of {} bytes for calls, this program serves {} of {}",
            setup.slots,
            setup.stride,
            slots::SLOTS,
            slots::STRIDE
        ));
    }
    // SAFETY: the host put the memory shared for calls at descriptor 5,
    // after its two channels.
    let memory = unsafe { sys::SharedMemory::inherited(5, slots::SLOTS * slots::STRIDE) }
        .map_err(|e| format!("cannot reach the memory shared for calls: {e}"))?;
    // Frames go out on what was standard output; whatever the plugin
    // prints there goes to standard error instead, which the host logs.
    let mut output =
        sys::protocol_output().map_err(|e| format!("cannot set up its output: {e}"))?;
    static LOGGER: ToStderr = ToStderr;
    log::set_logger(&LOGGER).map_err(|e| e.to_string())?;
    log::set_max_level(log::LevelFilter::Trace);
    let path = sys::path_from_bytes(setup.path);
    let copy = sys::path_from_bytes(setup.copy);
    let config_file = setup.config_file.map(sys::path_from_bytes);
    let policy = Policy {
        accepted: setup.accepted.parse().map_err(|e| format!("{e}"))?,
        host_version: setup.host_version.parse().map_err(|e| format!("{e}"))?,
        allow_panic_abort: setup.allow_panic_abort,
        allow_executable_stack: setup.allow_executable_stack,
    };
    let previous = setup.previous.map(|bytes| (setup.previous_version, bytes));
    let handed = previous.is_some();
    let (channel, async_channel) = if setup.channel {
        // SAFETY: the setup says the host put its channels at descriptors 3
        // and 4.
        let (channel, async_channel) =
            unsafe { (sys::inherited_channel(3), sys::inherited_channel(4)) };
        let channel = channel
            .map_err(|e| format!("cannot reach the host's channel: {e}"))?
            .map(|stream| ChildServices {
                stream: Arc::new(Mutex::new(stream)),
            });
        let async_channel =
            async_channel.map_err(|e| format!("cannot reach the host's channel: {e}"))?;
        (channel, async_channel)
    } else {
        (None, None)
    };
    if let Some(channel) = &channel {
        // The application's objects passed to the plugin are reached there.
        dropin::__private::set_callback_client(Box::new(channel.clone()));
    }
    let services = match (&setup.services, channel) {
        (Some(identity), Some(channel)) => child_services::<I>(identity, channel),
        _ => None,
    };
    let loaded = load::open::<I>(&path, &copy, None, &policy, None, false)
        .and_then(|plugin| {
            // The plugin the host described, before its `init` gets what the
            // host prepared for that plugin.
            match crate::child::not_loaded::agreement(
                [
                    &setup.described_name,
                    &setup.described_version,
                    &setup.described_interface_version,
                ],
                &plugin,
            ) {
                Some(kind) => Err(kind.at(&path)),
                None => Ok(plugin),
            }
        })
        .and_then(|plugin| {
            let config = (setup.config.as_str(), config_file.as_deref());
            load::initialize(&plugin, config, previous.as_ref(), services).map(|()| plugin)
        });
    let plugin = match loaded {
        Ok(plugin) => plugin,
        Err(error) => {
            // What failed here keeps its kind across the process boundary:
            // the host reports it as it would have in-process.
            let mut answer = Vec::new();
            Answer::NotLoaded(NotLoaded::of(&error)).encode(&mut answer);
            write_frame(&mut output, &answer).map_err(|e| e.to_string())?;
            return Ok(());
        }
    };
    let mut answer = Vec::new();
    Answer::Started(Ready {
        name: plugin.name().to_owned(),
        version: plugin.version().to_string(),
        interface_version: plugin.interface_version().to_string(),
        host_requirement: plugin
            .host_requirement()
            .map_or_else(String::new, ToString::to_string),
        provided: plugin.core().provided() as u64,
        took_state: handed && plugin.extensions.is_some(),
    })
    .encode(&mut answer);
    write_frame(&mut output, &answer).map_err(|e| e.to_string())?;
    // Served from other threads too, until this process ends.
    let plugin: &'static crate::load::Plugin<I> = Box::leak(Box::new(plugin));
    if let Some(channel) = async_channel {
        calls::serve(channel, plugin);
    }
    // Each slot of the shared memory served on a thread of its own: calls
    // from several of the host's threads run at once.
    let memory: &'static sys::SharedMemory = Box::leak(Box::new(memory));
    for index in 0..slots::SLOTS {
        std::thread::Builder::new()
            .name(format!("dropin-slot-{index}"))
            .spawn(move || {
                slots::serve_slot(memory, index, |request, out| {
                    if let Err(error) = serve_request(plugin, request, out) {
                        let _ = writeln!(io::stderr(), "isolated plugin process: {error}");
                        std::process::exit(1);
                    }
                })
            })
            .map_err(|e| format!("cannot start a thread to serve calls: {e}"))?;
    }
    // Until the host closes the pipe: then this process ends.
    while read_frame(&mut input, MAX_FRAME)
        .map_err(|e| e.to_string())?
        .is_some()
    {}
    Ok(())
}

/// Serves one request of the host's: `out` gets the answer.
fn serve_request<I: Interface>(
    plugin: &crate::load::Plugin<I>,
    request: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match message::<Request>(request).map_err(|e| e.to_string())? {
        Request::Call { method, args } => plugin
            .handle()
            .serve(method as usize, &args, out)
            .map_err(|e| e.to_string())?,
        Request::Object { id, method, args } => {
            dropin::__private::serve_object(id, method as usize, &args, out)
                .map_err(|e| e.to_string())?;
        }
        Request::DropObject { id } => {
            dropin::__private::drop_object(id);
            // A drop that panicked disabled the plugin here: the host's
            // side of it learns so.
            let outcome = match plugin.core().failure() {
                Some(failure) => Err(CallError::from_parts(
                    CallErrorKind::Panicked,
                    plugin.name(),
                    failure
                        .strip_prefix("panicked: ")
                        .unwrap_or(failure)
                        .to_owned(),
                    None,
                )),
                None => Ok(()),
            };
            dropin::abi::encode_outcome(&outcome, out);
        }
        Request::Save => {
            let saved = plugin
                .extensions
                .map_or(Ok(None), dropin::abi::save_state)
                .map_err(|message| {
                    CallError::from_parts(CallErrorKind::Failed, plugin.name(), message, None)
                });
            dropin::abi::encode_outcome(
                &saved.map(|state| state.map(|(version, bytes)| Saved { version, bytes })),
                out,
            );
        }
    }
    Ok(())
}

/// The child's logger: each record as one marked line on standard error.
pub(super) struct ToStderr;

impl log::Log for ToStderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string().replace('\n', " ");
        let _ = writeln!(io::stderr(), "{LOG_MARK}{}\t{message}", record.level());
    }

    fn flush(&self) {}
}

/// How the setup names the services a host offers, and how the isolated
/// process checks they are the ones it was built with: the trait's name
/// and the interface crate's version, tab-separated.
pub(super) fn services_identity(name: &str, version: &str) -> String {
    format!("{name}\t{version}")
}

/// In an isolated process: the table of the host's services, reached over
/// `channel`, if they are the services this program was built with
/// (`identity`: the host's trait name and interface version). A host that
/// offers other services, or another version of them, offers none to this
/// process: every call is `Missing`, never a call by number into services
/// of another signature.
pub(super) fn child_services<I: Interface>(
    identity: &str,
    channel: ChildServices,
) -> Option<&'static dropin::abi::RawServices> {
    let table = I::remote_services(Box::new(channel));
    table.filter(|table| {
        let same = services_identity(table.name.as_str(), table.version.as_str()) == identity;
        if !same {
            log::warn!(target: LOG_TARGET,
                "the host offers the services {}, this program was built with {} {}: none are \
                 offered to the plugin",
                identity.replace('\t', " "),
                table.name.as_str(),
                table.version.as_str()
            );
        }
        same
    })
}

/// An isolated process's way to the host's services and the application's
/// objects: one call at a time, over the channel at descriptor 3.
#[derive(Clone)]
pub(super) struct ChildServices {
    pub(super) stream: Arc<Mutex<sys::Channel>>,
}

impl ChildServices {
    fn exchange(&self, back: &Back) -> Result<Vec<u8>, String> {
        let gone = |e: io::Error| format!("the host cannot be reached: {e}");
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let mut frame = Vec::new();
        back.encode(&mut frame);
        write_frame(&mut &*stream, &frame).map_err(gone)?;
        read_frame(&mut &*stream, MAX_FRAME)
            .map_err(gone)?
            .ok_or_else(|| "the host closed its channel".to_owned())
    }
}

impl dropin::abi::ServiceClient for ChildServices {
    fn call(&self, service: usize, args: Vec<u8>) -> Result<Vec<u8>, String> {
        self.exchange(&Back::Service {
            method: u32::try_from(service).unwrap_or(u32::MAX),
            args,
        })
    }

    fn callback(&self, id: u64, method: usize, args: Vec<u8>) -> Result<Vec<u8>, String> {
        self.exchange(&Back::Callback {
            id,
            method: u32::try_from(method).unwrap_or(u32::MAX),
            args,
        })
    }

    fn drop_callback(&self, id: u64) -> Result<(), String> {
        self.exchange(&Back::DropCallback { id }).map(drop)
    }
}
