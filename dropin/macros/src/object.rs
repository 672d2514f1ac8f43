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
use syn::spanned::Spanned;

use crate::{
    ast::{Interface, Method, unraw, visibility},
    expand::{
        arg_desc, dispatch, encode_arg, ffi_arg, ffi_params, ffi_ret, from_ffi_values,
        into_ffi_values, serve_arm, snake_case, typed_params,
    },
    ty::Shape,
};

/// `async fn m(&self, ..) -> T` as a dyn-compatible method:
/// `fn m<'__dropin>(&'__dropin self, ..) -> Pin<Box<dyn Future<Output = T> +
/// Send + '__dropin>>`, a body boxed as `async move`.
fn boxed_async(sig: &mut syn::Signature, body: Option<&mut syn::Block>) {
    if sig.asyncness.take().is_none() {
        return;
    }
    let output = match &sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    sig.generics.params.push(syn::parse_quote!('__dropin));
    for input in &mut sig.inputs {
        match input {
            syn::FnArg::Receiver(receiver) => {
                if let Some((_, lifetime)) = &mut receiver.reference {
                    *lifetime = Some(syn::parse_quote!('__dropin));
                }
                *receiver.ty = crate::expand::with_lifetime(&receiver.ty);
            }
            syn::FnArg::Typed(typed) => {
                *typed.ty = crate::expand::with_lifetime(&typed.ty);
            }
        }
    }
    sig.output = syn::parse_quote! {
        -> ::core::pin::Pin<::std::boxed::Box<
            dyn ::core::future::Future<Output = #output> + ::core::marker::Send + '__dropin
        >>
    };
    if let Some(body) = body {
        let block = body.clone();
        *body = syn::parse_quote!({ ::std::boxed::Box::pin(async move #block) });
    }
}

/// `#[dropin::object]` on an implementation of an object trait: its
/// `async fn` methods as the trait declares them.
pub fn implementation(mut item: syn::ItemImpl) -> TokenStream {
    for impl_item in &mut item.items {
        if let syn::ImplItem::Fn(function) = impl_item {
            boxed_async(&mut function.sig, Some(&mut function.block));
        }
    }
    quote!(#item)
}

pub fn object(object: &Interface) -> syn::Result<TokenStream> {
    let mut item = object.item.clone();
    for trait_item in &mut item.items {
        if let syn::TraitItem::Fn(function) = trait_item {
            boxed_async(&mut function.sig, function.default.as_mut());
        }
    }
    let trait_ident = &item.ident.clone();
    let vis = &visibility(&item).clone();
    let snake = snake_case(&unraw(trait_ident));
    let hidden = format_ident!("__dropin_object_{}", snake);
    let handle = format_ident!("{}Handle", trait_ident);
    // The application's objects of the trait are proxies in a plugin, which
    // implement the trait's methods and nothing else.
    if let Some(bound) = item.supertraits.iter().find(|bound| match bound {
        syn::TypeParamBound::Trait(bound) => !["Send", "Sync"].iter().any(|name| {
            bound.path.is_ident(name)
                || bound
                    .path
                    .segments
                    .last()
                    .is_some_and(|last| last.ident == name)
        }),
        syn::TypeParamBound::Lifetime(lifetime) => lifetime.ident != "static",
        _ => true,
    }) {
        return Err(syn::Error::new(
            bound.span(),
            "an object trait's bounds are `Send + Sync` and nothing else: the application's \
             objects of the trait reach a plugin as proxies that implement its methods only",
        ));
    }
    // Every type of the trait converts itself, with a method table of its
    // own: the plugin's function for a method calls the type's, not
    // another `dyn` call.
    item.supertraits.push(syn::parse_quote!(#hidden::Convert));
    if item.colon_token.is_none() {
        item.colon_token = Some(Default::default());
    }
    let item = &item;
    if let Some(arg) = object
        .methods
        .iter()
        .flat_map(|method| &method.args)
        .find(|arg| matches!(arg.kind, crate::ty::Kind::Lent | crate::ty::Kind::Given))
    {
        return Err(syn::Error::new(
            arg.ty.span(),
            "an object's method cannot take the application's object yet: pass it to a method \
             of the interface",
        ));
    }
    let count = object.methods.len();
    let name = format!("Box<dyn {}>", unraw(trait_ident));
    let lent_name = format!("&dyn {}", unraw(trait_ident));
    let proxies = object
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| proxy_methods(trait_ident, index, method));
    let (local, remote): (Vec<_>, Vec<_>) = proxies.unzip();
    let served = dispatch(
        object
            .methods
            .iter()
            .enumerate()
            .map(|(index, method)| serve_raw_arm(index, method)),
        "the object has no method number",
    );
    let table_fields = object.methods.iter().map(|method| {
        let ident = &method.ident;
        let args = method
            .args
            .iter()
            .map(ffi_arg)
            .chain(crate::expand::async_param_types(method));
        let ret = ffi_ret(method);
        quote!(pub #ident: extern "C" fn(*const __dropin_rt::c_void, #(#args),*) -> #ret)
    });
    let table_entries = object.methods.iter().map(|method| {
        let ident = &method.ident;
        let shim = format_ident!("__dropin_object_shim_{}", unraw(ident));
        quote!(#ident: #shim::<T>)
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
        let ret_desc = if method.asyncness.is_some() {
            quote!(__dropin_rt::Async::<#ret>::DESC)
        } else {
            quote!(<#ret as ::dropin::Stable>::DESC)
        };
        // A method added in a later minor says so: objects of the trait
        // with and without it are compatible.
        let since = (!method.required).then(|| {
            let since = &method.since;
            quote! {
                ::dropin::FieldDesc {
                    name: __dropin_rt::RStr::from_str("since"),
                    ty: &::dropin::TypeDesc::leaf(#since, 0, 1),
                },
            }
        });
        quote! {
            ::dropin::VariantDesc {
                name: __dropin_rt::RStr::from_str(#method_name),
                fields: __dropin_rt::RSlice::from_slice(&[
                    #(#args,)*
                    ::dropin::FieldDesc {
                        name: __dropin_rt::RStr::from_str("->"),
                        ty: #ret_desc,
                    },
                    #since
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
                    variants: __dropin_rt::RSlice::from_slice(#hidden::VARIANTS),
                    ..::dropin::TypeDesc::leaf(
                        #name,
                        ::core::mem::size_of::<::dropin::__private::RawObject>(),
                        ::core::mem::align_of::<::dropin::__private::RawObject>(),
                    )
                }
            };
            fn into_ffi(self) -> ::dropin::__private::RawObject {
                #hidden::Convert::__dropin_into_raw(self)
            }
            /// The application's object, in the plugin: a proxy whose
            /// methods call the application's (a plugin's object reaches
            /// the application as its handle instead).
            fn from_ffi(raw: ::dropin::__private::RawObject) -> Self {
                ::std::boxed::Box::new(#hidden::Proxy(raw))
            }
        }

        // SAFETY: the method table is this trait's; `LENT` names the trait
        // and its methods like `DESC`, under another name.
        unsafe impl ::dropin::__private::ObjectBox for ::std::boxed::Box<dyn #trait_ident> {
            const LENT: &'static ::dropin::TypeDesc = {
                use #hidden::__dropin_rt;
                &::dropin::TypeDesc {
                    variants: __dropin_rt::RSlice::from_slice(#hidden::VARIANTS),
                    ..::dropin::TypeDesc::leaf(
                        #lent_name,
                        ::core::mem::size_of::<::dropin::__private::RawObject>(),
                        ::core::mem::align_of::<::dropin::__private::RawObject>(),
                    )
                }
            };
            fn lend(fat: *const ::dropin::__private::c_void) -> ::dropin::__private::RawObject {
                // SAFETY: `fat` points to a pointer to the object, which
                // outlives the call it is lent for.
                let object: &dyn #trait_ident = unsafe { &**fat.cast::<*const dyn #trait_ident>() };
                #hidden::Convert::__dropin_lend(object)
            }
            fn serve_raw(
                raw: &::dropin::__private::RawObject,
                method: usize,
                input: &[u8],
                out: &mut ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), ::dropin::wire::WireError> {
                use #hidden::__dropin_rt;
                // SAFETY: `raw` is the application's own object of this
                // trait, made by `into_raw` or `lend` here.
                let methods = unsafe { &*raw.methods.cast::<#hidden::Methods>() };
                #served
            }
            fn remote(id: u64, owned: bool) -> Self {
                ::std::boxed::Box::new(#hidden::RemoteProxy { id, owned })
            }
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types, non_snake_case, unused_imports, missing_docs, clippy::type_complexity)]
        #vis mod #hidden {
            use super::*;
            pub use ::dropin::__private as __dropin_rt;

            /// The trait's methods, as its descriptors name them.
            pub(super) const VARIANTS: &[::dropin::VariantDesc] = &[#(#descs),*];

            /// The application's object, in a plugin that it was passed to
            /// in the same process.
            pub(super) struct Proxy(pub(super) __dropin_rt::RawObject);

            impl #trait_ident for Proxy {
                #(#local)*
            }

            impl ::core::ops::Drop for Proxy {
                fn drop(&mut self) {
                    // A panic there was caught, and reported by the
                    // application's side: a drop does not unwind.
                    let _ = (self.0.drop)(self.0.this);
                }
            }

            /// The application's object, in an isolated plugin's process:
            /// the host keeps it, by number.
            pub(super) struct RemoteProxy {
                pub(super) id: u64,
                pub(super) owned: bool,
            }

            impl #trait_ident for RemoteProxy {
                #(#remote)*
            }

            impl ::core::ops::Drop for RemoteProxy {
                fn drop(&mut self) {
                    if self.owned {
                        __dropin_rt::drop_callback(self.id);
                    }
                }
            }

            /// What dropping a lent object does: nothing, it is borrowed.
            pub(super) extern "C" fn __dropin_object_lent_drop(
                _: *mut __dropin_rt::c_void,
            ) -> __dropin_rt::RResult<(), __dropin_rt::RawError> {
                __dropin_rt::RResult::ROk(())
            }

            /// How many methods the table has (an object made with an
            /// earlier minor version of the trait has fewer), then the
            /// methods, in declaration order.
            #[repr(C)]
            pub(super) struct Methods {
                pub __dropin_len: usize,
                #(#table_fields,)*
            }

            /// How an object of the trait crosses: every type of the
            /// trait has it, and a method table of its own.
            #[diagnostic::on_unimplemented(
                message = "`{Self}` cannot be an object of a `#[dropin::object]` trait",
                note = "an object trait is implemented by sized types only: implement it for a type that owns or borrows the unsized value"
            )]
            pub trait Convert {
                /// The object, given: `drop` drops it.
                #[doc(hidden)]
                fn __dropin_into_raw(self: __dropin_rt::Box<Self>) -> __dropin_rt::RawObject;
                /// The object, lent for a call: `drop` drops nothing.
                #[doc(hidden)]
                fn __dropin_lend(&self) -> __dropin_rt::RawObject;
            }

            impl<T: #trait_ident> Convert for T {
                fn __dropin_into_raw(self: __dropin_rt::Box<Self>) -> __dropin_rt::RawObject {
                    __dropin_rt::RawObject {
                        this: __dropin_rt::Box::into_raw(self).cast(),
                        methods: ::core::ptr::from_ref(methods::<T>()).cast(),
                        drop: __dropin_object_drop::<T>,
                    }
                }

                fn __dropin_lend(&self) -> __dropin_rt::RawObject {
                    __dropin_rt::RawObject {
                        this: ::core::ptr::from_ref(self).cast_mut().cast(),
                        methods: ::core::ptr::from_ref(methods::<T>()).cast(),
                        drop: __dropin_object_lent_drop,
                    }
                }
            }

            /// The method table of the type `T`.
            fn methods<T: #trait_ident>() -> &'static Methods {
                const {
                    &Methods {
                        __dropin_len: #count,
                        #(#table_entries,)*
                    }
                }
            }

            #(#shims)*

            extern "C" fn __dropin_object_drop<T: #trait_ident>(
                this: *mut __dropin_rt::c_void,
            ) -> __dropin_rt::RResult<(), __dropin_rt::RawError> {
                __dropin_rt::guarded(|| {
                    // SAFETY: `this` is what `__dropin_into_raw` made of a
                    // `Box<T>`, dropped once.
                    ::core::mem::drop(unsafe { __dropin_rt::Box::from_raw(this.cast::<T>()) });
                    ::core::result::Result::Ok(())
                })
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
    if method.asyncness.is_some() {
        let ret = ffi_ret(method);
        let future = crate::expand::async_future(
            method,
            |passes| quote!(<dyn #trait_ident as #trait_ident>::#ident(object, #(#passes),*)),
        );
        return quote! {
            extern "C" fn #shim<T: #trait_ident>(this: *const __dropin_rt::c_void, #(#params),*) -> #ret {
                __dropin_rt::guarded(|| {
                    // SAFETY: `this` is what `__dropin_into_raw` or
                    // `__dropin_lend` made of a `T`.
                    let object: &dyn #trait_ident = unsafe { &*this.cast::<T>() };
                    // SAFETY: the same object, its lifetime erased: the
                    // application's future that will hold this one borrows
                    // the object's handle, which keeps the object.
                    let object: &'static dyn #trait_ident = unsafe {
                        __dropin_rt::transmute::<&dyn #trait_ident, &'static dyn #trait_ident>(object)
                    };
                    #future
                })
            }
        };
    }
    let values = from_ffi_values(method);
    let ret = ffi_ret(method);
    // Called by the trait's path: a method of the type's own by the same
    // name is not the trait's.
    let body = crate::expand::into_boundary(
        method,
        &quote!(<T as #trait_ident>::#ident(object, #(#values),*)),
    );
    quote! {
        extern "C" fn #shim<T: #trait_ident>(this: *const __dropin_rt::c_void, #(#params),*) -> #ret {
            __dropin_rt::guarded(|| {
                // SAFETY: `this` is what `__dropin_into_raw` or
                // `__dropin_lend` made of a `T`, alive until its drop or
                // the call's end.
                let object: &T = unsafe { &*this.cast::<T>() };
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
    if method.asyncness.is_some() {
        return async_handle_method(vis, hidden, name, index, method);
    }
    let ident = &method.ident;
    let docs = &method.docs;
    let (params, rebinds) = crate::expand::public_params(method, |ty| quote!(#ty));
    let values = into_ffi_values(method);
    let encodes: Vec<TokenStream> = method.args.iter().map(encode_arg).collect();
    let ret = &method.ret;
    let plugin = quote!(self.object.plugin());
    let lacking = lacking(name, method);
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
                            .call_remote::<#wire>(#index, #lacking, |args| {
                                #(#encodes)*
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
        Ok(None) => {
            let (output, convert) = crate::ty::handle_output(ret);
            (
                output.clone(),
                convert,
                quote! {
                    if self.object.is_remote() {
                        return self.object.call_remote::<#output>(#index, #lacking, |args| {
                            #(#encodes)*
                        });
                    }
                },
            )
        }
    };
    let note = format!(
        "\n\n# Errors\n\n`dropin::CallError`: the object's method failed or panicked (which \
         disables its plugin), or its plugin is disabled. Of a `{name}`."
    );
    // An object made with an earlier minor version of the trait lacks the
    // later methods.
    let method_name = qualified(name, ident);
    let since = &method.since;
    let check = (!method.required).then(|| {
        quote! {
            if methods.__dropin_len <= #index {
                return ::core::result::Result::Err(self.object.missing(#method_name, #since));
            }
        }
    });
    quote! {
        #(#docs)*
        #[doc = #note]
        // The method's own result inside the framework's.
        #[allow(clippy::type_complexity)]
        #[inline]
        #vis fn #ident(&self, #(#params),*) -> ::core::result::Result<#output, ::dropin::CallError> {
            #rebinds
            #remote
            // SAFETY: the object was made for this trait, in this process:
            // its type, and so its method table's, was compared with this
            // one at load.
            let methods = unsafe { self.object.methods::<#hidden::Methods>() };
            #check
            self.object
                .call(|| (methods.#ident)(self.object.this(), #(#values),*))
                .map(#convert)
        }
    }
}

/// What a call to an object in another process says of `method`: the
/// name and version of a method added after the trait's first version,
/// which the object may lack (its process then says so, and the host makes
/// its own error of it); `None` for one the object always has.
fn lacking(name: &str, method: &Method) -> TokenStream {
    if method.required {
        return quote!(::core::option::Option::None);
    }
    let method_name = qualified(name, &method.ident);
    let since = &method.since;
    quote!(::core::option::Option::Some((#method_name, #since)))
}

/// The handle's method for an `async fn` of the object: starts the call,
/// and returns the future the application awaits, which borrows the handle
/// (and so keeps the object) until it is dropped.
fn async_handle_method(
    vis: &syn::Visibility,
    hidden: &syn::Ident,
    name: &str,
    index: usize,
    method: &Method,
) -> TokenStream {
    let ident = &method.ident;
    let docs = &method.docs;
    let (params, rebinds) = crate::expand::public_params(method, |ty| {
        let ty = crate::expand::with_lifetime(ty);
        quote!(#ty)
    });
    let values = into_ffi_values(method);
    let encodes: Vec<TokenStream> = method.args.iter().map(encode_arg).collect();
    let ret = &method.ret;
    let (output, convert) = crate::ty::handle_output(ret);
    let method_name = qualified(name, ident);
    let since = &method.since;
    let lacking = lacking(name, method);
    let check = (!method.required).then(|| {
        quote! {
            // SAFETY: as above.
            let methods = unsafe { self.object.methods::<#hidden::Methods>() };
            if methods.__dropin_len <= #index {
                return ::dropin::PluginFuture::failed(
                    self.object.plugin(),
                    self.object.missing(#method_name, #since),
                    convert,
                );
            }
        }
    });
    let note = format!(
        "\n\n# Errors\n\nThe future's output is a `dropin::CallError` if the object's method \
         failed or panicked (which disables its plugin), or its plugin is disabled. The call \
         starts at the first poll; dropping the future cancels it. Of a `{name}`."
    );
    quote! {
        #(#docs)*
        #[doc = #note]
        #[allow(clippy::type_complexity)]
        #[inline]
        #vis fn #ident<'__dropin>(&'__dropin self, #(#params),*) -> impl ::core::future::Future<Output = ::core::result::Result<#output, ::dropin::CallError>> + ::core::marker::Send + '__dropin {
            #rebinds
            let convert = #convert;
            // The arguments as another process gets them, before the call
            // takes them.
            let encoded = self.object.is_remote().then(|| {
                let mut encoded = ::std::vec::Vec::new();
                let args = &mut encoded;
                #(#encodes)*
                encoded
            });
            let object = &self.object;
            let start = move |room: *mut ::dropin::__private::c_void, waker: *const ::dropin::__private::FfiWaker| {
                // SAFETY: as for the handle's other methods; called only
                // for an object in this process.
                let methods = unsafe { object.methods::<#hidden::Methods>() };
                (methods.#ident)(object.this(), #(#values,)* room, waker)
            };
            if let ::core::option::Option::Some(encoded) = encoded {
                return self.object.call_remote_async(#index, #lacking, encoded, convert);
            }
            #check
            ::dropin::PluginFuture::start(self.object.plugin(), start, convert)
        }
    }
}

/// One method of the trait, as the application's object implements it in
/// a plugin: through the object's method table in the same process, and
/// over the channel to the host in an isolated plugin's. A panic in the
/// application's method, or a host that cannot be reached, unwinds the
/// plugin's code from the call (`dropin::try_callback`); a method that
/// returns a message error returns the application's as its own.
fn proxy_methods(
    trait_ident: &syn::Ident,
    index: usize,
    method: &Method,
) -> (TokenStream, TokenStream) {
    let ident = &method.ident;
    let params = typed_params(method);
    let values = into_ffi_values(method);
    let output = &method.output;
    let ret = &method.ret;
    let name = format!("{}::{}", unraw(trait_ident), unraw(ident));
    let finish = if method.fallible {
        quote! {
            match outcome {
                __dropin_rt::RResult::ROk(value) => {
                    ::core::result::Result::Ok(<#ret as ::dropin::Stable>::from_ffi(value))
                }
                __dropin_rt::RResult::RErr(error)
                    if error.kind() == __dropin_rt::RawErrorKind::Failed =>
                {
                    ::core::result::Result::Err(__dropin_rt::message_error(error.message().to_owned()))
                }
                __dropin_rt::RResult::RErr(error) => __dropin_rt::callback_failed(#name, &error),
            }
        }
    } else {
        quote! {
            match outcome {
                __dropin_rt::RResult::ROk(value) => <#ret as ::dropin::Stable>::from_ffi(value),
                __dropin_rt::RResult::RErr(error) => __dropin_rt::callback_failed(#name, &error),
            }
        }
    };
    // The application's object, made with an earlier minor version of the
    // trait, may lack a later method.
    let check = (!method.required).then(|| {
        let message = format!(
            "the application's object has no method `{name}`: it was added in {}",
            method.since
        );
        quote! {
            if methods.__dropin_len <= #index {
                __dropin_rt::callback_failed(#name, &__dropin_rt::RawError::new(
                    __dropin_rt::RawErrorKind::Callback,
                    #message.to_owned(),
                    ::core::option::Option::None,
                ));
            }
        }
    });
    if method.asyncness.is_some() {
        // As the trait declares it: a boxed future, which borrows the
        // object and the arguments.
        let mut sig: syn::Signature = syn::parse_quote!(fn #ident(&self, #(#params),*) #output);
        sig.asyncness = Some(Default::default());
        boxed_async(&mut sig, None);
        let encodes = method.args.iter().map(encode_arg);
        let local = quote! {
            #sig {
                // SAFETY: the table is this trait's, made with the object.
                let methods = unsafe { &*self.0.methods.cast::<Methods>() };
                #check
                let future = match (methods.#ident)(
                    self.0.this,
                    #(#values,)*
                    ::core::ptr::null_mut(),
                    ::core::ptr::null(),
                ) {
                    __dropin_rt::RResult::ROk(future) => __dropin_rt::Foreign::new(future),
                    __dropin_rt::RResult::RErr(error) => __dropin_rt::callback_failed(#name, &error),
                };
                ::std::boxed::Box::pin(async move {
                    let outcome = future.await;
                    #finish
                })
            }
        };
        // Isolated, the host's answer is awaited when the call is made.
        let remote = quote! {
            #sig {
                let outcome = __dropin_rt::call_callback::<#ret>(self.id, #index, |args| {
                    #(#encodes)*
                });
                ::std::boxed::Box::pin(::core::future::ready(#finish))
            }
        };
        return (local, remote);
    }
    let local = quote! {
        fn #ident(&self, #(#params),*) #output {
            // SAFETY: the table is this trait's, made with the object.
            let methods = unsafe { &*self.0.methods.cast::<Methods>() };
            #check
            let outcome = (methods.#ident)(self.0.this, #(#values),*);
            #finish
        }
    };
    let call = match Shape::of(ret) {
        Ok(None) => {
            let encodes = method.args.iter().map(encode_arg);
            quote! {
                __dropin_rt::call_callback::<#ret>(self.id, #index, |args| {
                    #(#encodes)*
                })
            }
        }
        _ => {
            let names = method.args.iter().map(|arg| &arg.ident);
            let message = format!(
                "the application's callback `{name}` returns an object, which cannot reach an \
                 isolated plugin yet"
            );
            quote! {{
                #(let _ = #names;)*
                __dropin_rt::RResult::<<#ret as ::dropin::Stable>::Ffi, __dropin_rt::RawError>::RErr(
                    __dropin_rt::RawError::new(__dropin_rt::RawErrorKind::Failed, #message.to_owned(), ::core::option::Option::None),
                )
            }}
        }
    };
    let remote = quote! {
        fn #ident(&self, #(#params),*) #output {
            let outcome = #call;
            #finish
        }
    };
    (local, remote)
}

/// One arm of the host's serving of the application's object to an
/// isolated plugin's process: decodes the arguments, calls the method
/// through the object's table (a panic caught there), encodes the outcome
/// as a service's.
fn serve_raw_arm(index: usize, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let ret = &method.ret;
    if !matches!(Shape::of(ret), Ok(None)) {
        return quote! {
            #index => ::core::result::Result::Err(::dropin::wire::WireError(
                "the method returns an object, which is not served to another process yet".to_owned(),
            )),
        };
    }
    let (decodes, passes) = crate::expand::decoded_args(method);
    let idents = method.args.iter().map(|arg| &arg.ident);
    let values = into_ffi_values(method);
    // The application's future is awaited on the thread that serves the
    // plugin's process.
    // An `async fn`'s future, made without a room or a waker.
    let made = method
        .asyncness
        .map(|_| quote!(::core::ptr::null_mut(), ::core::ptr::null()));
    let wait = method.asyncness.map(|_| {
        quote! {
            let outcome = match outcome {
                __dropin_rt::RResult::ROk(future) => {
                    __dropin_rt::block_on(__dropin_rt::Foreign::new(future)).unwrap_or_else(|| {
                        __dropin_rt::RResult::RErr(__dropin_rt::RawError::new(
                            __dropin_rt::RawErrorKind::Failed,
                            "the call was cancelled".to_owned(),
                            ::core::option::Option::None,
                        ))
                    })
                }
                __dropin_rt::RResult::RErr(error) => __dropin_rt::RResult::RErr(error),
            };
        }
    });
    quote! {
        #index => {
            #(#decodes)*
            #(let #idents = #passes;)*
            let outcome = (methods.#ident)(raw.this, #(#values,)* #made);
            #wait
            let outcome = match outcome {
                __dropin_rt::RResult::ROk(value) => {
                    __dropin_rt::RResult::ROk(<#ret as ::dropin::Stable>::from_ffi(value))
                }
                __dropin_rt::RResult::RErr(error) => __dropin_rt::RResult::RErr(error),
            };
            __dropin_rt::encode_service(&outcome, out);
            ::core::result::Result::Ok(())
        }
    }
}

/// `Trait::method`, for the object type `name` (`Box<dyn Trait>`).
fn qualified(name: &str, method: &syn::Ident) -> String {
    let name = name.trim_start_matches("Box<dyn ").trim_end_matches('>');
    format!("{name}::{}", unraw(method))
}
