//! Interfaces the macro must accept: names that could collide with what it
//! generates, raw identifiers, `Result` aliases, every supported type.

use dropin::{BoxError, Interface, MethodDesc, Stable};

/// Named like the generic parameter and the items of the hidden module.
#[derive(Debug, Clone, PartialEq, dropin::Stable)]
pub struct P {
    /// A field.
    pub x: f64,
}

/// Named like the hidden module's glue.
#[derive(Debug, Clone, Copy, PartialEq, dropin::Stable)]
pub enum Exports {
    /// A variant.
    One,
    /// Another, with data.
    Two(u8, char),
}

#[allow(non_camel_case_types)]
/// Named like the runtime's alias.
#[derive(Debug, Clone, PartialEq, dropin::Stable)]
pub struct rt(pub Vec<Option<String>>);

/// A tuple of maps, one keyed by arrays.
pub type Tally = (
    std::collections::BTreeMap<String, u32>,
    std::collections::HashMap<u8, [char; 2]>,
);

/// Everything at once.
#[dropin::interface(name = "kitchen-sink", version = "3.2.0")]
pub trait KitchenSink: Send + Sync {
    /// A method named like a primitive type.
    fn bool(&self) -> bool;
    /// A raw identifier as an argument.
    fn r#type(&self, r#type: &str, bytes: &[u8]) -> Result<Vec<u8>, BoxError>;
    /// A `Result` alias with one argument.
    fn read(&self, p: P) -> std::io::Result<u64>;
    /// Types named like generated items.
    #[since("3.1")]
    fn glue(&self, exports: Exports, value: rt) -> Option<rt> {
        let _ = exports;
        Some(value)
    }
    /// Nothing back.
    #[since("3.2")]
    fn tick(&self, _: u32) {}
    /// A typed error, and a `Result` as an argument.
    #[since("3.2")]
    fn check(&self, _: Result<u8, String>) -> Result<u64, Exports> {
        Err(Exports::One)
    }
    /// Optional borrowed arguments.
    #[since("3.2")]
    fn maybe(&self, text: Option<&str>, bytes: Option<&[u8]>) -> String {
        format!("{text:?} {bytes:?}")
    }
    /// Tuples, arrays and maps.
    #[since("3.2")]
    fn tally(&self, pairs: Vec<(String, u32)>, _: [u8; 4]) -> Tally {
        (pairs.into_iter().collect(), Default::default())
    }
}

/// Services with a typed error, which the plugin matches on as the
/// application does a method's.
#[dropin::services]
pub trait SinkHost: Send + Sync {
    /// A value the application keeps, or why not.
    fn lookup(&self, key: &str) -> Result<u8, Exports>;
}

struct Host;

impl SinkHost for Host {
    fn lookup(&self, key: &str) -> Result<u8, Exports> {
        key.parse().map_err(|_| Exports::One)
    }
}

#[test]
fn a_services_typed_error_is_described_with_its_result() {
    use dropin::ServicesHandle;
    let _services = SinkHostHandle::provided_by(Host);
    let [lookup] = <SinkHostHandle as ServicesHandle>::SERVICES else {
        panic!("one service");
    };
    assert_eq!(lookup.ret.to_string(), "Result<u8, Exports>");
}

fn names(methods: &[MethodDesc]) -> Vec<(&str, &str)> {
    methods
        .iter()
        .map(|desc| (desc.name.as_str(), desc.since.as_str()))
        .collect()
}

#[test]
fn the_interface_records_its_methods_in_order_with_their_versions() {
    assert_eq!(KitchenSinkPlugin::NAME, "kitchen-sink");
    assert_eq!(KitchenSinkPlugin::VERSION, "3.2.0");
    assert_eq!(KitchenSinkPlugin::REQUIRED, 3);
    assert_eq!(
        names(KitchenSinkPlugin::METHODS),
        [
            ("bool", "3.0.0"),
            ("type", "3.0.0"),
            ("read", "3.0.0"),
            ("glue", "3.1.0"),
            ("tick", "3.2.0"),
            ("check", "3.2.0"),
            ("maybe", "3.2.0"),
            ("tally", "3.2.0"),
        ]
    );
    let maybe = &KitchenSinkPlugin::METHODS[6];
    assert_eq!(maybe.args[0].to_string(), "Option<&str>");
    assert_eq!(maybe.args[1].to_string(), "Option<&[u8]>");
    let tally = &KitchenSinkPlugin::METHODS[7];
    assert_eq!(tally.args[0].to_string(), "Vec<(String, u32)>");
    assert_eq!(tally.args[1].to_string(), "[u8; 4]");
    assert_eq!(
        tally.ret.to_string(),
        "(BTreeMap<String, u32>, HashMap<u8, [char; 2]>)"
    );
    // A typed error is the whole `Result`, described as such.
    let check = &KitchenSinkPlugin::METHODS[5];
    assert_eq!(check.args[0].to_string(), "Result<u8, String>");
    assert_eq!(check.ret.to_string(), "Result<u64, Exports>");
    let glue = &KitchenSinkPlugin::METHODS[3];
    assert_eq!(glue.args[0].to_string(), "Exports");
    assert_eq!(glue.ret.to_string(), "Option<rt>");
    assert_eq!(
        glue.ret.args[0].fields[0].ty.to_string(),
        "Vec<Option<String>>"
    );
}

