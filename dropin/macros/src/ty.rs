//! Which types may cross the plugin boundary, and where.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{GenericArgument, PathArguments, Type, spanned::Spanned};

/// Where a type appears in a method's signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// An argument after `&self`: may be borrowed (`&str`, `&[u8]`).
    Argument,
    /// The result (the `T` of `Result<T, E>`), or inside another type.
    Owned,
}

/// How an accepted type crosses the boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `&str`, borrowed for the call.
    Str,
    /// `&[u8]`, borrowed for the call.
    Bytes,
    /// `Option<&str>`, borrowed for the call.
    OptionStr,
    /// `Option<&[u8]>`, borrowed for the call.
    OptionBytes,
    /// An owned value implementing `dropin::Stable`.
    Value,
    /// `&dyn Trait` of a `#[dropin::object]` trait: the application's
    /// object, lent for the call.
    Lent,
    /// `Box<dyn Trait>` as an argument: the application's object, given to
    /// the plugin.
    Given,
    /// `&[T]` of a `Stable` `T` (not `u8`): its items copied for the call.
    Slice,
}

const OWNED: &str = "pass an owned value instead: an integer, float, bool, char, String, \
                     Vec<T>, Option<T>, Result<T, E>, a tuple, an array, a map, or a struct or \
                     enum deriving `dropin::Stable`";

