//! What `#[dropin::services]` expands to.
//!
//! For a trait `GreeterHost`:
//! - the trait, which the application implements;
//! - `GreeterHostHandle`, the plugins' handle to the application's
//!   implementation, and its `provided_by`, which makes the `dropin::Services`
//!   the application hands to the loader;
//! - a hidden module `__dropin_services_greeter_host`: the `extern "C"`
//!   signature of each service (the host's context first), their
//!   descriptors, the host's functions, generic over the application's
//!   type, and those of an isolated plugin's process, which send the call to
//!   the host.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::{
    ast::{Interface, Method, unraw, visibility},
    expand::{
        decoded_args, ffi_arg, ffi_params, ffi_ret, from_ffi_values, into_ffi_values, method_desc,
        snake_case,
    },
};

pub fn services(services: &Interface) -> TokenStream {
    let item = &services.item;
    if let Some(method) = services
        .methods
        .iter()
        .find(|method| crate::ty::holds_object(&method.ret))
    {
        let error = syn::Error::new_spanned(
            &method.ret,
            "a host service cannot return an object yet: return data",
        )
        .to_compile_error();
        return quote!(#error #item);
    }
    if let Some(asyncness) = services.methods.iter().find_map(|method| method.asyncness) {
        let error = syn::Error::new(
            asyncness.span,
            "a host service cannot be `async` yet: the plugin calls it synchronously",
        )
        .to_compile_error();
        return quote!(#error #item);
    }
    if let Some(arg) = services
        .methods
        .iter()
        .flat_map(|method| &method.args)
        .find(|arg| matches!(arg.kind, crate::ty::Kind::Lent | crate::ty::Kind::Given))
    {
        let error = syn::Error::new_spanned(
            &arg.ty,
            "a host service cannot take an object yet: the application calls its own objects \
             directly",
        )
        .to_compile_error();
        return quote!(#error #item);
    }
    let trait_ident = &item.ident;
    let vis = visibility(item);
    let snake = snake_case(&unraw(trait_ident));
    let hidden = format_ident!("__dropin_services_{}", snake);
    let handle = format_ident!("{}Handle", trait_ident);
    let trait_name = unraw(trait_ident);
    let name = match &services.name {
        Some(name) => quote!(#name),
        None => quote!(::core::concat!(::core::env!("CARGO_PKG_NAME"), "::", #trait_name)),
    };
    let version = match &services.version {
        Some(version) => quote!(#version),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };
    let methods = &services.methods;

    let fn_types = methods.iter().map(|method| {
        let alias = alias(method);
        let args = method.args.iter().map(ffi_arg);
        let ret = ffi_ret(method);
        quote! {
            pub type #alias = extern "C" fn(*const __dropin_rt::c_void, #(#args),*) -> #ret;
        }
    });
    let descs = methods.iter().map(method_desc);
    let fields = methods.iter().map(|method| {
        let ident = &method.ident;
        let alias = alias(method);
        quote!(#ident: ::core::option::Option<#hidden::#alias>)
    });
    let binds = methods.iter().enumerate().map(|(i, method)| {
        let ident = &method.ident;
        let alias = alias(method);
        quote! {
            #ident: bound[#i].map(|function| {
                // SAFETY: `ServicesCore::bind` compared the host's entry with
                // `SERVICES[#i]`, which describes this signature.
                unsafe { #hidden::__dropin_rt::transmute::<unsafe extern "C" fn(), #hidden::#alias>(function) }
            })
        }
    });
    let calls = methods.iter().map(|method| handle_method(vis, method));
    let host_fns = methods
        .iter()
        .map(|method| host_function(trait_ident, method));
    let remote_fns = methods
        .iter()
        .enumerate()
        .map(|(i, method)| remote_function(i, method));
    let entries = |prefix: &str, generic: bool| {
        methods
            .iter()
            .enumerate()
            .map(|(i, method)| {
                let alias = alias(method);
                let function = format_ident!("{}{}", prefix, unraw(&method.ident));
                let function = if generic {
                    quote!(#function::<__DropinHost>)
                } else {
                    quote!(#function)
                };
                quote! {
                    __dropin_rt::MethodEntry {
                        desc: __DROPIN_SERVICES[#i],
                        // SAFETY: a function pointer cast to the erased type
                        // the entry stores; a plugin casts it back only after
                        // comparing the descriptor with its own.
                        func: unsafe { __dropin_rt::transmute::<#alias, unsafe extern "C" fn()>(#function) },
                    }
                }
            })
            .collect::<Vec<_>>()
    };
    let host_entries = entries("__dropin_host_", true);
    let remote_entries = entries("__dropin_remote_", false);
    let dispatch = crate::expand::dispatch(
        methods
            .iter()
            .enumerate()
            .map(|(i, method)| serve_arm(trait_ident, i, method)),
        "the services have no service number",
    );
    let handle_doc = format!(
        "A plugin's handle to the [`{trait_name}`] services of its host: get it in `init` with \
         `context.services::<{handle}>()`, keep it, clone it, call it from any thread.\n\n\
         Each service is a method here that returns `Result<T, dropin::ServiceError>`: the \
         host's error or panic, or `Missing` when the host lacks the service (it was built \
         against an earlier version of the interface, or offers none)."
    );

    quote! {
        #item

        #[doc = #handle_doc]
        #[derive(Clone)]
        #vis struct #handle {
            core: ::dropin::__private::ServicesCore,
            #(#fields,)*
        }

        impl #handle {
            #(#calls)*

            /// The services the application's `host` provides, for
            /// `dropin_host::LoaderBuilder::services`.
            #vis fn provided_by<__DropinHost: #trait_ident + 'static>(host: __DropinHost) -> ::dropin::Services {
                ::dropin::Services::new(#hidden::__dropin_rt::Arc::new(#hidden::__DropinProvider(
                    #hidden::__dropin_rt::Arc::new(host),
                )))
            }

            /// Whether the host offers these services at all.
            #vis fn is_offered(&self) -> bool {
                self.core.is_offered()
            }

            /// The table an isolated plugin's process hands its plugin:
            /// every service goes to `client`.
            #[doc(hidden)]
            #vis fn remote_table(
                client: #hidden::__dropin_rt::Box<dyn #hidden::__dropin_rt::ServiceClient>,
            ) -> &'static #hidden::__dropin_rt::RawServices {
                let client: &'static #hidden::__dropin_rt::Box<dyn #hidden::__dropin_rt::ServiceClient> =
                    #hidden::__dropin_rt::Box::leak(#hidden::__dropin_rt::Box::new(client));
                let context: *const #hidden::__dropin_rt::Box<dyn #hidden::__dropin_rt::ServiceClient> = client;
                #hidden::__dropin_rt::Box::leak(#hidden::__dropin_rt::Box::new(#hidden::__dropin_rt::RawServices {
                    name: #hidden::__dropin_rt::RStr::from_str(#hidden::__DROPIN_NAME),
                    version: #hidden::__dropin_rt::RStr::from_str(#hidden::__DROPIN_VERSION),
                    entries: #hidden::__dropin_rt::RSlice::from_slice(#hidden::__DROPIN_REMOTE),
                    context: context.cast(),
                }))
            }
        }

        impl ::core::fmt::Debug for #handle {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(&self.core, f)
            }
        }

        // SAFETY: `bind` casts only the entries `ServicesCore::bind` compared
        // with `SERVICES` at the same index.
        unsafe impl ::dropin::ServicesHandle for #handle {
            const NAME: &'static str = #hidden::__DROPIN_NAME;
            const SERVICES: &'static [::dropin::MethodDesc] = #hidden::__DROPIN_SERVICES;

            unsafe fn bind(table: ::core::option::Option<&'static #hidden::__dropin_rt::RawServices>) -> Self {
                let (core, bound) = #hidden::__dropin_rt::ServicesCore::bind(
                    #hidden::__DROPIN_NAME,
                    #hidden::__DROPIN_SERVICES,
                    table,
                );
                Self {
                    core,
                    #(#binds,)*
                }
            }
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types, non_snake_case, unused_imports, missing_docs, missing_debug_implementations)]
        // The functions take the host's context as a raw pointer: the type
        // of a table entry, called only through tables made for it.
        #[allow(clippy::not_unsafe_ptr_arg_deref)]
        #vis mod #hidden {
            use super::*;
            pub use ::dropin::__private as __dropin_rt;

            pub const __DROPIN_NAME: &str = #name;
            pub const __DROPIN_VERSION: &str = #version;

            #(#fn_types)*

            /// The services, in declaration order.
            pub const __DROPIN_SERVICES: &[::dropin::MethodDesc] = &[#(#descs),*];

            /// The entries of an isolated plugin's process.
            pub const __DROPIN_REMOTE: &[__dropin_rt::MethodEntry] = &[#(#remote_entries),*];

            /// The application's services, as the loader keeps them.
            pub struct __DropinProvider<__DropinHost>(pub __dropin_rt::Arc<__DropinHost>);

            impl<__DropinHost: #trait_ident + 'static> __DropinProvider<__DropinHost> {
                const ENTRIES: &'static [__dropin_rt::MethodEntry] = &[#(#host_entries),*];
            }

            impl<__DropinHost: #trait_ident + 'static> __dropin_rt::Provider for __DropinProvider<__DropinHost> {
                fn name(&self) -> &'static str {
                    __DROPIN_NAME
                }

                fn version(&self) -> &'static str {
                    __DROPIN_VERSION
                }

                fn table(&self, caller: __dropin_rt::Caller) -> &'static __dropin_rt::RawServices {
                    let shared: &'static __dropin_rt::Shared<__DropinHost> =
                        __dropin_rt::Box::leak(__dropin_rt::Box::new(__dropin_rt::Shared {
                            host: __dropin_rt::Arc::clone(&self.0),
                            caller,
                        }));
                    let context: *const __dropin_rt::Shared<__DropinHost> = shared;
                    __dropin_rt::Box::leak(__dropin_rt::Box::new(__dropin_rt::RawServices {
                        name: __dropin_rt::RStr::from_str(__DROPIN_NAME),
                        version: __dropin_rt::RStr::from_str(__DROPIN_VERSION),
                        entries: __dropin_rt::RSlice::from_slice(Self::ENTRIES),
                        context: context.cast(),
                    }))
                }

                fn serve(
                    &self,
                    caller: &__dropin_rt::Caller,
                    method: usize,
                    input: &[u8],
                    out: &mut ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::dropin::wire::WireError> {
                    #dispatch
                }
            }

            #(#host_fns)*

            #(#remote_fns)*
        }
    }
}

