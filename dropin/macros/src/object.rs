//! What `#[dropin::object]` expands to.
//!
//! For a trait `Table`:
//! - the trait, which a plugin implements and returns as `Box<dyn Table>`;
//! - `TableHandle`, the application's handle to such an object: each method
//!   of the trait returns `Result<T, dropin::CallError>`, and dropping it
//!   drops the plugin's object in the plugin's code;
//! - `Box<dyn Table>` as a `dropin::Stable` type: the object, its method
//!   table and its drop function, described by the trait's name and every
//!   method's signature (so a changed object trait is refused at load);
//! - a hidden module `__dropin_object_table`: the method table's type, the
//!   plugin's functions (each runs the object's method with a panic
//!   caught) and the one that drops it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::{
    ast::{Interface, Method, unraw, visibility},
    expand::{
        arg_desc, dispatch, ffi_arg, ffi_params, ffi_ret, from_ffi_values, into_ffi_values,
        serve_arm, snake_case, typed_params,
    },
    ty::Shape,
};

pub fn object(object: &Interface) -> syn::Result<TokenStream> {
    let item = &object.item;
    let trait_ident = &item.ident;
    let vis = visibility(item);
    let snake = snake_case(&unraw(trait_ident));
    let hidden = format_ident!("__dropin_object_{}", snake);
    let handle = format_ident!("{}Handle", trait_ident);
    if let Some(later) = object.methods.iter().find(|method| !method.required) {
        return Err(syn::Error::new(
            later.ident.span(),
            "`#[since]` is not supported on an object trait's methods yet: change an object \
             trait only in a new major version of the interface",
        ));
    }
    let name = format!("Box<dyn {}>", unraw(trait_ident));
    let table_fields = object.methods.iter().map(|method| {
        let ident = &method.ident;
        let args = method.args.iter().map(ffi_arg);
        let ret = ffi_ret(method);
        quote!(pub #ident: extern "C" fn(*const __dropin_rt::c_void, #(#args),*) -> #ret)
    });
    let table_entries = object.methods.iter().map(|method| {
        let ident = &method.ident;
        let shim = format_ident!("__dropin_object_shim_{}", unraw(ident));
        quote!(#ident: #shim)
    });
    let shims = object
        .methods
        .iter()
        .map(|method| shim(trait_ident, method));
    let calls = object
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| handle_method(vis, &hidden, &name, index, method));
    let dispatch = dispatch(
        object
            .methods
            .iter()
            .enumerate()
            .map(|(index, method)| serve_arm(index, method)),
        "the object has no method number",
    );
    let descs = object.methods.iter().map(|method| {
        let method_name = unraw(&method.ident);
        let args = method.args.iter().enumerate().map(|(i, arg)| {
            let field = i.to_string();
            let desc = arg_desc(arg);
            quote!(::dropin::FieldDesc { name: __dropin_rt::RStr::from_str(#field), ty: #desc })
        });
        let ret = &method.ret;
        quote! {
            ::dropin::VariantDesc {
                name: __dropin_rt::RStr::from_str(#method_name),
                fields: __dropin_rt::RSlice::from_slice(&[
                    #(#args,)*
                    ::dropin::FieldDesc {
                        name: __dropin_rt::RStr::from_str("->"),
                        ty: <#ret as ::dropin::Stable>::DESC,
                    },
                ]),
            }
        }
    });
    let handle_doc = format!(
        "A [`{trait_ident}`] object a plugin returned: the application's handle.\n\n\
         Each method of the trait is a method here that calls the plugin's object and returns \
         `Result<T, dropin::CallError>`. Dropping the handle drops the object, in the plugin's \
         code."
    );
    Ok(quote! {
        #item

        // The handle may be sent and shared between threads, so the
        // plugin's object must allow it: declare `trait Trait: Send + Sync`.
        const _: fn() = || {
            fn send_and_sync<T: ?::core::marker::Sized + ::core::marker::Send + ::core::marker::Sync>() {}
            send_and_sync::<dyn #trait_ident>();
        };

        #[doc = #handle_doc]
        #vis struct #handle {
            object: ::dropin::Object,
        }

        impl #handle {
            /// The handle of an object the plugin of `plugin` returned in
            /// this process.
            ///
            /// # Safety
            ///
            /// `raw` must be a `Box<dyn` this trait`>` the plugin converted,
            /// of a type the loader compared with this one, used once.
            #[doc(hidden)]
            pub unsafe fn __dropin_local(
                raw: ::dropin::__private::RawObject,
                plugin: &::dropin::__private::Arc<::dropin::__private::PluginState>,
            ) -> Self {
                Self {
                    // SAFETY: the caller's contract.
                    object: unsafe { ::dropin::Object::local(raw, plugin) },
                }
            }

            /// The handle of the object number `id` that an isolated
            /// plugin's process, reached through `remote`, keeps.
            #[doc(hidden)]
            pub fn __dropin_remote(
                id: u64,
                remote: ::dropin::__private::Arc<dyn ::dropin::__private::Remote>,
                plugin: &::dropin::__private::Arc<::dropin::__private::PluginState>,
            ) -> Self {
                Self {
                    object: ::dropin::Object::remote(remote, id, plugin),
                }
            }

            #(#calls)*
        }

        // The handle, in an isolated plugin's process, serves its host.
        impl ::dropin::__private::ServeObject for #handle {
            fn serve(
                &self,
                method: usize,
                input: &[u8],
                out: &mut ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), ::dropin::wire::WireError> {
                #dispatch
            }
        }

        impl ::core::fmt::Debug for #handle {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(&self.object, f)
            }
        }

        // SAFETY: `RawObject` is `#[repr(C)]`; the descriptor names the trait
        // and every method's signature, in order, so two equal descriptors
        // have method tables of the same functions.
        unsafe impl ::dropin::Stable for ::std::boxed::Box<dyn #trait_ident> {
            type Ffi = ::dropin::__private::RawObject;
            const DESC: &'static ::dropin::TypeDesc = {
                use #hidden::__dropin_rt;
                &::dropin::TypeDesc {
                    variants: __dropin_rt::RSlice::from_slice(&[#(#descs),*]),
                    ..::dropin::TypeDesc::leaf(
                        #name,
                        ::core::mem::size_of::<::dropin::__private::RawObject>(),
                        ::core::mem::align_of::<::dropin::__private::RawObject>(),
                    )
                }
            };
            fn into_ffi(self) -> ::dropin::__private::RawObject {
                #hidden::into_raw(self)
            }
            /// An object crosses from the plugin to the application, which
            /// holds it as the generated handle: never the other way.
            fn from_ffi(_: ::dropin::__private::RawObject) -> Self {
                ::core::panic!(
                    "a plugin's object reaches the application as its handle, never as a `Box<dyn {}>`",
                    ::core::stringify!(#trait_ident)
                )
            }
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types, non_snake_case, unused_imports, missing_docs, clippy::type_complexity)]
        #vis mod #hidden {
            use super::*;
            pub use ::dropin::__private as __dropin_rt;

            /// The object's methods, in declaration order.
            #[repr(C)]
            pub(super) struct Methods {
                #(#table_fields,)*
            }

            /// The plugin's method table.
            pub(super) static METHODS: Methods = Methods {
                #(#table_entries,)*
            };

            #(#shims)*

            extern "C" fn __dropin_object_drop(
                this: *mut __dropin_rt::c_void,
            ) -> __dropin_rt::RResult<(), __dropin_rt::RawError> {
                __dropin_rt::guarded(|| {
                    // SAFETY: `this` is what `into_raw` made, dropped once.
                    ::core::mem::drop(unsafe {
                        __dropin_rt::Box::from_raw(this.cast::<__dropin_rt::Box<dyn #trait_ident>>())
                    });
                    ::core::result::Result::Ok(())
                })
            }

            /// The object as it crosses: its box, its methods, its drop.
            pub(super) fn into_raw(object: __dropin_rt::Box<dyn #trait_ident>) -> __dropin_rt::RawObject {
                __dropin_rt::RawObject {
                    this: __dropin_rt::Box::into_raw(__dropin_rt::Box::new(object)).cast(),
                    methods: (&raw const METHODS).cast(),
                    drop: __dropin_object_drop,
                }
            }
        }
    })
}