#[test]
fn derived_types_survive_the_round_trip() {
    let value = rt(vec![Some("a".to_owned()), None]);
    assert_eq!(rt::from_ffi(value.clone().into_ffi()), value);
    assert_eq!(
        Exports::from_ffi(Exports::Two(7, 'x').into_ffi()),
        Exports::Two(7, 'x')
    );
    assert_eq!(P::from_ffi(P { x: 1.5 }.into_ffi()), P { x: 1.5 });
    assert!(P::DESC.same(P::DESC));
    assert_eq!(
        Exports::DESC.difference(P::DESC).as_deref(),
        Some("expected Exports, found P")
    );
}

/// A typed error is part of the method's signature: another error type, or
/// an error where a value was, is a difference the load check names.
#[test]
fn a_typed_error_is_described_with_its_result_and_crosses_both_ways() {
    use dropin::wire::{Decode, Encode};
    type Typed = Result<String, Exports>;
    assert!(Typed::DESC.same(Typed::DESC));
    assert_eq!(Typed::DESC.to_string(), "Result<String, Exports>");
    assert_eq!(
        Typed::DESC.difference(<Result<String, P>>::DESC).as_deref(),
        Some("expected Exports, found P")
    );
    assert!(
        Typed::DESC
            .difference(<Result<Exports, String>>::DESC)
            .is_some()
    );
    for value in [Ok("kept".to_owned()), Err(Exports::Two(7, 'x'))] {
        assert_eq!(Typed::from_ffi(value.clone().into_ffi()), value);
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        assert_eq!(Typed::decode(&mut bytes.as_slice()).unwrap(), value);
    }
    assert_eq!(
        Typed::decode(&mut &[2u8][..]).unwrap_err().to_string(),
        "malformed message: expected a result tag (0 or 1), found 2"
    );
}

