//! The model of an interface trait, parsed and checked.

use proc_macro2::{Span, TokenStream};
use syn::{
    Attribute, FnArg, Ident, ItemTrait, LitStr, Pat, ReturnType, TraitItem, TraitItemFn, Type,
    Visibility, parse::Parser, spanned::Spanned,
};

use crate::ty::{self, Kind, Position};

/// Method names that `dropin_host::Plugin` (which dereferences to the
/// generated handle) or the handle itself already uses: exactly `Plugin`'s
/// public methods, which `dropin-host`'s `reserved_names` test holds it to.
const RESERVED: &[&str] = &[
    "name",
    "version",
    "interface_version",
    "host_requirement",
    "path",
    "loaded_from",
    "sha256",
    "failure",
    "disable",
    "generation",
    "is_isolated",
    "handle",
    "core",
    "capabilities",
    "missing_capabilities",
    "deref",
];

/// An interface: the trait as written, and its methods.
pub struct Interface {
    /// The trait, without the attributes only this macro understands.
    pub item: ItemTrait,
    /// `name = "..."`, else the interface crate's package name.
    pub name: Option<LitStr>,
    /// `version = "..."`, else the interface crate's version.
    pub version: Option<LitStr>,
    /// `services = Trait`: the services its host offers, declared with
    /// `#[dropin::services]` in the same crate.
    pub services: Option<Ident>,
    /// The methods, in declaration order.
    pub methods: Vec<Method>,
}

/// One method of the interface.
pub struct Method {
    /// Its doc comments and other attributes, copied onto the handle.
    pub docs: Vec<Attribute>,
    pub ident: Ident,
    pub args: Vec<Arg>,
    /// The `T` of `Result<T, BoxError>`, or the whole return type (a
    /// `Result<T, E>` of a `Stable` `E` included).
    pub ret: Type,
    /// Whether it returns `Result<T, BoxError>` (or another error that
    /// crosses as its message).
    pub fallible: bool,
    /// The return type as declared.
    pub output: syn::ReturnType,
    /// Whether it is an `async fn`.
    pub asyncness: Option<syn::Token![async]>,
    /// The interface version that added it, as a full semver version.
    pub since: String,
    /// Whether it belongs to the interface's first release (of this major):
    /// every plugin has it.
    pub required: bool,
}

/// One argument after `&self`.
pub struct Arg {
    /// The name the generated code uses, apart from its own names.
    pub ident: Ident,
    /// The name the trait gives it, for the signatures users read.
    pub name: Ident,
    pub ty: Type,
    pub kind: Kind,
}

impl Interface {
    pub fn parse(args: TokenStream, mut item: ItemTrait) -> syn::Result<Self> {
        let mut name = None;
        let mut version = None;
        let mut services = None;
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                name = Some(meta.value()?.parse::<LitStr>()?);
                Ok(())
            } else if meta.path.is_ident("version") {
                version = Some(meta.value()?.parse::<LitStr>()?);
                Ok(())
            } else if meta.path.is_ident("services") {
                services = Some(meta.value()?.parse::<Ident>()?);
                Ok(())
            } else {
                Err(meta
                    .error("expected `name = \"...\"`, `version = \"...\"` or `services = Trait`"))
            }
        });
        parser.parse2(args)?;
        if let Some(param) = item.generics.params.first() {
            return Err(syn::Error::new(
                param.span(),
                "an interface trait cannot be generic: the host must know every type when it \
                 is compiled; declare one interface per concrete type",
            ));
        }
        if let Some(unsafety) = &item.unsafety {
            return Err(syn::Error::new(
                unsafety.span(),
                "an interface trait cannot be `unsafe`",
            ));
        }
        // The version the methods without `#[since]` belong to: the
        // interface's major. Known when the crate is being compiled by cargo.
        let declared = match &version {
            Some(version) => Some((version.value(), version.span())),
            None => std::env::var("CARGO_PKG_VERSION")
                .ok()
                .map(|v| (v, Span::call_site())),
        };
        let current = match &declared {
            Some((text, span)) => Some(parse_version(text).ok_or_else(|| {
                syn::Error::new(*span, "expected a semver version such as \"1.2.0\"")
            })?),
            None => None,
        };
        let first_version = match current {
            Some((0, minor, _)) => format!("0.{minor}.0"),
            Some((major, _, _)) => format!("{major}.0.0"),
            None => "0.0.0".to_owned(),
        };
        // Every method's mistakes, reported together: one compile shows
        // them all, each on its tokens.
        let mut errors = Errors::default();
        let mut methods = Vec::new();
        let mut previous: Option<(u64, u64, u64)> = None;
        for trait_item in &mut item.items {
            let TraitItem::Fn(function) = trait_item else {
                errors.push(syn::Error::new(
                    trait_item.span(),
                    "an interface trait may only declare methods",
                ));
                continue;
            };
            let method = match Method::parse(function, &first_version) {
                Ok(method) => method,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            let since = parse_version(&method.since).expect("normalised by Method::parse");
            if let Some(current) = current
                && (since > current
                    || since.0 != current.0
                    || (current.0 == 0 && since.1 != current.1))
            {
                errors.push(syn::Error::new(
                    method.ident.span(),
                    format!(
                        "`#[since(\"{}\")]` must be a version of this interface's major, no \
                         later than its version {}",
                        method.since,
                        declared.as_ref().map_or("", |(text, _)| text)
                    ),
                ));
            }
            if previous.is_some_and(|previous| since < previous) {
                errors.push(syn::Error::new(
                    method.ident.span(),
                    "methods must be declared in the order they were added: a method of a later \
                     minor version goes after every earlier one, so that the methods of each \
                     release stay a prefix of the next",
                ));
            }
            previous = Some(since);
            methods.push(method);
        }
        errors.result()?;
        Ok(Self {
            item,
            name,
            version,
            services,
            methods,
        })
    }
}