fn alias(method: &Method) -> proc_macro2::Ident {
    format_ident!("__dropin_service_fn_{}", unraw(&method.ident))
}

/// The plugin's side: checks the host has the service, calls it.
fn handle_method(vis: &syn::Visibility, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let name = unraw(ident);
    let since = &method.since;
    let docs = &method.docs;
    let ret = &method.ret;
    let (params, rebinds) = crate::expand::public_params(method, |ty| quote!(#ty));
    let values = into_ffi_values(method);
    let note = format!(
        "\n\n# Errors\n\n`dropin::ServiceError`: the host's service failed or panicked, refused \
         the call, or is missing (added in interface {since})."
    );
    quote! {
        #(#docs)*
        #[doc = #note]
        #[inline]
        #vis fn #ident(&self, #(#params),*) -> ::core::result::Result<#ret, ::dropin::ServiceError> {
            #rebinds
            let ::core::option::Option::Some(function) = self.#ident else {
                return ::core::result::Result::Err(self.core.missing(#name, #since));
            };
            self.core
                .finish(#name, function(self.core.context(), #(#values),*))
                .map(<#ret as ::dropin::Stable>::from_ffi)
        }
    }
}

/// The host's function for one service, generic over the application's
/// type.
fn host_function(trait_ident: &syn::Ident, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let function = format_ident!("__dropin_host_{}", unraw(ident));
    let params = ffi_params(method);
    let values = from_ffi_values(method);
    let ret = ffi_ret(method);
    let call = quote!(<__DropinHost as #trait_ident>::#ident(host, #(#values),*));
    let body = if method.fallible {
        quote! {
            match #call {
                ::core::result::Result::Ok(value) => ::core::result::Result::Ok(::dropin::Stable::into_ffi(value)),
                ::core::result::Result::Err(error) => ::core::result::Result::Err(::std::string::ToString::to_string(&error)),
            }
        }
    } else {
        quote!(::core::result::Result::Ok(::dropin::Stable::into_ffi(#call)))
    };
    quote! {
        pub extern "C" fn #function<__DropinHost: #trait_ident + 'static>(
            context: *const __dropin_rt::c_void,
            #(#params),*
        ) -> #ret {
            // SAFETY: only tables of `__DropinProvider<__DropinHost>` point
            // here, and their context is a `Shared<__DropinHost>`.
            let shared = unsafe { __dropin_rt::shared::<__DropinHost>(context) };
            __dropin_rt::serve_with(&shared.caller, &*shared.host, |host| #body)
        }
    }
}

/// The function of an isolated plugin's process for one service: encodes
/// the arguments and sends them to the host.
fn remote_function(index: usize, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let function = format_ident!("__dropin_remote_{}", unraw(ident));
    let params = ffi_params(method);
    let encodes =
        from_ffi_values(method)
            .into_iter()
            .zip(&method.args)
            .map(|(value, arg)| match arg.kind {
                crate::ty::Kind::Slice => quote!(::dropin::wire::encode_items(#value, out);),
                _ => quote!(::dropin::wire::Encode::encode(&#value, out);),
            });
    let ret_ty = &method.ret;
    let ret = ffi_ret(method);
    quote! {
        pub extern "C" fn #function(context: *const __dropin_rt::c_void, #(#params),*) -> #ret {
            // SAFETY: only tables made by `remote_table` point here.
            unsafe {
                __dropin_rt::remote_service::<#ret_ty>(context, #index, |out| {
                    #(#encodes)*
                })
            }
        }
    }
}

/// One arm of the provider's `serve`: decodes the arguments of service
/// number `index`, calls the application's implementation, encodes the
/// outcome.
fn serve_arm(trait_ident: &syn::Ident, index: usize, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let (decodes, passes) = decoded_args(method);
    let call = quote!(<__DropinHost as #trait_ident>::#ident(host, #(#passes),*));
    let body = if method.fallible {
        quote!(#call.map_err(|error| ::std::string::ToString::to_string(&error)))
    } else {
        quote!(::core::result::Result::Ok(#call))
    };
    quote! {
        #index => {
            #(#decodes)*
            if !input.is_empty() {
                return ::core::result::Result::Err(::dropin::wire::WireError(::std::format!(
                    "{} bytes after the arguments", input.len()
                )));
            }
            let outcome = __dropin_rt::serve_with(caller, &*self.0, |host| #body);
            __dropin_rt::encode_service(&outcome, out);
            ::core::result::Result::Ok(())
        }
    }
}
