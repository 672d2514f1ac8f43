//! What `#[dropin::interface]` expands to.
//!
//! For a trait `Greeter`:
//! - the trait, with `fn init(context) -> Result<Self, BoxError>` and
//!   `fn save_state(&self)` (by default, saving nothing) added;
//! - `GreeterPlugin`, the application's typed handle;
//! - `export_greeter!`, the plugin author's export macro;
//! - a hidden module `__dropin_greeter`: the `extern "C"` signature of each
//!   method, their descriptors, and the functions a plugin exports, generic
//!   over the plugin's type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, spanned::Spanned};

use crate::{
    ast::{Arg, Interface, Method, unraw, visibility},
    ty::Kind,
};

pub fn interface(interface: &Interface) -> TokenStream {
    let mut item = interface.item.clone();
    let trait_ident = &item.ident;
    let vis = visibility(&interface.item);
    let snake = snake_case(&unraw(trait_ident));
    let hidden = format_ident!("__dropin_{}", snake);
    let export = format_ident!("export_{}", snake);
    let export_name = export.to_string();
    let handle = format_ident!("{}Plugin", trait_ident);

    item.items.insert(
        0,
        syn::parse_quote! {
            /// Creates the plugin's state. Called once, when the host loads the
            /// library, after every check passed and the log bridge is
            /// installed; an error (or a panic) makes the host reject the
            /// plugin. Added to every interface by `#[dropin::interface]`.
            ///
            /// # Errors
            ///
            /// Whatever prevents the plugin from working, such as a bad
            /// configuration.
            fn init(context: &::dropin::Context<'_>) -> ::core::result::Result<Self, ::dropin::BoxError>
            where
                Self: Sized;
        },
    );
    item.items.insert(
        1,
        syn::parse_quote! {
            /// Saves the plugin's state for the build that replaces it when
            /// the host reloads the plugin: that build's `init` finds it in
            /// [`Context::previous_state`](::dropin::Context::previous_state).
            /// By default nothing is saved and the next build starts
            /// afresh. Added to every interface by `#[dropin::interface]`.
            ///
            /// # Errors
            ///
            /// Whatever prevents saving; the host logs it and the next build
            /// starts afresh.
            fn save_state(&self) -> ::core::result::Result<::core::option::Option<::dropin::SavedState>, ::dropin::BoxError>
            where
                Self: Sized,
            {
                ::core::result::Result::Ok(::core::option::Option::None)
            }
        },
    );

    // `async fn m(..) -> T` is `fn m(..) -> impl Future<Output = T> + Send`
    // in the trait: the application may await it on any thread. A plugin
    // still implements it with `async fn`.
    for trait_item in &mut item.items {
        if let syn::TraitItem::Fn(function) = trait_item
            && function.sig.asyncness.take().is_some()
        {
            let output = match &function.sig.output {
                syn::ReturnType::Default => quote!(()),
                syn::ReturnType::Type(_, ty) => quote!(#ty),
            };
            function.sig.output = syn::parse_quote! {
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
            };
            if let Some(block) = &function.default {
                function.default = Some(syn::parse_quote!({ async move #block }));
            }
        }
    }

    let name = match &interface.name {
        Some(name) => quote!(#name),
        None => quote!(::core::env!("CARGO_PKG_NAME")),
    };
    let version = match &interface.version {
        Some(version) => quote!(#version),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };

    let fn_types = interface.methods.iter().map(fn_type);
    let descs = interface.methods.iter().map(method_desc);
    let entries = interface.methods.iter().enumerate().map(|(i, method)| {
        let ident = &method.ident;
        let alias = fn_alias(ident);
        let shim = format_ident!("__dropin_shim_{}", unraw(ident));
        quote! {
            __dropin_rt::MethodEntry {
                desc: __DROPIN_METHODS[#i],
                // SAFETY: a function pointer cast to the erased type the
                // entry stores; the host casts it back to its signature only
                // after comparing `METHODS[#i]` with its own.
                func: unsafe { __dropin_rt::transmute::<#alias, unsafe extern "C" fn()>(#shim::<__DropinPlugin>) },
            }
        }
    });
    let shims = interface
        .methods
        .iter()
        .map(|method| shim(trait_ident, method));
    let required = interface
        .methods
        .iter()
        .filter(|method| method.required)
        .count();
    // The methods of the first release are plain function pointers: every
    // plugin of the major has them (the loader checks `REQUIRED`). Later
    // ones are optional.
    let fields = interface.methods.iter().map(|method| {
        let ident = &method.ident;
        let alias = fn_alias(ident);
        if method.required {
            quote!(#ident: #hidden::#alias)
        } else {
            quote!(#ident: ::core::option::Option<#hidden::#alias>)
        }
    });
    let binds = interface.methods.iter().enumerate().map(|(i, method)| {
        let ident = &method.ident;
        let alias = fn_alias(ident);
        let cast = quote! {
            // SAFETY: the caller compared this entry's descriptor with
            // `METHODS[#i]`, which describes this signature.
            unsafe { #hidden::__dropin_rt::transmute::<unsafe extern "C" fn(), #hidden::#alias>(entry.func) }
        };
        if method.required {
            // Indexing, not `get`: a table without it panics rather than binds.
            quote!(#ident: { let entry = &methods[#i]; #cast })
        } else {
            quote! {
                #ident: match methods.get(#i) {
                    ::core::option::Option::Some(entry) => ::core::option::Option::Some(#cast),
                    ::core::option::Option::None => ::core::option::Option::None,
                }
            }
        }
    });
    let calls = interface
        .methods
        .iter()
        .enumerate()
        .map(|(i, method)| handle_method(vis, &hidden, i, method));
    let remote_binds = interface.methods.iter().enumerate().map(|(i, method)| {
        let ident = &method.ident;
        let alias = fn_alias(ident);
        let trap = quote! {
            // SAFETY: a function pointer cast to another function pointer
            // type. It is never called: every method of a handle with a
            // remote sends the call to its remote before reaching it.
            unsafe { #hidden::__dropin_rt::transmute::<extern "C" fn(), #hidden::#alias>(#hidden::__dropin_rt::trap) }
        };
        if method.required {
            quote!(#ident: #trap)
        } else {
            quote! {
                #ident: if #i < provided {
                    ::core::option::Option::Some(#trap)
                } else {
                    ::core::option::Option::None
                }
            }
        }
    });
    let dispatch = dispatch(
        interface
            .methods
            .iter()
            .enumerate()
            .map(|(i, method)| serve_arm(i, method)),
        "the interface has no method number",
    );
    // The services a plugin of this interface may call, for descriptions.
    let (services_name, services_descs) = match &interface.services {
        Some(services) => {
            let services_handle = format_ident!("{}Handle", services);
            (
                quote!(<#services_handle as ::dropin::ServicesHandle>::NAME),
                quote!(<#services_handle as ::dropin::ServicesHandle>::SERVICES),
            )
        }
        None => (quote!(""), quote!(&[])),
    };
    let remote_services = match &interface.services {
        Some(services) => {
            let services_handle = format_ident!("{}Handle", services);
            quote! {
                fn remote_services(
                    client: ::std::boxed::Box<dyn #hidden::__dropin_rt::ServiceClient>,
                ) -> ::core::option::Option<&'static #hidden::__dropin_rt::RawServices> {
                    ::core::option::Option::Some(#services_handle::remote_table(client))
                }
            }
        }
        None => quote!(),
    };
    let handle_doc = format!(
        "A loaded plugin of the [`{trait_ident}`] interface: the application's typed handle.\n\n\
         Each method of the trait is a method here that calls into the plugin and returns \
         `Result<T, dropin::CallError>` (each `String` of the result, alone or in an `Option`, a \
         `Result`'s value, a `Vec`, a tuple, an array or a map, comes back as a `dropin::Text`, \
         without a copy). Load plugins with `dropin_host::Loader::<{handle}>`."
    );
    let export_doc = format!(
        "Exports a type implementing [`{trait_ident}`] as this library's plugin.\n\n\
         ```text\n{export}!(MyPlugin);\n\
         {export}!(MyPlugin, name = \"mine\", version = \"1.2.0\", host = \">=1.0, <2\");\n```\n\n\
         Invoke it once per `cdylib`, at the crate root. `name` defaults to the package name, \
         `version` to the package version; `host`, a semver requirement on the host \
         application's version, defaults to any host. Given in that order. A name with \
         whitespace or an unparsable requirement fails to compile."
    );

    quote! {
        #item

        #[doc = #handle_doc]
        #vis struct #handle {
            core: ::dropin::PluginCore,
            #(#fields,)*
        }

        impl #handle {
            #(#calls)*
        }

        impl ::core::fmt::Debug for #handle {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(&self.core, f)
            }
        }

        // SAFETY: `bind` casts each entry to the signature `METHODS` describes
        // at the same index; the loader compared the descriptors first.
        unsafe impl ::dropin::Interface for #handle {
            const NAME: &'static str = #name;
            const VERSION: &'static str = #version;
            const EXPORT_MACRO: &'static str = #export_name;
            const METHODS: &'static [::dropin::MethodDesc] = #hidden::__DROPIN_METHODS;
            const REQUIRED: usize = #required;

            unsafe fn bind(
                core: ::dropin::PluginCore,
                methods: &'static [#hidden::__dropin_rt::MethodEntry],
            ) -> Self {
                Self {
                    core,
                    #(#binds,)*
                }
            }

            fn core(&self) -> &::dropin::PluginCore {
                &self.core
            }

            fn application_description() -> &'static [u8] {
                &#hidden::__DROPIN_APPLICATION
            }

            #remote_services

            unsafe fn bind_remote(core: ::dropin::PluginCore, provided: usize) -> Self {
                Self {
                    core,
                    #(#remote_binds,)*
                }
            }

            fn serve(
                &self,
                method: usize,
                input: &[u8],
                out: &mut ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), ::dropin::wire::WireError> {
                #dispatch
            }
        }

        #[doc = #export_doc]
        #[macro_export]
        macro_rules! #export {
            ($plugin:ty $(, $key:ident = $value:expr)* $(,)?) => {
                $crate::#hidden::__dropin_rt::export! {
                    exports = $crate::#hidden::__DropinExports<$plugin>,
                    plugin = $plugin
                    $(, $key = $value)*
                }
            };
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types, non_snake_case, unused_imports, missing_docs, clippy::type_complexity)]
        #vis mod #hidden {
            use super::*;
            pub use ::dropin::__private as __dropin_rt;

            #(#fn_types)*

            /// The methods, in declaration order.
            pub const __DROPIN_METHODS: &[::dropin::MethodDesc] = &[#(#descs),*];

            /// The interface as an application built with it has it: read
            /// from the application's executable by tools, which run none
            /// of it. Linked only into programs whose loader refers to it.
            const __DROPIN_APPLICATION_PARTS: __dropin_rt::DescriptionParts = __dropin_rt::DescriptionParts {
                magic: __dropin_rt::APPLICATION_MAGIC,
                plugin_name: "",
                plugin_version: "",
                interface_name: #name,
                interface_version: #version,
                dropin_version: __dropin_rt::DROPIN_VERSION,
                host_requirement: "",
                arch: ::std::env::consts::ARCH,
                os: ::std::env::consts::OS,
                panic_abort: ::core::cfg!(panic = "abort"),
                debug_assertions: ::core::cfg!(debug_assertions),
                methods: __dropin_rt::DescribedMethods::Declared(__DROPIN_METHODS),
                services_name: #services_name,
                services: #services_descs,
            };
            const __DROPIN_APPLICATION_LEN: usize = __dropin_rt::description_len(&__DROPIN_APPLICATION_PARTS);
            #[cfg_attr(target_vendor = "apple", unsafe(link_section = "__DATA,__dropin_app"))]
            #[cfg_attr(windows, unsafe(link_section = ".dropapp"))]
            #[cfg_attr(not(any(target_vendor = "apple", windows)), unsafe(link_section = ".dropin_app"))]
            pub static __DROPIN_APPLICATION: [u8; __DROPIN_APPLICATION_LEN] =
                __dropin_rt::encode_description::<__DROPIN_APPLICATION_LEN>(&__DROPIN_APPLICATION_PARTS);

            /// What a plugin of type `P` exports.
            pub struct __DropinExports<__DropinPlugin>(::core::marker::PhantomData<__DropinPlugin>);

            impl<__DropinPlugin: #trait_ident + __dropin_rt::Exported> __dropin_rt::Exports
                for __DropinExports<__DropinPlugin>
            {
                type Plugin = __DropinPlugin;
                const INTERFACE_NAME: &'static str = #name;
                const INTERFACE_VERSION: &'static str = #version;
                const METHODS: &'static [__dropin_rt::MethodEntry] = &[#(#entries),*];
                const SERVICES_NAME: &'static str = #services_name;
                const SERVICES: &'static [::dropin::MethodDesc] = #services_descs;

                fn init(context: &::dropin::Context<'_>) -> ::core::result::Result<__DropinPlugin, ::dropin::BoxError> {
                    <__DropinPlugin as #trait_ident>::init(context)
                }

                fn save(plugin: &__DropinPlugin) -> ::core::result::Result<::core::option::Option<::dropin::SavedState>, ::dropin::BoxError> {
                    <__DropinPlugin as #trait_ident>::save_state(plugin)
                }
            }

            #(#shims)*
        }
    }
}

/// The representation of an argument at the boundary.
pub(crate) fn ffi_arg(arg: &crate::ast::Arg) -> TokenStream {
    let ty = &arg.ty;
    match arg.kind {
        Kind::Str => quote!(__dropin_rt::RStr<'_>),
        Kind::Bytes => quote!(__dropin_rt::RSlice<'_, u8>),
        Kind::OptionStr => quote!(__dropin_rt::ROption<__dropin_rt::RStr<'_>>),
        Kind::OptionBytes => quote!(__dropin_rt::ROption<__dropin_rt::RSlice<'_, u8>>),
        Kind::Value | Kind::Given => quote_spanned!(ty.span()=> <#ty as ::dropin::Stable>::Ffi),
        Kind::Lent => quote!(__dropin_rt::RawObject),
        Kind::Slice => {
            let vec = slice_vec(arg);
            quote_spanned!(ty.span()=> <#vec as ::dropin::Stable>::Ffi)
        }
    }
}

/// `Vec<T>` for an argument `&[T]`, whose items cross in one.
fn slice_vec(arg: &Arg) -> TokenStream {
    let item = crate::ty::slice_item(&arg.ty).expect("a slice argument");
    quote!(::std::vec::Vec<#item>)
}

/// Encodes the argument `arg` into `args`, as a call to another process
/// carries it: each value as itself, a slice's items as a `Vec` of them.
pub(crate) fn encode_arg(arg: &Arg) -> TokenStream {
    let ident = &arg.ident;
    match arg.kind {
        Kind::Slice => quote!(::dropin::wire::encode_items(#ident, args);),
        _ => quote!(::dropin::wire::Encode::encode(&#ident, args);),
    }
}

/// `Box<dyn Trait>` for an argument that passes the application's object
/// (`&dyn Trait` or `Box<dyn Trait>`).
pub(crate) fn object_box(arg: &Arg) -> TokenStream {
    let ty = &arg.ty;
    match crate::ty::lent_trait(ty) {
        Some(path) => quote_spanned!(ty.span()=> ::std::boxed::Box<dyn #path>),
        None => quote!(#ty),
    }
}

/// The name of the pointer to a lent object, which outlives the call.
fn fat(arg: &Arg) -> Ident {
    format_ident!("__dropin_fat{}", arg.ident)
}

/// The name of the number an isolated plugin's process knows an
/// application's object by.
fn callback_id(arg: &Arg) -> Ident {
    format_ident!("__dropin_id{}", arg.ident)
}

/// Before a handle's call: a pointer to each lent object, which the call
/// borrows (its lifetime erased: the object is lent only until the call
/// returns).
pub(crate) fn lent_pointers(method: &Method) -> TokenStream {
    let lent = method.args.iter().filter(|arg| arg.kind == Kind::Lent).map(|arg| {
        let ident = &arg.ident;
        let fat = fat(arg);
        let path = crate::ty::lent_trait(&arg.ty).expect("a lent object");
        quote! {
            // SAFETY: the same pointer, its lifetime erased: it is read only
            // until the call returns, while the object is borrowed.
            let #fat: *const (dyn #path + 'static) = unsafe {
                ::dropin::__private::transmute::<*const (dyn #path + '_), *const (dyn #path + 'static)>(#ident)
            };
        }
    });
    quote!(#(#lent)*)
}

/// In a handle's call to another process: each application's object kept
/// for that process by number (a lent one until the call returns), and
/// every argument encoded, objects as their numbers.
pub(crate) fn remote_args(method: &Method, remote: &TokenStream) -> (TokenStream, TokenStream) {
    let kept = method.args.iter().filter_map(|arg| {
        let ident = &arg.ident;
        let id = callback_id(arg);
        let boxed = object_box(arg);
        match arg.kind {
            Kind::Lent => {
                let fat = fat(arg);
                Some(quote! {
                    // SAFETY: `#fat` outlives the lending, which ends with
                    // the call.
                    let #id = unsafe { __dropin_lending.lend::<#boxed>((&raw const #fat).cast()) };
                })
            }
            Kind::Given => Some(quote!(let #id = __dropin_lending.give::<#boxed>(#ident);)),
            _ => None,
        }
    });
    let lending = if method
        .args
        .iter()
        .any(|arg| matches!(arg.kind, Kind::Lent | Kind::Given))
    {
        quote! {
            let mut __dropin_lending = ::dropin::__private::Lending::new(#remote);
            #(#kept)*
        }
    } else {
        quote!()
    };
    let encodes = method.args.iter().map(|arg| match arg.kind {
        Kind::Lent | Kind::Given => {
            let id = callback_id(arg);
            quote!(::dropin::wire::Encode::encode(&#id, args);)
        }
        _ => encode_arg(arg),
    });
    (lending, quote!(#(#encodes)*))
}

/// The descriptor of an argument's type.
pub(crate) fn arg_desc(arg: &crate::ast::Arg) -> TokenStream {
    let ty = &arg.ty;
    match arg.kind {
        Kind::Str => quote!(<&'static str as ::dropin::Stable>::DESC),
        Kind::Bytes => quote!(<&'static [u8] as ::dropin::Stable>::DESC),
        Kind::OptionStr => quote!(<::core::option::Option<&'static str> as ::dropin::Stable>::DESC),
        Kind::OptionBytes => {
            quote!(<::core::option::Option<&'static [u8]> as ::dropin::Stable>::DESC)
        }
        Kind::Value | Kind::Given => quote_spanned!(ty.span()=> <#ty as ::dropin::Stable>::DESC),
        // The items cross in a `Vec`, whose descriptor they share.
        Kind::Slice => {
            let vec = slice_vec(arg);
            quote_spanned!(ty.span()=> <#vec as ::dropin::Stable>::DESC)
        }
        Kind::Lent => {
            let boxed = object_box(arg);
            quote_spanned!(ty.span()=> <#boxed as ::dropin::__private::ObjectBox>::LENT)
        }
    }
}

pub(crate) fn ffi_ret(method: &Method) -> TokenStream {
    let ret = &method.ret;
    if method.asyncness.is_some() {
        return quote_spanned!(ret.span()=> __dropin_rt::RResult<__dropin_rt::FfiStart<<#ret as ::dropin::Stable>::Ffi>, __dropin_rt::RawError>);
    }
    quote_spanned!(ret.span()=> __dropin_rt::RResult<<#ret as ::dropin::Stable>::Ffi, __dropin_rt::RawError>)
}

/// `pub type __dropin_fn_greet = extern "C" fn(..) -> RResult<..>;`
fn fn_type(method: &Method) -> TokenStream {
    let alias = fn_alias(&method.ident);
    let args = method
        .args
        .iter()
        .map(ffi_arg)
        .chain(async_param_types(method));
    let ret = ffi_ret(method);
    quote! {
        pub type #alias = extern "C" fn(#(#args),*) -> #ret;
    }
}

/// For an `async fn`, the types of the boundary function's last
/// parameters: the room for the plugin's future and the task's waker.
pub(crate) fn async_param_types(method: &Method) -> Vec<TokenStream> {
    match method.asyncness {
        Some(_) => vec![
            quote!(*mut __dropin_rt::c_void),
            quote!(*const __dropin_rt::FfiWaker),
        ],
        None => Vec::new(),
    }
}

/// The name of a method's `extern "C"` signature in the hidden module:
/// prefixed, so that it shadows no type the signatures name (`fn bool`).
fn fn_alias(ident: &Ident) -> Ident {
    format_ident!("__dropin_fn_{}", unraw(ident))
}

pub(crate) fn method_desc(method: &Method) -> TokenStream {
    let name = unraw(&method.ident);
    let since = &method.since;
    let args = method.args.iter().map(arg_desc);
    let ret = &method.ret;
    let ret = if method.asyncness.is_some() {
        quote!(__dropin_rt::Async::<#ret>::DESC)
    } else {
        quote!(<#ret as ::dropin::Stable>::DESC)
    };
    quote! {
        ::dropin::MethodDesc {
            name: __dropin_rt::RStr::from_str(#name),
            since: __dropin_rt::RStr::from_str(#since),
            args: __dropin_rt::RSlice::from_slice(&[#(#args),*]),
            ret: #ret,
        }
    }
}

/// The plugin's `extern "C"` function for one method, generic over the
/// plugin's type: converts the arguments, calls the trait method under the
/// guard, converts the result or the error.
fn shim(trait_ident: &Ident, method: &Method) -> TokenStream {
    if method.asyncness.is_some() {
        return async_shim(trait_ident, method);
    }
    let ident = &method.ident;
    let shim = format_ident!("__dropin_shim_{}", unraw(ident));
    let params = ffi_params(method);
    let values = from_ffi_values(method);
    let ret = ffi_ret(method);
    let body = into_boundary(
        method,
        &quote!(<__DropinPlugin as #trait_ident>::#ident(plugin, #(#values),*)),
    );
    quote! {
        pub extern "C" fn #shim<__DropinPlugin: #trait_ident + __dropin_rt::Exported>(#(#params),*) -> #ret {
            __dropin_rt::call::<__DropinPlugin, _>(|plugin| #body)
        }
    }
}

/// What the method's result `call` gives, as it crosses: `Ok` of its
/// representation, or, for a method whose error is a message, the error's
/// message (formatted inside the guard, as `call` runs).
pub(crate) fn into_boundary(method: &Method, call: &TokenStream) -> TokenStream {
    if method.fallible {
        quote! {
            match #call {
                ::core::result::Result::Ok(value) => {
                    ::core::result::Result::Ok(::dropin::Stable::into_ffi(value))
                }
                ::core::result::Result::Err(error) => ::core::result::Result::Err(__dropin_rt::failed(error)),
            }
        }
    } else {
        quote!(::core::result::Result::Ok(::dropin::Stable::into_ffi(#call)))
    }
}

/// The plugin's `extern "C"` function for an `async fn` method: converts
/// the arguments, and returns the plugin's future, which calls the trait
/// method when first polled and converts its output. The arguments the
/// call borrows are the application's future's, which outlives this one.
fn async_shim(trait_ident: &Ident, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let shim = format_ident!("__dropin_shim_{}", unraw(ident));
    let params = ffi_params(method);
    let ret = ffi_ret(method);
    let future = async_future(
        method,
        |passes| quote!(<__DropinPlugin as #trait_ident>::#ident(plugin, #(#passes),*)),
    );
    quote! {
        pub extern "C" fn #shim<__DropinPlugin: #trait_ident + __dropin_rt::Exported>(#(#params),*) -> #ret {
            __dropin_rt::call_static::<__DropinPlugin, _>(|plugin| { #future })
        }
    }
}

/// In the plugin's function of an `async fn`: the arguments kept for the
/// future, and the future as it crosses (`Ok` of it), which awaits the
/// future `call` makes of the arguments and converts its output.
pub(crate) fn async_future(
    method: &Method,
    call: impl FnOnce(&[TokenStream]) -> TokenStream,
) -> TokenStream {
    let kept = per_arg(
        method,
        |Arg {
             ident, ty, kind, ..
         }| {
            let value = match kind {
                Kind::Str | Kind::Bytes => quote! {
                    // SAFETY: lent by the application's future, which drops
                    // this one before it lets go of its arguments.
                    unsafe { __dropin_rt::extend(<#ty as ::dropin::Stable>::from_ffi(#ident)) }
                },
                Kind::OptionStr | Kind::OptionBytes => quote! {
                    // SAFETY: as above.
                    unsafe { __dropin_rt::extend_option(<#ty as ::dropin::Stable>::from_ffi(#ident)) }
                },
                Kind::Slice => {
                    let item = crate::ty::slice_item(ty).expect("a slice argument");
                    quote!(<::std::vec::Vec<#item> as ::dropin::Stable>::from_ffi(#ident))
                }
                // Refused by the parser.
                Kind::Value | Kind::Lent | Kind::Given => {
                    quote!(<#ty as ::dropin::Stable>::from_ffi(#ident))
                }
            };
            quote!(let #ident = #value;)
        },
    );
    let passes = per_arg(method, |Arg { ident, kind, .. }| match kind {
        Kind::Slice => quote!(#ident.as_slice()),
        _ => quote!(#ident),
    });
    let call = call(&passes);
    let call = quote!(#call.await);
    let output = into_boundary(method, &call);
    quote! {
        #(#kept)*
        __dropin_rt::start_ffi_future(async move { #output }, __dropin_room, __dropin_waker)
    }
}

/// The handle's method for an `async fn`: starts the call, and returns the
/// future the application awaits, which borrows the handle and the
/// borrowed arguments until it is dropped.
fn async_handle_method(
    vis: &syn::Visibility,
    hidden: &Ident,
    index: usize,
    method: &Method,
) -> TokenStream {
    let ident = &method.ident;
    let alias = fn_alias(ident);
    let name = unraw(ident);
    let since = &method.since;
    let docs = &method.docs;
    let (params, rebinds) = public_params(method, |ty| {
        let ty = with_lifetime(ty);
        quote!(#ty)
    });
    let values = into_ffi_values(method);
    let ret = &method.ret;
    let encodes = method.args.iter().map(encode_arg);
    let (output, convert) = crate::ty::handle_output(ret);
    let (function, missing) = if method.required {
        (
            quote!(let function: ::core::option::Option<#hidden::#alias> = ::core::option::Option::Some(self.#ident);),
            quote!(),
        )
    } else {
        (
            quote!(let function: ::core::option::Option<#hidden::#alias> = self.#ident;),
            quote! {
                if function.is_none() {
                    return ::dropin::PluginFuture::failed(
                        self.core.state(),
                        self.core.missing(#name, #since),
                        convert,
                    );
                }
            },
        )
    };
    let note = "\n\n# Errors\n\nThe future's output is a `dropin::CallError` if the plugin \
                failed or panicked (which disables it), is disabled, or lacks the method. The \
                call starts at the first poll; dropping the future cancels it: the plugin's \
                future is dropped.";
    quote! {
        #(#docs)*
        #[doc = #note]
        #[allow(clippy::type_complexity)]
        #[inline]
        #vis fn #ident<'__dropin>(&'__dropin self, #(#params),*) -> impl ::core::future::Future<Output = ::core::result::Result<#output, ::dropin::CallError>> + ::core::marker::Send + '__dropin {
            #rebinds
            let convert = #convert;
            #function
            // The arguments as another process gets them, before the call
            // takes them.
            let encoded = self.core.remote().map(|_| {
                let mut encoded = ::std::vec::Vec::new();
                let args = &mut encoded;
                #(#encodes)*
                encoded
            });
            let start = move |room: *mut #hidden::__dropin_rt::c_void, waker: *const #hidden::__dropin_rt::FfiWaker| {
                let function = function.expect("a method the plugin has");
                function(#(#values,)* room, waker)
            };
            #missing
            if let (::core::option::Option::Some(remote), ::core::option::Option::Some(encoded)) =
                (self.core.remote(), encoded)
            {
                return self.core.call_remote_async(remote, #index, encoded, convert);
            }
            ::dropin::PluginFuture::start(self.core.state(), start, convert)
        }
    }
}

/// `ty` with every elided reference lifetime named `'__dropin`: an
/// `async fn`'s future borrows its arguments.
pub(crate) fn with_lifetime(ty: &syn::Type) -> syn::Type {
    fn name(ty: &mut syn::Type) {
        match ty {
            syn::Type::Reference(reference) => {
                if reference.lifetime.is_none() {
                    reference.lifetime = Some(syn::parse_quote!('__dropin));
                }
                name(&mut reference.elem);
            }
            syn::Type::Path(path) => {
                for segment in &mut path.path.segments {
                    if let syn::PathArguments::AngleBracketed(args) = &mut segment.arguments {
                        for arg in &mut args.args {
                            if let syn::GenericArgument::Type(ty) = arg {
                                name(ty);
                            }
                        }
                    }
                }
            }
            syn::Type::Slice(slice) => name(&mut slice.elem),
            syn::Type::Array(array) => name(&mut array.elem),
            syn::Type::Tuple(tuple) => tuple.elems.iter_mut().for_each(name),
            syn::Type::Paren(inner) => name(&mut inner.elem),
            syn::Type::Group(inner) => name(&mut inner.elem),
            _ => {}
        }
    }
    let mut ty = ty.clone();
    name(&mut ty);
    ty
}

/// The handle's method: checks the plugin has it, calls through the
/// function pointer, converts the result.
fn handle_method(
    vis: &syn::Visibility,
    hidden: &Ident,
    index: usize,
    method: &Method,
) -> TokenStream {
    if method.asyncness.is_some() {
        return async_handle_method(vis, hidden, index, method);
    }
    let ident = &method.ident;
    let alias = fn_alias(ident);
    let name = unraw(ident);
    let since = &method.since;
    let docs = &method.docs;
    let (params, rebinds) = public_params(method, |ty| quote!(#ty));
    let values = into_ffi_values(method);
    let ret = &method.ret;
    let lent = lent_pointers(method);
    let (lending, encodes) = remote_args(method, &quote!(&*remote));
    let passes_objects = method
        .args
        .iter()
        .any(|arg| matches!(arg.kind, Kind::Lent | Kind::Given));
    let settle = passes_objects.then(|| quote!(__dropin_lending.settle(&result);));
    let call_remote = if passes_objects {
        quote!(call_remote_here)
    } else {
        quote!(call_remote)
    };
    let (output, convert, remote) = match crate::ty::Shape::of(ret) {
        Ok(Some(shape)) => {
            let plugin = quote!(self.core.state());
            let output = shape.handle_type();
            let conversion = shape.convert_ffi(&quote!(value), &plugin);
            let wire = shape.wire_type();
            let from_wire = shape.convert_wire(&quote!(value), &quote!(&remote), &plugin);
            let remote = quote! {
                if let ::core::option::Option::Some(remote) = self.core.shared_remote() {
                    #lending
                    let result = self
                        .core
                        .call_remote_here::<#wire>(&*remote, #index, |args| {
                            #encodes
                        });
                    #settle
                    return result.map(|value| #from_wire);
                }
            };
            (output, quote!(|value| #conversion), remote)
        }
        Err(error) => {
            // Reported once, on the result's tokens.
            let error = error.to_compile_error();
            (quote!(#ret), quote!(|_| ::core::unreachable!()), error)
        }
        Ok(None) => {
            let (output, convert) = crate::ty::handle_output(ret);
            let remote = quote! {
                if let ::core::option::Option::Some(remote) = self.core.remote() {
                    #lending
                    // The application's objects are kept by this
                    // generation's process: such a call is never forwarded
                    // to a newer one.
                    let result = self.core.#call_remote::<#output>(remote, #index, |args| {
                        #encodes
                    });
                    #settle
                    return result;
                }
            };
            (output, convert, remote)
        }
    };
    let note = if method.required {
        "\n\n# Errors\n\n`dropin::CallError`: the plugin failed or panicked (which disables it), \
         or is disabled."
            .to_owned()
    } else {
        format!(
            "\n\n# Errors\n\n`dropin::CallError`: the plugin failed or panicked (which disables \
             it), is disabled, or predates this method (added in interface {since})."
        )
    };
    let function = if method.required {
        quote!(let function: #hidden::#alias = self.#ident;)
    } else {
        quote! {
            let ::core::option::Option::Some(function) = self.#ident else {
                return ::core::result::Result::Err(self.core.missing(#name, #since));
            };
        }
    };
    quote! {
        #(#docs)*
        #[doc = #note]
        #[inline]
        // The method's own result inside the framework's.
        #[allow(clippy::type_complexity)]
        #vis fn #ident(&self, #(#params),*) -> ::core::result::Result<#output, ::dropin::CallError> {
            #rebinds
            #function
            #lent
            #remote
            self.core.call(|| function(#(#values),*)).map(#convert)
        }
    }
}

/// `each` of the method's arguments, in order.
fn per_arg(method: &Method, each: impl FnMut(&Arg) -> TokenStream) -> Vec<TokenStream> {
    method.args.iter().map(each).collect()
}

/// `name: Type` for each argument, as declared: a handle method's
/// parameters.
pub(crate) fn typed_params(method: &Method) -> Vec<TokenStream> {
    per_arg(method, |Arg { ident, ty, .. }| quote!(#ident: #ty))
}

/// A handle method's parameters as the trait names them (its rustdoc shows
/// them), each type made by `ty`; and the statements that give each the
/// name the generated code uses, first thing in the body.
pub(crate) fn public_params(
    method: &Method,
    ty: impl Fn(&syn::Type) -> TokenStream,
) -> (Vec<TokenStream>, TokenStream) {
    let params = per_arg(method, |arg| {
        let name = &arg.name;
        let ty = ty(&arg.ty);
        quote!(#name: #ty)
    });
    let rebinds = method
        .args
        .iter()
        .map(|Arg { ident, name, .. }| quote!(let #ident = #name;));
    (params, quote!(#(#rebinds)*))
}

/// Each argument converted to its boundary representation.
pub(crate) fn into_ffi_values(method: &Method) -> Vec<TokenStream> {
    per_arg(method, |arg| {
        let Arg {
            ident, ty, kind, ..
        } = arg;
        if *kind == Kind::Lent {
            let boxed = object_box(arg);
            let fat = fat(arg);
            quote_spanned!(ty.span()=> <#boxed as ::dropin::__private::ObjectBox>::lend((&raw const #fat).cast()))
        } else if *kind == Kind::Slice {
            let vec = slice_vec(arg);
            quote!(<#vec as ::dropin::Stable>::into_ffi(#ident.to_vec()))
        } else {
            quote!(<#ty as ::dropin::Stable>::into_ffi(#ident))
        }
    })
}

/// `name: <ffi type>` for each argument: a boundary function's parameters.
pub(crate) fn ffi_params(method: &Method) -> Vec<TokenStream> {
    let mut params = per_arg(method, |arg| {
        let name = &arg.ident;
        let ffi = ffi_arg(arg);
        quote!(#name: #ffi)
    });
    if method.asyncness.is_some() {
        params.push(quote!(__dropin_room: *mut __dropin_rt::c_void));
        params.push(quote!(__dropin_waker: *const __dropin_rt::FfiWaker));
    }
    params
}

/// Each argument converted back from its boundary representation.
pub(crate) fn from_ffi_values(method: &Method) -> Vec<TokenStream> {
    per_arg(method, |arg| match &arg.kind {
        Kind::Lent => {
            let ident = &arg.ident;
            let boxed = object_box(arg);
            quote!(&*<#boxed as ::dropin::Stable>::from_ffi(#ident))
        }
        Kind::Slice => {
            let ident = &arg.ident;
            let vec = slice_vec(arg);
            quote!(<#vec as ::dropin::Stable>::from_ffi(#ident).as_slice())
        }
        kind => from_ffi_value(arg, kind),
    })
}

fn from_ffi_value(Arg { ident, ty, .. }: &Arg, kind: &Kind) -> TokenStream {
    match kind {
        Kind::Str => quote!(<&str as ::dropin::Stable>::from_ffi(#ident)),
        Kind::Bytes => quote!(<&[u8] as ::dropin::Stable>::from_ffi(#ident)),
        Kind::OptionStr => {
            quote!(<::core::option::Option<&str> as ::dropin::Stable>::from_ffi(#ident))
        }
        Kind::OptionBytes => {
            quote!(<::core::option::Option<&[u8]> as ::dropin::Stable>::from_ffi(#ident))
        }
        Kind::Value | Kind::Given | Kind::Lent | Kind::Slice => {
            quote!(<#ty as ::dropin::Stable>::from_ffi(#ident))
        }
    }
}

/// Each argument decoded from `input` as an owned value, then passed as
/// the method takes it: what serving a call from another process does.
pub(crate) fn decoded_args(method: &Method) -> (Vec<TokenStream>, Vec<TokenStream>) {
    let decodes = per_arg(method, |arg| {
        let Arg {
            ident, ty, kind, ..
        } = arg;
        if matches!(kind, Kind::Lent | Kind::Given) {
            let boxed = object_box(arg);
            let owned = *kind == Kind::Given;
            return quote! {
                let #ident = <#boxed as ::dropin::__private::ObjectBox>::remote(
                    <u64 as ::dropin::wire::Decode>::decode(&mut input)?,
                    #owned,
                );
            };
        }
        let owned = match kind {
            Kind::Str => quote!(::std::string::String),
            Kind::Bytes => quote!(::std::vec::Vec<u8>),
            Kind::OptionStr => quote!(::core::option::Option<::std::string::String>),
            Kind::OptionBytes => quote!(::core::option::Option<::std::vec::Vec<u8>>),
            Kind::Slice => slice_vec(arg),
            Kind::Value | Kind::Lent | Kind::Given => quote!(#ty),
        };
        quote!(let #ident = <#owned as ::dropin::wire::Decode>::decode(&mut input)?;)
    });
    let passes = per_arg(method, |Arg { ident, kind, .. }| match kind {
        Kind::Str => quote!(#ident.as_str()),
        Kind::Bytes | Kind::Slice => quote!(#ident.as_slice()),
        Kind::OptionStr | Kind::OptionBytes => quote!(#ident.as_deref()),
        Kind::Value | Kind::Given => quote!(#ident),
        Kind::Lent => quote!(&*#ident),
    });
    (decodes, passes)
}

/// The body of a `serve` function: decodes `input` for the method number
/// `method` with `arms`; an unknown number is `unknown` and the number.
pub(crate) fn dispatch(arms: impl Iterator<Item = TokenStream>, unknown: &str) -> TokenStream {
    let unknown = format!("{unknown} {{}}");
    quote! {
        let mut input = input;
        match method {
            #(#arms)*
            other => ::core::result::Result::Err(::dropin::wire::WireError(::std::format!(
                #unknown, other
            ))),
        }
    }
}

/// One arm of the handle's `serve`: decodes the arguments of method number
/// `index`, calls it, encodes the outcome.
pub(crate) fn serve_arm(index: usize, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let (decodes, passes) = decoded_args(method);
    // Objects stay in this process, kept by number for the host.
    let to_wire = match crate::ty::Shape::of(&method.ret) {
        Ok(Some(shape)) => {
            let to_wire = shape.to_wire(&quote!(value));
            quote!(let outcome = outcome.map(|value| #to_wire);)
        }
        Ok(None) => quote!(),
        // Reported where the handle's method is generated.
        Err(_) => {
            return quote!(#index => ::core::unreachable!(),);
        }
    };
    // An `async fn` is awaited on the thread that serves the call.
    let wait = method
        .asyncness
        .map(|_| {
            quote! {
                let ::core::option::Option::Some(outcome) = ::dropin::__private::block_on(outcome) else {
                    return ::core::result::Result::Err(::dropin::wire::WireError(
                        "the call was cancelled".to_owned(),
                    ));
                };
            }
        });
    quote! {
        #index => {
            #(#decodes)*
            let outcome = self.#ident(#(#passes),*);
            #wait
            #to_wire
            ::dropin::__private::encode_outcome(&outcome, out);
            ::core::result::Result::Ok(())
        }
    }
}

/// `TextTransform` → `text_transform`, `HTTPServer` → `http_server`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut snake = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let after_lower = i > 0 && !chars[i - 1].is_uppercase() && chars[i - 1] != '_';
            let before_lower = i > 0
                && chars[i - 1].is_uppercase()
                && chars.get(i + 1).is_some_and(|next| next.is_lowercase());
            if after_lower || before_lower {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    /// The parameters' names of method `method` of `impl #ty` in `file`.
    fn parameters(file: &syn::File, ty: &str, method: &str) -> Vec<String> {
        file.items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Impl(item)
                    if quote::quote!(#item)
                        .to_string()
                        .starts_with(&format!("impl {ty} ")) =>
                {
                    Some(item)
                }
                _ => None,
            })
            .flat_map(|item| &item.items)
            .find_map(|item| match item {
                syn::ImplItem::Fn(function) if function.sig.ident == method => Some(function),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no method `{method}` on `{ty}`"))
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                syn::FnArg::Typed(typed) => Some(quote::quote!(#typed).to_string()),
                syn::FnArg::Receiver(_) => None,
            })
            .collect()
    }

    #[test]
    fn handle_methods_name_their_parameters_as_the_trait_does() {
        let item: syn::ItemTrait = syn::parse_quote! {
            pub trait Greeter: Send + Sync {
                fn greet_to(&self, name: &str, mut times: u32, _: u8) -> String;
                async fn wait_for(&self, key: &str) -> String;
            }
        };
        let interface =
            crate::ast::Interface::parse(quote::quote!(name = "greeter"), item).unwrap();
        let file: syn::File = syn::parse2(super::interface(&interface)).unwrap();
        assert_eq!(
            parameters(&file, "GreeterPlugin", "greet_to"),
            ["name : & str", "times : u32", "__dropin_arg2 : u8"]
        );
        assert_eq!(
            parameters(&file, "GreeterPlugin", "wait_for"),
            ["key : & '__dropin str"]
        );
    }

    #[test]
    fn trait_names_become_snake_case_macro_names() {
        assert_eq!(snake_case("Greeter"), "greeter");
        assert_eq!(snake_case("TextTransform"), "text_transform");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("Io2Sink"), "io2_sink");
    }
}