/// Checks `ty` at `position`; the error is spanned on the offending type and
/// says what to use instead.
pub fn check(ty: &Type, position: Position) -> syn::Result<Kind> {
    let error = |message: String| Err(syn::Error::new(ty.span(), message));
    if position == Position::Argument && object_trait(ty).is_none() && holds_object(ty) {
        return error(
            "the application's object can be passed to a plugin alone, as `&dyn Trait` or \
             `Box<dyn Trait>`, not inside other types yet"
                .to_owned(),
        );
    }
    match ty {
        Type::Reference(reference) => {
            if reference.mutability.is_some() {
                return error(format!(
                    "a `&mut` reference cannot cross the plugin boundary: the plugin cannot \
                     write into the host's memory; {OWNED}, and return what changed"
                ));
            }
            if reference.lifetime.is_some() {
                return error(
                    "a named lifetime cannot cross the plugin boundary: write `&str` or `&[u8]`, \
                     borrowed for the duration of the call"
                        .to_owned(),
                );
            }
            let borrowed = match &*reference.elem {
                Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => {
                    Some((Kind::Str, "String"))
                }
                Type::Slice(slice) if is_ident(&slice.elem, "u8") => Some((Kind::Bytes, "Vec<u8>")),
                Type::Slice(slice) => {
                    check(&slice.elem, Position::Owned)?;
                    Some((Kind::Slice, "Vec<T>"))
                }
                Type::TraitObject(_) if lent_trait(ty).is_some() => {
                    return match position {
                        Position::Argument => Ok(Kind::Lent),
                        Position::Owned => error(
                            "a `&dyn Trait` can only be an argument, lent for the call: return \
                             `Box<dyn Trait>`"
                                .to_owned(),
                        ),
                    };
                }
                Type::TraitObject(_) => {
                    return error(format!(
                        "a `&dyn Trait` crosses the plugin boundary for one trait declared with \
                         `#[dropin::object]`, without other bounds; or pass data: {OWNED}"
                    ));
                }
                _ => None,
            };
            match (borrowed, position) {
                (Some((kind, _)), Position::Argument) => Ok(kind),
                (Some((_, owned)), Position::Owned) => error(format!(
                    "a borrowed value can only be an argument (or an argument's `Option`), for \
                     the duration of the call: use `{owned}` here"
                )),
                (None, _) => error(format!(
                    "only `&str`, `&[T]` and `&dyn Trait` may be borrowed across the plugin \
                     boundary; {OWNED}"
                )),
            }
        }
        Type::Ptr(_) => error(format!(
            "a raw pointer cannot cross the plugin boundary: nothing would check what it points \
             to; {OWNED}"
        )),
        Type::ImplTrait(_) => error(format!(
            "`impl Trait` cannot cross the plugin boundary: the host must know the concrete type; \
             {OWNED}"
        )),
        Type::TraitObject(_) => error(format!(
            "a trait object cannot cross the plugin boundary: declare the behaviour as methods of \
             the interface, or pass data: {OWNED}"
        )),
        Type::BareFn(_) => error(
            "a function pointer cannot cross the plugin boundary: declare the function as a \
             method of the interface"
                .to_owned(),
        ),
        Type::Tuple(tuple) if tuple.elems.len() == 1 => error(
            "a tuple of one item cannot cross the plugin boundary: use the item itself".to_owned(),
        ),
        Type::Tuple(tuple) if tuple.elems.len() > 6 => error(
            "a tuple of more than six items cannot cross the plugin boundary: declare a struct \
             deriving `dropin::Stable`"
                .to_owned(),
        ),
        Type::Tuple(tuple) => {
            for item in &tuple.elems {
                check(item, Position::Owned)?;
            }
            Ok(Kind::Value)
        }
        Type::Array(array) => {
            check(&array.elem, Position::Owned)?;
            Ok(Kind::Value)
        }
        Type::Slice(_) => error(
            "a slice cannot cross the plugin boundary: use `Vec<T>` (or `&[u8]` as an argument)"
                .to_owned(),
        ),
        Type::Paren(inner) => check(&inner.elem, position),
        Type::Group(inner) => check(&inner.elem, position),
        Type::Path(path) => {
            if path.qself.is_some() {
                return error(format!(
                    "an associated type cannot cross the plugin boundary; {OWNED}"
                ));
            }
            if path.path.is_ident("Self") {
                return error(format!(
                    "`Self` cannot cross the plugin boundary: the host never sees the plugin's \
                     type; {OWNED}"
                ));
            }
            let Some(last) = path.path.segments.last() else {
                return error(OWNED.to_owned());
            };
            // `Box<dyn Trait>`: an object of a `#[dropin::object]` trait,
            // returned by a plugin.
            if object_trait(ty).is_some() {
                return Ok(match position {
                    Position::Argument => Kind::Given,
                    Position::Owned => Kind::Value,
                });
            }
            // `Option<&str>` and `Option<&[u8]>`: borrowed, as arguments.
            if last.ident == "Option"
                && position == Position::Argument
                && let PathArguments::AngleBracketed(args) = &last.arguments
                && let [GenericArgument::Type(Type::Reference(inner))] =
                    args.args.iter().collect::<Vec<_>>().as_slice()
                && inner.mutability.is_none()
                && inner.lifetime.is_none()
            {
                match &*inner.elem {
                    Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => {
                        return Ok(Kind::OptionStr);
                    }
                    Type::Slice(slice) if is_ident(&slice.elem, "u8") => {
                        return Ok(Kind::OptionBytes);
                    }
                    _ => {}
                }
            }
            match &last.arguments {
                PathArguments::None => Ok(Kind::Value),
                PathArguments::AngleBracketed(args) => {
                    for arg in &args.args {
                        match arg {
                            GenericArgument::Type(inner) => {
                                check(inner, Position::Owned)?;
                            }
                            other => {
                                return Err(syn::Error::new(
                                    other.span(),
                                    format!(
                                        "only type arguments may cross the plugin boundary, \
                                         no lifetimes, constants or bounds; {OWNED}"
                                    ),
                                ));
                            }
                        }
                    }
                    Ok(Kind::Value)
                }
                PathArguments::Parenthesized(_) => error(
                    "a closure type cannot cross the plugin boundary: declare a method instead"
                        .to_owned(),
                ),
            }
        }
        _ => error(format!(
            "this type cannot cross the plugin boundary; {OWNED}"
        )),
    }
}

fn is_ident(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident(name))
}