/// The plugin's function for one method: runs it on the object, a panic
/// caught, and converts the result or the error.
fn shim(trait_ident: &syn::Ident, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let shim = format_ident!("__dropin_object_shim_{}", unraw(ident));
    let params = ffi_params(method);
    let values = from_ffi_values(method);
    let ret = ffi_ret(method);
    let call = quote!(object.#ident(#(#values),*));
    let body = if method.fallible {
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
    };
    quote! {
        extern "C" fn #shim(this: *const __dropin_rt::c_void, #(#params),*) -> #ret {
            __dropin_rt::guarded(|| {
                // SAFETY: `this` is what `into_raw` made, alive until its drop.
                let object: &dyn #trait_ident = unsafe { &**this.cast::<__dropin_rt::Box<dyn #trait_ident>>() };
                #body
            })
        }
    }
}

/// The handle's method: calls the object's function, converts the result.
fn handle_method(
    vis: &syn::Visibility,
    hidden: &syn::Ident,
    name: &str,
    index: usize,
    method: &Method,
) -> TokenStream {
    let ident = &method.ident;
    let docs = &method.docs;
    let params = typed_params(method);
    let values = into_ffi_values(method);
    let names: Vec<&syn::Ident> = method.args.iter().map(|arg| &arg.ident).collect();
    let ret = &method.ret;
    let plugin = quote!(self.object.plugin());
    let (output, convert, remote) = match Shape::of(ret) {
        Ok(Some(shape)) => {
            let wire = shape.wire_type();
            let from_wire = shape.convert_wire(
                &quote!(value),
                &quote!(self.object.remote_of().expect("a remote object")),
                &plugin,
            );
            let conversion = shape.convert_ffi(&quote!(value), &plugin);
            (
                shape.handle_type(),
                quote!(|value| #conversion),
                quote! {
                    if self.object.is_remote() {
                        return self
                            .object
                            .call_remote::<#wire>(#index, |args| {
                                #(::dropin::wire::Encode::encode(&#names, args);)*
                            })
                            .map(|value| #from_wire);
                    }
                },
            )
        }
        Err(error) => {
            // Reported once, on the result's tokens.
            let error = error.to_compile_error();
            (quote!(#ret), quote!(|_| ::core::unreachable!()), error)
        }
        Ok(None) => (
            quote!(#ret),
            quote!(<#ret as ::dropin::Stable>::from_ffi),
            quote! {
                if self.object.is_remote() {
                    return self.object.call_remote::<#ret>(#index, |args| {
                        #(::dropin::wire::Encode::encode(&#names, args);)*
                    });
                }
            },
        ),
    };
    let note = format!(
        "\n\n# Errors\n\n`dropin::CallError`: the object's method failed or panicked (which \
         disables its plugin), or its plugin is disabled. Of a `{name}`."
    );
    quote! {
        #(#docs)*
        #[doc = #note]
        // The method's own result inside the framework's.
        #[allow(clippy::type_complexity)]
        #vis fn #ident(&self, #(#params),*) -> ::core::result::Result<#output, ::dropin::CallError> {
            #remote
            // SAFETY: the object was made for this trait, in this process:
            // its type, and so its method table's, was compared with this
            // one at load.
            let methods = unsafe { self.object.methods::<#hidden::Methods>() };
            self.object
                .call(|| (methods.#ident)(self.object.this(), #(#values),*))
                .map(#convert)
        }
    }
}
