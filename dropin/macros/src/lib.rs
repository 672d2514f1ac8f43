//! The procedural macros of [dropin](https://docs.rs/dropin): use them
//! through `dropin`'s re-exports, `#[dropin::interface]` and
//! `#[derive(dropin::Stable)]`.
//!
//! Each macro is a small pipeline: the input is parsed into a model of its
//! own (`ast`), checked with errors spanned on the offending tokens
//! (`ty` says which types may cross the boundary), then expanded
//! (`expand`, `derive`).

use proc_macro::TokenStream;
use syn::{DeriveInput, ItemTrait, parse_macro_input};

mod ast;
mod derive;
mod expand;
mod object;
mod services;
mod ty;

/// Declares a plugin interface on a trait. Documented where it is used from,
/// as `dropin::interface`.
#[proc_macro_attribute]
pub fn interface(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = parse_macro_input!(input as ItemTrait);
    let original = item.clone();
    match ast::Interface::parse(args.into(), item) {
        Ok(interface) => expand::interface(&interface).into(),
        // One mistake gives one message: the error, plus the trait as written
        // (without the attributes only this macro understands) so that its
        // uses do not fail too.
        Err(error) => {
            let fallback = ast::strip_since(original);
            let error = error.to_compile_error();
            quote::quote!(#error #fallback).into()
        }
    }
}

/// Declares the services a host offers the plugins of an interface, on a
/// trait. Documented where it is used from, as `dropin::services`.
#[proc_macro_attribute]
pub fn services(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = parse_macro_input!(input as ItemTrait);
    let original = item.clone();
    match ast::Interface::parse(args.into(), item) {
        Ok(declared) => services::services(&declared).into(),
        Err(error) => {
            let fallback = ast::strip_since(original);
            let error = error.to_compile_error();
            quote::quote!(#error #fallback).into()
        }
    }
}

/// Declares a trait whose objects a plugin returns to the application.
/// Documented where it is used from, as `dropin::object`.
#[proc_macro_attribute]
pub fn object(args: TokenStream, input: TokenStream) -> TokenStream {
    // On an implementation: its `async fn` methods as the trait has them.
    if let Ok(implementation) = syn::parse::<syn::ItemImpl>(input.clone()) {
        return object::implementation(implementation).into();
    }
    let item = parse_macro_input!(input as ItemTrait);
    let original = item.clone();
    match ast::Interface::parse(args.into(), item).and_then(|declared| object::object(&declared)) {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            let fallback = ast::strip_since(original);
            let error = error.to_compile_error();
            quote::quote!(#error #fallback).into()
        }
    }
}

/// Lets a struct or enum cross the plugin boundary. Documented where it is
/// used from, as `dropin::Stable`.
#[proc_macro_derive(Stable)]
pub fn derive_stable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive::stable(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