impl Method {
    /// Parses `function` and removes its `#[since]` attribute.
    fn parse(function: &mut TraitItemFn, first_version: &str) -> syn::Result<Self> {
        let sig = &function.sig;
        let ident = sig.ident.clone();
        let name = unraw(&ident);
        if name == "init" {
            return Err(syn::Error::new(
                ident.span(),
                "`init` is reserved: the macro adds `fn init(context: &dropin::Context<'_>) -> \
                 Result<Self, dropin::BoxError>` to every interface",
            ));
        }
        if name == "save_state" {
            return Err(syn::Error::new(
                ident.span(),
                "`save_state` is reserved: the macro adds `fn save_state(&self) -> \
                 Result<Option<dropin::SavedState>, dropin::BoxError>` to every interface, for \
                 reloads",
            ));
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(syn::Error::new(
                ident.span(),
                format!(
                    "`{name}` is reserved: `dropin_host::Plugin`, which applications call the \
                     handle through, has a method of that name that would hide this one; \
                     choose another name"
                ),
            ));
        }
        if let Some(constness) = &sig.constness {
            return Err(syn::Error::new(
                constness.span(),
                "a `const fn` cannot be a plugin method",
            ));
        }
        if let Some(unsafety) = &sig.unsafety {
            return Err(syn::Error::new(
                unsafety.span(),
                "a plugin method cannot be `unsafe`",
            ));
        }
        if let Some(abi) = &sig.abi {
            return Err(syn::Error::new(
                abi.span(),
                "declare the method as plain Rust: the macro writes the `extern \"C\"` side",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            return Err(syn::Error::new(
                variadic.span(),
                "a plugin method cannot be variadic",
            ));
        }
        if let Some(param) = sig.generics.params.first() {
            return Err(syn::Error::new(
                param.span(),
                "a plugin method cannot be generic: the host must know every type when it is \
                 compiled; use a concrete type",
            ));
        }
        if let Some(clause) = &sig.generics.where_clause {
            return Err(syn::Error::new(
                clause.span(),
                "a plugin method cannot have a `where` clause",
            ));
        }
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(receiver))
                if receiver.reference.is_some()
                    && receiver.mutability.is_none()
                    && receiver.colon_token.is_none() =>
            {
                if let Some((_, Some(lifetime))) = &receiver.reference {
                    return Err(syn::Error::new(
                        lifetime.span(),
                        "write `&self`, without a lifetime",
                    ));
                }
            }
            Some(FnArg::Receiver(receiver)) if receiver.mutability.is_some() => {
                return Err(syn::Error::new(
                    receiver.span(),
                    "a plugin method takes `&self`, not `&mut self`: the host may call from \
                     several threads at once, so keep mutable state behind a `Mutex` or atomics",
                ));
            }
            Some(other) => {
                return Err(syn::Error::new(
                    other.span(),
                    "a plugin method takes `&self`: the plugin's state is created by `init` and \
                     shared by every call",
                ));
            }
            None => {
                return Err(syn::Error::new(
                    sig.ident.span(),
                    "a plugin method takes `&self`: add it as the first argument",
                ));
            }
        }
        // Every argument's and the result's mistakes, together.
        let mut errors = Errors::default();
        let mut args = Vec::new();
        for (i, input) in inputs.enumerate() {
            let FnArg::Typed(typed) = input else {
                unreachable!("only the first argument can be a receiver")
            };
            let (ident, name) = match &*typed.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => (
                    quote::format_ident!("__arg_{}", unraw(&pat.ident)),
                    pat.ident.clone(),
                ),
                _ => {
                    let ident = quote::format_ident!("__dropin_arg{}", i);
                    (ident.clone(), ident)
                }
            };
            let kind = match ty::check(&typed.ty, Position::Argument) {
                Ok(kind) => kind,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            args.push(Arg {
                ident,
                name,
                ty: (*typed.ty).clone(),
                kind,
            });
        }
        let (ret, fallible) = match &sig.output {
            ReturnType::Default => (syn::parse_quote!(()), false),
            ReturnType::Type(_, output) => match result_ok_type(output) {
                Some(ok) => (ok, true),
                None => ((**output).clone(), false),
            },
        };
        if let Err(error) = ty::check(&ret, Position::Owned) {
            errors.push(error);
        }
        if let Some(asyncness) = &sig.asyncness {
            if let Some(arg) = args
                .iter()
                .find(|arg| matches!(arg.kind, Kind::Lent | Kind::Given))
            {
                errors.push(syn::Error::new(
                    arg.ty.span(),
                    "an `async fn` cannot take the application's object yet: take it in a \
                     synchronous method",
                ));
            }
            if ty::holds_object(&ret) {
                errors.push(syn::Error::new(
                    asyncness.span(),
                    "an `async fn` cannot return an object yet: return it from a synchronous \
                     method",
                ));
            }
        }
        errors.result()?;
        let mut since = None;
        let mut error = None;
        function.attrs.retain(|attr| {
            if !attr.path().is_ident("since") {
                return true;
            }
            match parse_since(attr) {
                Ok(version) if since.is_none() => since = Some(version),
                Ok(_) => error = Some(syn::Error::new(attr.span(), "more than one `#[since]`")),
                Err(e) => error = Some(e),
            }
            false
        });
        if let Some(error) = error {
            return Err(error);
        }
        let docs = function
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc"))
            .cloned()
            .collect();
        Ok(Self {
            docs,
            ident,
            args,
            ret,
            fallible,
            output: sig.output.clone(),
            asyncness: sig.asyncness,
            required: since.as_deref().is_none_or(|since| since == first_version),
            since: since.unwrap_or_else(|| first_version.to_owned()),
        })
    }
}