/// Tuples, arrays and maps cross as values, both ways and on the wire, and
/// their descriptors tell a different length, order or item apart.
#[test]
fn tuples_arrays_and_maps_cross_both_ways() {
    use std::collections::{BTreeMap, HashMap};

    use dropin::wire::{Decode, Encode};
    fn both_ways<T: Stable + Encode + Decode + PartialEq + std::fmt::Debug + Clone>(value: T) {
        assert_eq!(T::from_ffi(value.clone().into_ffi()), value);
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        let mut input = bytes.as_slice();
        assert_eq!(T::decode(&mut input).unwrap(), value);
        assert!(input.is_empty());
        // Every cut of the bytes is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(T::decode(&mut &bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
    both_ways((1u8, "two".to_owned()));
    both_ways((
        1u8,
        'b',
        -3i64,
        Some(4.5f64),
        vec![()],
        Exports::Two(6, 'x'),
    ));
    both_ways([Some("a".to_owned()), None, Some(String::new())]);
    both_ways(BTreeMap::from([
        ("a".to_owned(), 1u32),
        ("b".to_owned(), 2),
    ]));
    both_ways(HashMap::from([(7u8, ['x', 'y']), (8, ['z', 'z'])]));
    both_ways(BTreeMap::<String, Vec<u8>>::new());

    assert!(<(u8, u16)>::DESC.same(<(u8, u16)>::DESC));
    assert!(!<(u8, u16)>::DESC.same(<(u16, u8)>::DESC));
    assert!(!<(u8, u16)>::DESC.same(<(u8, u16, u8)>::DESC));
    assert!(!<[u8; 4]>::DESC.same(<[u8; 5]>::DESC));
    assert_eq!(
        <[u8; 4]>::DESC.difference(<[u8; 5]>::DESC).as_deref(),
        Some("expected [u8; 4], found [u8; 5]")
    );
    assert!(!<BTreeMap<u8, u8>>::DESC.same(<HashMap<u8, u8>>::DESC));
    // An array longer than the bytes left is refused before allocating.
    assert!(<[u64; 64]>::decode(&mut &[0u8; 8][..]).is_err());
}

#[test]
fn derived_types_survive_the_wire_encoding_and_refuse_bad_bytes() {
    use dropin::wire::{Decode, Encode};
    fn round_trip<T: Encode + Decode>(value: &T) -> T {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        let mut input = bytes.as_slice();
        let back = T::decode(&mut input).unwrap();
        assert!(input.is_empty());
        back
    }
    let value = rt(vec![Some("a".to_owned()), None]);
    assert_eq!(round_trip(&value), value);
    assert_eq!(round_trip(&Exports::Two(7, 'x')), Exports::Two(7, 'x'));
    assert_eq!(round_trip(&Exports::One), Exports::One);
    assert_eq!(round_trip(&P { x: 1.5 }), P { x: 1.5 });
    assert_eq!(
        Exports::decode(&mut &2u32.to_le_bytes()[..])
            .unwrap_err()
            .to_string(),
        "malformed message: Exports has no variant 2"
    );
}

/// The plugin side, in the same crate: the export macro's own items must not
/// capture the plugin author's names.
mod plugin {
    use super::*;

    pub const NAME: &str = "sink";
    pub const HOST: &str = ">=1";

    pub struct Sink;

    impl KitchenSink for Sink {
        fn init(_: &dropin::Context<'_>) -> Result<Self, BoxError> {
            Ok(Sink)
        }
        fn bool(&self) -> bool {
            true
        }
        fn r#type(&self, r#type: &str, bytes: &[u8]) -> Result<Vec<u8>, BoxError> {
            Ok([r#type.as_bytes(), bytes].concat())
        }
        fn read(&self, p: P) -> std::io::Result<u64> {
            Ok(p.x as u64)
        }
    }
}

use plugin::{HOST, NAME};

export_kitchen_sink!(plugin::Sink, name = NAME, host = HOST);

/// Two builds of one object trait.
mod cursor_v1 {
    /// The first build.
    #[dropin::object]
    pub trait Cursor: Send + Sync {
        /// The next item.
        fn next(&self) -> Option<u32>;
    }
}

mod cursor_v2 {
    /// A build whose method's result changed in place.
    #[dropin::object]
    pub trait Cursor: Send + Sync {
        /// The next item, wider.
        fn next(&self) -> Option<u64>;
    }
}

/// An object trait is described by its methods' signatures: a change in
/// one is a difference the load check names.
#[test]
fn an_object_trait_is_described_by_its_methods() {
    type V1 = Box<dyn cursor_v1::Cursor>;
    type V2 = Box<dyn cursor_v2::Cursor>;
    assert!(V1::DESC.same(V1::DESC));
    assert_eq!(V1::DESC.to_string(), "Box<dyn Cursor>");
    assert_eq!(
        V1::DESC.difference(V2::DESC).as_deref(),
        Some("Box<dyn Cursor>::next: field `->`: expected u32, found u64")
    );
}

/// A type of the trait with a method of its own by the name of the
/// trait's, and a drop that says it ran.
struct Counting {
    left: std::sync::atomic::AtomicU32,
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Counting {
    /// Not the trait's `next`.
    #[allow(dead_code)]
    fn next(&self) -> &'static str {
        "the type's own"
    }
}

impl cursor_v1::Cursor for Counting {
    fn next(&self) -> Option<u32> {
        use std::sync::atomic::Ordering;
        let left = self.left.load(Ordering::SeqCst);
        (left > 0).then(|| {
            self.left.store(left - 1, Ordering::SeqCst);
            left
        })
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An object crosses with its type's own method table: its method is the
/// trait's (not the type's of the same name), and its drop runs once,
/// when what received it drops it.
#[test]
fn an_object_crosses_with_its_types_methods_and_drop() {
    let dropped = std::sync::Arc::default();
    let object: Box<dyn cursor_v1::Cursor> = Box::new(Counting {
        left: 2.into(),
        dropped: std::sync::Arc::clone(&dropped),
    });
    let received = Box::<dyn cursor_v1::Cursor>::from_ffi(object.into_ffi());
    assert_eq!(
        (received.next(), received.next(), received.next()),
        (Some(2), Some(1), None)
    );
    assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst));
    drop(received);
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}

mod cursor_v1_1 {
    /// A later minor version: a method added with `#[since]`.
    #[dropin::object(version = "1.1.0")]
    pub trait Cursor: Send + Sync {
        /// The next item.
        fn next(&self) -> Option<u32>;
        /// The next item, left where it is.
        #[since("1.1")]
        fn peek(&self) -> Option<u32>;
    }
}

mod cursor_grown {
    /// A method added without `#[since]`: another trait, not a later one.
    #[dropin::object]
    pub trait Cursor: Send + Sync {
        /// The next item.
        fn next(&self) -> Option<u32>;
        /// The next item, left where it is.
        fn peek(&self) -> Option<u32>;
    }
}

/// Objects of a trait with and without its later methods (`#[since]`) are
/// compatible both ways (a call to a method an object lacks fails as
/// missing); a method added without `#[since]` is a difference.
#[test]
fn an_object_trait_gains_later_methods_compatibly() {
    type V1 = Box<dyn cursor_v1::Cursor>;
    type V1_1 = Box<dyn cursor_v1_1::Cursor>;
    type Grown = Box<dyn cursor_grown::Cursor>;
    assert_eq!(V1::DESC.difference(V1_1::DESC), None);
    assert_eq!(V1_1::DESC.difference(V1::DESC), None);
    assert_eq!(
        V1::DESC.difference(Grown::DESC).as_deref(),
        Some("Box<dyn Cursor>: expected 1 methods, found 2")
    );
    assert_eq!(
        Grown::DESC.difference(V1_1::DESC).as_deref(),
        Some("Box<dyn Cursor>::peek: expected 1 fields, found 2")
    );
}