/// Whether `ty` is the standard `String` (`String`, `std::string::String`
/// or `alloc::string::String`), which the application's handle returns as
/// `dropin::Text` (handed over without a copy). A type of the interface's
/// own named `String` in a module of its own is not.
pub fn is_string(ty: &Type) -> bool {
    let Type::Path(path) = ty else {
        return false;
    };
    if path.qself.is_some() || path.path.segments.iter().any(|s| !s.arguments.is_none()) {
        return false;
    }
    let names: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    matches!(
        names
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["String"] | ["std" | "alloc", "string", "String"]
    )
}

/// The type the application's handle returns for a result of type `ty`:
/// `ty` with `dropin::Text` (handed over without a copy) for each `String`
/// that is the result, or inside an `Option`, a `Result`'s value, a `Vec`,
/// a tuple, an array or a map's keys and values, however deep; `None` when
/// there is no such `String`. Both have the same representation.
pub fn handle_text(ty: &Type) -> Option<Type> {
    if is_string(ty) {
        return Some(syn::parse_quote!(::dropin::Text));
    }
    let mut ty = ty.clone();
    replace_strings(&mut ty).then_some(ty)
}

/// The application handle's result type for `ret`, and the conversion of
/// its `Stable` representation into it.
pub fn handle_output(ret: &Type) -> (TokenStream, TokenStream) {
    let output = handle_text(ret).unwrap_or_else(|| ret.clone());
    (
        quote!(#output),
        quote!(<#output as ::dropin::Stable>::from_ffi),
    )
}

/// Replaces the `String`s [`handle_text`] names in `ty`; whether there were
/// any.
fn replace_strings(ty: &mut Type) -> bool {
    let text: Type = syn::parse_quote!(::dropin::Text);
    let visit = |ty: &mut Type| {
        if is_string(ty) {
            *ty = text.clone();
            true
        } else {
            replace_strings(ty)
        }
    };
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last_mut() else {
                return false;
            };
            // Only the containers whose `Stable` conversion converts each
            // item: a type of the interface's own keeps its fields.
            let items = match last.ident.to_string().as_str() {
                "Option" | "Vec" | "HashMap" | "BTreeMap" => usize::MAX,
                "Result" => 1,
                _ => return false,
            };
            let syn::PathArguments::AngleBracketed(args) = &mut last.arguments else {
                return false;
            };
            let mut any = false;
            for arg in args.args.iter_mut().take(items) {
                if let syn::GenericArgument::Type(ty) = arg {
                    any |= visit(ty);
                }
            }
            any
        }
        Type::Tuple(tuple) => tuple
            .elems
            .iter_mut()
            .fold(false, |any, ty| visit(ty) | any),
        Type::Array(array) => visit(&mut array.elem),
        Type::Paren(inner) => visit(&mut inner.elem),
        Type::Group(inner) => visit(&mut inner.elem),
        _ => false,
    }
}

/// The item type of a slice argument, `&[T]`.
pub fn slice_item(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(reference) => match &*reference.elem {
            Type::Slice(slice) => Some(&slice.elem),
            _ => None,
        },
        _ => None,
    }
}

/// The trait of a lent object, `&dyn Trait` (the path to `Trait`).
pub fn lent_trait(ty: &Type) -> Option<&syn::Path> {
    let Type::Reference(reference) = ty else {
        return None;
    };
    let Type::TraitObject(object) = &*reference.elem else {
        return None;
    };
    single_bound(object)
}

fn single_bound(object: &syn::TypeTraitObject) -> Option<&syn::Path> {
    match object.bounds.iter().collect::<Vec<_>>().as_slice() {
        [syn::TypeParamBound::Trait(bound)] if bound.lifetimes.is_none() => Some(&bound.path),
        _ => None,
    }
}

