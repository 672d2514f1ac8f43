//! What `#[dropin::interface]` expands to.
//!
//! For a trait `Greeter`:
//! - the trait, with `fn init(context) -> Result<Self, BoxError>` added;
//! - `GreeterPlugin`, the application's typed handle;
//! - `export_greeter!`, the plugin author's export macro;
//! - a hidden module `__dropin_greeter`: the `extern "C"` signature of each
//!   method, their descriptors, and the functions a plugin exports, generic
//!   over the plugin's type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, spanned::Spanned};

use crate::{
    ast::{Interface, Method, visibility},
    ty::{Kind, is_string},
};

pub fn interface(interface: &Interface) -> TokenStream {
    let mut item = interface.item.clone();
    let trait_ident = &item.ident;
    let vis = visibility(&interface.item);
    let snake = snake_case(&trait_ident.to_string());
    let hidden = format_ident!("__dropin_{}", snake);
    let export = format_ident!("export_{}", snake);
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
        let shim = format_ident!("shim_{}", ident);
        quote! {
            rt::MethodEntry {
                desc: METHODS[#i],
                // SAFETY: a function pointer cast to the erased type the
                // entry stores; the host casts it back to `#ident` only after
                // comparing `METHODS[#i]` with its own.
                func: unsafe { rt::transmute::<#ident, unsafe extern "C" fn()>(#shim::<P>) },
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
        if method.required {
            quote!(#ident: #hidden::#ident)
        } else {
            quote!(#ident: ::core::option::Option<#hidden::#ident>)
        }
    });
    let binds = interface.methods.iter().enumerate().map(|(i, method)| {
        let ident = &method.ident;
        let cast = quote! {
            // SAFETY: the caller compared this entry's descriptor with
            // `METHODS[#i]`, which describes `#ident`'s signature.
            unsafe { #hidden::rt::transmute::<unsafe extern "C" fn(), #hidden::#ident>(entry.func) }
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
        .map(|method| handle_method(vis, &hidden, method));
    let handle_doc = format!(
        "A loaded plugin of the [`{trait_ident}`] interface: the application's typed handle.\n\n\
         Each method of the trait is a method here that calls into the plugin and returns \
         `Result<T, dropin::CallError>` (a `String` comes back as a `dropin::Text`, without a \
         copy). Load plugins with `dropin_host::Loader::<{handle}>`."
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
            const METHODS: &'static [::dropin::MethodDesc] = #hidden::METHODS;
            const REQUIRED: usize = #required;

            unsafe fn bind(
                core: ::dropin::PluginCore,
                methods: &'static [#hidden::rt::MethodEntry],
            ) -> Self {
                Self {
                    core,
                    #(#binds,)*
                }
            }

            fn core(&self) -> &::dropin::PluginCore {
                &self.core
            }
        }

        #[doc = #export_doc]
        #[macro_export]
        macro_rules! #export {
            ($plugin:ty $(, $key:ident = $value:expr)* $(,)?) => {
                $crate::#hidden::rt::export! {
                    exports = $crate::#hidden::Exports<$plugin>,
                    plugin = $plugin
                    $(, $key = $value)*
                }
            };
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types, non_snake_case, unused_imports, missing_docs)]
        #vis mod #hidden {
            use super::*;
            pub use ::dropin::__private as rt;

            #(#fn_types)*

            /// The methods, in declaration order.
            pub const METHODS: &[::dropin::MethodDesc] = &[#(#descs),*];

            /// What a plugin of type `P` exports.
            pub struct Exports<P>(::core::marker::PhantomData<P>);

            impl<P: #trait_ident + rt::Exported> rt::Exports for Exports<P> {
                type Plugin = P;
                const INTERFACE_NAME: &'static str = #name;
                const INTERFACE_VERSION: &'static str = #version;
                const METHODS: &'static [rt::MethodEntry] = &[#(#entries),*];

                fn init(context: &::dropin::Context<'_>) -> ::core::result::Result<P, ::dropin::BoxError> {
                    <P as #trait_ident>::init(context)
                }
            }

            #(#shims)*
        }
    }
}

/// The representation of an argument at the boundary.
fn ffi_arg(arg: &crate::ast::Arg) -> TokenStream {
    let ty = &arg.ty;
    match arg.kind {
        Kind::Str => quote!(rt::RStr<'_>),
        Kind::Bytes => quote!(rt::RSlice<'_, u8>),
        Kind::Value => quote_spanned!(ty.span()=> <#ty as ::dropin::Stable>::Ffi),
    }
}

/// The descriptor of an argument's type.
fn arg_desc(arg: &crate::ast::Arg) -> TokenStream {
    let ty = &arg.ty;
    match arg.kind {
        Kind::Str => quote!(<&'static str as ::dropin::Stable>::DESC),
        Kind::Bytes => quote!(<&'static [u8] as ::dropin::Stable>::DESC),
        Kind::Value => quote_spanned!(ty.span()=> <#ty as ::dropin::Stable>::DESC),
    }
}

fn ffi_ret(method: &Method) -> TokenStream {
    let ret = &method.ret;
    quote_spanned!(ret.span()=> rt::RResult<<#ret as ::dropin::Stable>::Ffi, rt::RawError>)
}

/// `pub type greet = extern "C" fn(..) -> RResult<..>;`
fn fn_type(method: &Method) -> TokenStream {
    let ident = &method.ident;
    let args = method.args.iter().map(ffi_arg);
    let ret = ffi_ret(method);
    quote! {
        pub type #ident = extern "C" fn(#(#args),*) -> #ret;
    }
}

fn method_desc(method: &Method) -> TokenStream {
    let name = method.ident.to_string();
    let since = &method.since;
    let args = method.args.iter().map(arg_desc);
    let ret = &method.ret;
    quote! {
        ::dropin::MethodDesc {
            name: rt::RStr::from_str(#name),
            since: rt::RStr::from_str(#since),
            args: rt::RSlice::from_slice(&[#(#args),*]),
            ret: <#ret as ::dropin::Stable>::DESC,
        }
    }
}

/// The plugin's `extern "C"` function for one method, generic over the
/// plugin's type: converts the arguments, calls the trait method under the
/// guard, converts the result or the error.
fn shim(trait_ident: &Ident, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let shim = format_ident!("shim_{}", ident);
    let params = method.args.iter().map(|arg| {
        let name = &arg.ident;
        let ffi = ffi_arg(arg);
        quote!(#name: #ffi)
    });
    let values = method.args.iter().map(|arg| {
        let name = &arg.ident;
        let ty = &arg.ty;
        match arg.kind {
            Kind::Str => quote!(<&str as ::dropin::Stable>::from_ffi(#name)),
            Kind::Bytes => quote!(<&[u8] as ::dropin::Stable>::from_ffi(#name)),
            Kind::Value => quote!(<#ty as ::dropin::Stable>::from_ffi(#name)),
        }
    });
    let ret = ffi_ret(method);
    let body = if method.fallible {
        quote! {
            match <P as #trait_ident>::#ident(plugin, #(#values),*) {
                ::core::result::Result::Ok(value) => {
                    ::core::result::Result::Ok(::dropin::Stable::into_ffi(value))
                }
                ::core::result::Result::Err(error) => ::core::result::Result::Err(rt::failed(error)),
            }
        }
    } else {
        quote! {
            ::core::result::Result::Ok(::dropin::Stable::into_ffi(
                <P as #trait_ident>::#ident(plugin, #(#values),*),
            ))
        }
    };
    quote! {
        pub extern "C" fn #shim<P: #trait_ident + rt::Exported>(#(#params),*) -> #ret {
            rt::call::<P, _>(|plugin| #body)
        }
    }
}

/// The handle's method: checks the plugin has it, calls through the
/// function pointer, converts the result.
fn handle_method(vis: &syn::Visibility, hidden: &Ident, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let name = ident.to_string();
    let since = &method.since;
    let docs = &method.docs;
    let params = method.args.iter().map(|arg| {
        let name = &arg.ident;
        let ty = &arg.ty;
        quote!(#name: #ty)
    });
    let values = method.args.iter().map(|arg| {
        let name = &arg.ident;
        let ty = &arg.ty;
        quote!(<#ty as ::dropin::Stable>::into_ffi(#name))
    });
    let ret = &method.ret;
    let (output, convert) = if is_string(ret) {
        (quote!(::dropin::Text), quote!(::dropin::Text::from_ffi))
    } else {
        (quote!(#ret), quote!(<#ret as ::dropin::Stable>::from_ffi))
    };
    let note = format!(
        "\n\n# Errors\n\n`dropin::CallError`: the plugin failed or panicked (which disables it), \
         is disabled, or predates this method (added in interface {since})."
    );
    let function = if method.required {
        quote!(let function: #hidden::#ident = self.#ident;)
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
        #vis fn #ident(&self, #(#params),*) -> ::core::result::Result<#output, ::dropin::CallError> {
            #function
            self.core.call(|| function(#(#values),*)).map(#convert)
        }
    }
}

/// `TextTransform` → `text_transform`.
fn snake_case(name: &str) -> String {
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}