/// Mistakes gathered while parsing, to report at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Err` with every mistake, if there was one.
    fn result(&mut self) -> syn::Result<()> {
        self.0.take().map_or(Ok(()), Err)
    }
}

/// The `T` of a `Result<T, E>` (or `Result<T>`) return type whose error
/// crosses as its message.
fn result_ok_type(output: &Type) -> Option<Type> {
    let Type::Path(path) = output else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        syn::GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    });
    let ok = types.next()?;
    // `Result<T, dropin::BoxError>`, or an alias such as `io::Result<T>`:
    // the error crosses as its message, a framework failure. Any other
    // `Result<T, E>` is a value: `E` derives `dropin::Stable`, and the
    // application matches on it.
    match types.next() {
        None => Some(ok),
        Some(error) if carries_message(&error) => Some(ok),
        Some(_) => None,
    }
}

/// Whether an error type crosses as its message: `BoxError` (any path to
/// it) or a `Box<dyn Error ..>`.
fn carries_message(error: &Type) -> bool {
    let Type::Path(path) = error else {
        return false;
    };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    if last.ident == "BoxError" {
        return true;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    last.ident == "Box"
        && matches!(
            args.args.first(),
            Some(syn::GenericArgument::Type(Type::TraitObject(_)))
        )
}

/// `#[since("2.1")]` or `#[since = "2.1"]`, normalised to `2.1.0`.
fn parse_since(attr: &Attribute) -> syn::Result<String> {
    let lit: LitStr = match &attr.meta {
        syn::Meta::List(list) => list.parse_args()?,
        syn::Meta::NameValue(pair) => match &pair.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(lit),
                ..
            }) => lit.clone(),
            other => return Err(syn::Error::new(other.span(), "expected a version string")),
        },
        syn::Meta::Path(path) => {
            return Err(syn::Error::new(
                path.span(),
                "expected `#[since(\"1.1\")]`: the interface version that added the method",
            ));
        }
    };
    let (major, minor, patch) = parse_version(&lit.value()).ok_or_else(|| {
        syn::Error::new(
            lit.span(),
            "expected the interface version that added the method, such as \"1.1\"",
        )
    })?;
    Ok(format!("{major}.{minor}.{patch}"))
}

/// `1`, `1.2` or `1.2.3` (a pre-release or build suffix is ignored).
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// The trait without `#[since]` attributes, for the fallback after an error.
pub fn strip_since(mut item: ItemTrait) -> ItemTrait {
    for trait_item in &mut item.items {
        if let TraitItem::Fn(function) = trait_item {
            function.attrs.retain(|attr| !attr.path().is_ident("since"));
        }
    }
    item
}

/// The visibility of the generated items: the trait's.
pub fn visibility(item: &ItemTrait) -> &Visibility {
    &item.vis
}

/// The identifier without `r#`.
pub fn unraw(ident: &Ident) -> String {
    use syn::ext::IdentExt;
    ident.unraw().to_string()
}