/// The trait of an object type, `Box<dyn Trait>` (the path to `Trait`).
pub fn object_trait(ty: &Type) -> Option<&syn::Path> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Box" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let [GenericArgument::Type(Type::TraitObject(object))] =
        args.args.iter().collect::<Vec<_>>().as_slice()
    else {
        return None;
    };
    single_bound(object)
}

/// Where a method's result holds objects: the result itself, in an
/// `Option`, or in a `Result`'s `Ok`.
pub enum Shape {
    /// `Box<dyn Trait>`: the handle's path (`TableHandle` for `Table`).
    Object(syn::Path),
    /// `Option<..>` of a shape.
    Option(Box<Shape>),
    /// `Result<.., E>` of a shape, and `E`.
    Ok(Box<Shape>, Type),
}

impl Shape {
    /// How `ty` holds objects; `None` if it holds none, an error where it
    /// holds one elsewhere than the shapes above.
    pub fn of(ty: &Type) -> syn::Result<Option<Self>> {
        if !holds_object(ty) {
            return Ok(None);
        }
        Self::parse(ty).map(Some)
    }

    fn parse(ty: &Type) -> syn::Result<Self> {
        if let Some(path) = object_trait(ty) {
            let mut handle = path.clone();
            let last = handle.segments.last_mut().expect("a path has a segment");
            last.ident = format_ident!("{}Handle", last.ident);
            return Ok(Self::Object(handle));
        }
        let unsupported = || {
            syn::Error::new(
                ty.span(),
                "an object can be returned alone, in an `Option` or in a `Result`'s `Ok`, not \
                 inside other types yet",
            )
        };
        let Type::Path(path) = ty else {
            return Err(unsupported());
        };
        let last = path.path.segments.last().ok_or_else(unsupported)?;
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return Err(unsupported());
        };
        let types: Vec<&Type> = args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect();
        match (last.ident.to_string().as_str(), types.as_slice()) {
            ("Option", [item]) => Ok(Self::Option(Box::new(Self::parse(item)?))),
            ("Result", [ok, error]) if !holds_object(error) => {
                Ok(Self::Ok(Box::new(Self::parse(ok)?), (*error).clone()))
            }
            _ => Err(unsupported()),
        }
    }

    /// The application's type: each object as its handle.
    pub fn handle_type(&self) -> TokenStream {
        match self {
            Self::Object(handle) => quote!(#handle),
            Self::Option(item) => {
                let item = item.handle_type();
                quote!(::core::option::Option<#item>)
            }
            Self::Ok(ok, error) => {
                let ok = ok.handle_type();
                quote!(::core::result::Result<#ok, #error>)
            }
        }
    }

    /// The type on the wire between an isolated plugin's process and its
    /// host: each object as its number.
    pub fn wire_type(&self) -> TokenStream {
        match self {
            Self::Object(_) => quote!(u64),
            Self::Option(item) => {
                let item = item.wire_type();
                quote!(::core::option::Option<#item>)
            }
            Self::Ok(ok, error) => {
                let ok = ok.wire_type();
                quote!(::core::result::Result<#ok, #error>)
            }
        }
    }

    /// Converts `value`, the result's representation, into the handle
    /// type: each object a handle of the plugin of state `plugin`.
    pub fn convert_ffi(&self, value: &TokenStream, plugin: &TokenStream) -> TokenStream {
        let inner = quote!(inner);
        match self {
            // The value is the plugin's object, converted by the plugin for
            // a type the loader compared with the handle's.
            Self::Object(handle) => quote!(unsafe { #handle::__dropin_local(#value, #plugin) }),
            Self::Option(item) => {
                let item = item.convert_ffi(&inner, plugin);
                quote! {
                    match #value {
                        ::dropin::__private::ROption::RSome(inner) => ::core::option::Option::Some(#item),
                        ::dropin::__private::ROption::RNone => ::core::option::Option::None,
                    }
                }
            }
            Self::Ok(ok, error) => {
                let ok = ok.convert_ffi(&inner, plugin);
                quote! {
                    match #value {
                        ::dropin::__private::RResult::ROk(inner) => ::core::result::Result::Ok(#ok),
                        ::dropin::__private::RResult::RErr(error) => {
                            ::core::result::Result::Err(<#error as ::dropin::Stable>::from_ffi(error))
                        }
                    }
                }
            }
        }
    }

    /// Converts `value`, of the wire type, into the handle type: each
    /// number an object in the process `remote` reaches.
    pub fn convert_wire(
        &self,
        value: &TokenStream,
        remote: &TokenStream,
        plugin: &TokenStream,
    ) -> TokenStream {
        let inner = quote!(inner);
        match self {
            Self::Object(handle) => {
                quote!(#handle::__dropin_remote(#value, ::dropin::__private::Arc::clone(#remote), #plugin))
            }
            Self::Option(item) | Self::Ok(item, _) => {
                let item = item.convert_wire(&inner, remote, plugin);
                quote!(#value.map(|inner| #item))
            }
        }
    }

    /// Converts `value`, of the handle type, into the wire type: each
    /// object kept by this (the plugin's) process, by number.
    pub fn to_wire(&self, value: &TokenStream) -> TokenStream {
        let inner = quote!(inner);
        match self {
            Self::Object(_) => {
                quote!(::dropin::__private::keep_object(::dropin::__private::Box::new(#value)))
            }
            Self::Option(item) | Self::Ok(item, _) => {
                let item = item.to_wire(&inner);
                quote!(#value.map(|inner| #item))
            }
        }
    }
}

/// Whether `ty` holds an object anywhere.
pub fn holds_object(ty: &Type) -> bool {
    if object_trait(ty).is_some() {
        return true;
    }
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .iter()
            .any(|segment| match &segment.arguments {
                PathArguments::AngleBracketed(args) => args.args.iter().any(|arg| match arg {
                    GenericArgument::Type(ty) => holds_object(ty),
                    _ => false,
                }),
                _ => false,
            }),
        Type::Tuple(tuple) => tuple.elems.iter().any(holds_object),
        Type::Array(array) => holds_object(&array.elem),
        Type::Paren(inner) => holds_object(&inner.elem),
        Type::Group(inner) => holds_object(&inner.elem),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ty: &str) -> Option<String> {
        let ty: Type = syn::parse_str(ty).unwrap();
        handle_text(&ty).map(|ty| quote!(#ty).to_string().replace(' ', ""))
    }

    #[test]
    fn every_string_of_a_result_in_std_containers_comes_back_as_text() {
        for (ty, handle) in [
            ("String", "::dropin::Text"),
            ("Option<String>", "Option<::dropin::Text>"),
            (
                "Result<String, StoreError>",
                "Result<::dropin::Text,StoreError>",
            ),
            ("Result<u32, String>", ""),
            ("Vec<Option<String>>", "Vec<Option<::dropin::Text>>"),
            (
                "std::collections::HashMap<String, Vec<String>>",
                "std::collections::HashMap<::dropin::Text,Vec<::dropin::Text>>",
            ),
            ("BTreeMap<u8, String>", "BTreeMap<u8,::dropin::Text>"),
            ("(u32, String)", "(u32,::dropin::Text)"),
            ("[String; 2]", "[::dropin::Text;2]"),
            (
                "Option<(String, String)>",
                "Option<(::dropin::Text,::dropin::Text)>",
            ),
            // The interface's own types keep their fields.
            ("Entry<String>", ""),
            ("std::string::String", "::dropin::Text"),
            ("Option<::alloc::string::String>", "Option<::dropin::Text>"),
            // A type of the interface's own that is named String.
            ("Option<names::String>", ""),
            ("names::String", ""),
            ("Option<Entry>", ""),
            ("u32", ""),
        ] {
            assert_eq!(
                text(ty),
                (!handle.is_empty()).then(|| handle.to_owned()),
                "{ty}"
            );
        }
    }
}
