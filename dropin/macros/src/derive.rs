//! What `#[derive(dropin::Stable)]` expands to: a `#[repr(C)]` mirror of the
//! type whose fields are their types' representations, the conversions both
//! ways, and the descriptor the host compares.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{Data, DeriveInput, Fields, Ident, spanned::Spanned};

use crate::ty::{self, Position};

pub fn stable(input: &DeriveInput) -> syn::Result<TokenStream> {
    if let Some(param) = input.generics.params.first() {
        return Err(syn::Error::new(
            param.span(),
            "a `dropin::Stable` type cannot be generic: the host must know every type when it is \
             compiled; declare a concrete type",
        ));
    }
    let ident = &input.ident;
    let vis = &input.vis;
    let mirror = format_ident!("__DropinFfi{}", ident);
    let name = ident.to_string();
    match &input.data {
        Data::Struct(data) => {
            check_fields(&data.fields)?;
            let decl = mirror_fields(&data.fields);
            let semi = matches!(data.fields, Fields::Unnamed(_) | Fields::Unit).then(|| quote!(;));
            let into = convert(&data.fields, quote!(#mirror), quote!(self), Direction::Into);
            let from = convert(&data.fields, quote!(#ident), quote!(ffi), Direction::From);
            let fields = field_descs(&data.fields);
            let wire = wire_struct(ident, &data.fields);
            Ok(quote! {
                #[doc(hidden)]
                #[repr(C)]
                #[allow(non_camel_case_types, missing_docs, missing_debug_implementations)]
                #vis struct #mirror #decl #semi

                // SAFETY: the mirror is `#[repr(C)]`, so its layout follows
                // from its fields' types in order, each described by its own
                // descriptor.
                unsafe impl ::dropin::Stable for #ident {
                    type Ffi = #mirror;
                    const DESC: &'static ::dropin::TypeDesc = &::dropin::TypeDesc {
                        fields: ::dropin::__private::RSlice::from_slice(&[#(#fields),*]),
                        ..::dropin::TypeDesc::leaf(
                            #name,
                            ::core::mem::size_of::<#mirror>(),
                            ::core::mem::align_of::<#mirror>(),
                        )
                    };
                    #[inline]
                    fn into_ffi(self) -> #mirror {
                        #into
                    }
                    #[inline]
                    fn from_ffi(ffi: #mirror) -> Self {
                        #from
                    }
                }

                #wire
            })
        }
        Data::Enum(data) => {
            if data.variants.is_empty() {
                return Err(syn::Error::new(
                    ident.span(),
                    "an enum without variants cannot cross the plugin boundary",
                ));
            }
            let mut decls = Vec::new();
            let mut intos = Vec::new();
            let mut froms = Vec::new();
            let mut variants = Vec::new();
            for variant in &data.variants {
                check_fields(&variant.fields)?;
                let v = &variant.ident;
                let decl = mirror_fields(&variant.fields);
                decls.push(quote!(#v #decl));
                let (pattern, mirror_build) =
                    destructure(&variant.fields, quote!(#mirror::#v), Direction::Into);
                intos.push(quote!(#ident::#v #pattern => #mirror_build));
                let (pattern, own_build) =
                    destructure(&variant.fields, quote!(#ident::#v), Direction::From);
                froms.push(quote!(#mirror::#v #pattern => #own_build));
                let fields = field_descs(&variant.fields);
                let variant_name = v.to_string();
                variants.push(quote! {
                    ::dropin::VariantDesc {
                        name: ::dropin::__private::RStr::from_str(#variant_name),
                        fields: ::dropin::__private::RSlice::from_slice(&[#(#fields),*]),
                    }
                });
            }
            let wire = wire_enum(ident, data);
            Ok(quote! {
                #[doc(hidden)]
                #[repr(u8)]
                #[allow(non_camel_case_types, missing_docs, missing_debug_implementations)]
                #vis enum #mirror {
                    #(#decls,)*
                }

                // SAFETY: the mirror is `#[repr(u8)]`: a union of
                // `#[repr(C)]` structs, one per variant, each a `u8` tag (the
                // variant's index) followed by the variant's fields, so its
                // layout follows from the variants in order and their fields'
                // types in order.
                unsafe impl ::dropin::Stable for #ident {
                    type Ffi = #mirror;
                    const DESC: &'static ::dropin::TypeDesc = &::dropin::TypeDesc {
                        variants: ::dropin::__private::RSlice::from_slice(&[#(#variants),*]),
                        ..::dropin::TypeDesc::leaf(
                            #name,
                            ::core::mem::size_of::<#mirror>(),
                            ::core::mem::align_of::<#mirror>(),
                        )
                    };
                    #[inline]
                    fn into_ffi(self) -> #mirror {
                        match self {
                            #(#intos,)*
                        }
                    }
                    #[inline]
                    fn from_ffi(ffi: #mirror) -> Self {
                        match ffi {
                            #(#froms,)*
                        }
                    }
                }

                #wire
            })
        }
        Data::Union(data) => Err(syn::Error::new(
            data.union_token.span(),
            "a union cannot cross the plugin boundary: nothing tells which field is set; use an \
             enum",
        )),
    }
}

fn check_fields(fields: &Fields) -> syn::Result<()> {
    for field in fields {
        ty::check(&field.ty, Position::Owned)?;
    }
    Ok(())
}

/// `{ x: <f64 as Stable>::Ffi, .. }` or `(<f64 as Stable>::Ffi, ..)`.
fn mirror_fields(fields: &Fields) -> TokenStream {
    let types = fields.iter().map(|field| {
        let ty = &field.ty;
        let ffi = quote_spanned!(ty.span()=> <#ty as ::dropin::Stable>::Ffi);
        match &field.ident {
            Some(name) => quote!(#name: #ffi),
            None => ffi,
        }
    });
    match fields {
        Fields::Named(_) => quote!({ #(#types),* }),
        Fields::Unnamed(_) => quote!((#(#types),*)),
        Fields::Unit => quote!(),
    }
}

fn field_descs(fields: &Fields) -> Vec<TokenStream> {
    fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let ty = &field.ty;
            let name = field
                .ident
                .as_ref()
                .map_or_else(|| i.to_string(), ToString::to_string);
            quote! {
                ::dropin::FieldDesc {
                    name: ::dropin::__private::RStr::from_str(#name),
                    ty: <#ty as ::dropin::Stable>::DESC,
                }
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Direction {
    Into,
    From,
}

fn convert_value(direction: Direction, value: TokenStream) -> TokenStream {
    match direction {
        Direction::Into => quote!(::dropin::Stable::into_ffi(#value)),
        Direction::From => quote!(::dropin::Stable::from_ffi(#value)),
    }
}

/// Builds `target` from the fields of the struct value `source`.
fn convert(
    fields: &Fields,
    target: TokenStream,
    source: TokenStream,
    direction: Direction,
) -> TokenStream {
    match fields {
        Fields::Named(named) => {
            let inits = named.named.iter().map(|field| {
                let name = &field.ident;
                let value = convert_value(direction, quote!(#source.#name));
                quote!(#name: #value)
            });
            quote!(#target { #(#inits),* })
        }
        Fields::Unnamed(unnamed) => {
            let inits = (0..unnamed.unnamed.len()).map(|i| {
                let index = syn::Index::from(i);
                convert_value(direction, quote!(#source.#index))
            });
            quote!(#target(#(#inits),*))
        }
        Fields::Unit => quote!(#target),
    }
}

/// The pattern binding a variant's fields, and the other side's variant built
/// from them.
fn destructure(
    fields: &Fields,
    target: TokenStream,
    direction: Direction,
) -> (TokenStream, TokenStream) {
    let names = field_names(fields);
    let values = names
        .iter()
        .map(|name| convert_value(direction, quote!(#name)));
    match fields {
        Fields::Named(_) => (
            quote!({ #(#names),* }),
            quote!(#target { #(#names: #values),* }),
        ),
        Fields::Unnamed(_) => (quote!((#(#names),*)), quote!(#target(#(#values),*))),
        Fields::Unit => (quote!(), target),
    }
}

/// `Encode` and `Decode` for a struct: its fields in order.
fn wire_struct(ident: &Ident, fields: &Fields) -> TokenStream {
    let (pattern, build) = destructure_plain(fields, quote!(#ident));
    let names = field_names(fields);
    let types = fields.iter().map(|field| &field.ty);
    quote! {
        impl ::dropin::wire::Encode for #ident {
            fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                let #ident #pattern = self;
                #(::dropin::wire::Encode::encode(#names, out);)*
            }
        }

        impl ::dropin::wire::Decode for #ident {
            fn decode(input: &mut &[u8]) -> ::core::result::Result<Self, ::dropin::wire::WireError> {
                #(let #names = <#types as ::dropin::wire::Decode>::decode(input)?;)*
                ::core::result::Result::Ok(#build)
            }
        }
    }
}

/// `Encode` and `Decode` for an enum: the variant's index as a `u32`, then
/// its fields in order.
fn wire_enum(ident: &Ident, data: &syn::DataEnum) -> TokenStream {
    let mut encodes = Vec::new();
    let mut decodes = Vec::new();
    for (index, variant) in data.variants.iter().enumerate() {
        let v = &variant.ident;
        let index = u32::try_from(index).expect("fewer than 2^32 variants");
        let (pattern, build) = destructure_plain(&variant.fields, quote!(#ident::#v));
        let names = field_names(&variant.fields);
        let types = variant.fields.iter().map(|field| &field.ty);
        let encoded = names.clone();
        encodes.push(quote! {
            #ident::#v #pattern => {
                ::dropin::wire::Encode::encode(&#index, out);
                #(::dropin::wire::Encode::encode(#encoded, out);)*
            }
        });
        decodes.push(quote! {
            #index => {
                #(let #names = <#types as ::dropin::wire::Decode>::decode(input)?;)*
                ::core::result::Result::Ok(#build)
            }
        });
    }
    let name = ident.to_string();
    quote! {
        impl ::dropin::wire::Encode for #ident {
            fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                match self {
                    #(#encodes)*
                }
            }
        }

        impl ::dropin::wire::Decode for #ident {
            fn decode(input: &mut &[u8]) -> ::core::result::Result<Self, ::dropin::wire::WireError> {
                match <u32 as ::dropin::wire::Decode>::decode(input)? {
                    #(#decodes)*
                    other => ::core::result::Result::Err(::dropin::wire::WireError(::std::format!(
                        "{} has no variant {}", #name, other
                    ))),
                }
            }
        }
    }
}

fn field_names(fields: &Fields) -> Vec<Ident> {
    fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            field
                .ident
                .clone()
                .unwrap_or_else(|| format_ident!("__field{}", i))
        })
        .collect()
}

/// The pattern binding a struct's or variant's fields by name, and the value
/// built back from those names.
fn destructure_plain(fields: &Fields, target: TokenStream) -> (TokenStream, TokenStream) {
    let names = field_names(fields);
    match fields {
        Fields::Named(_) => (quote!({ #(#names),* }), quote!(#target { #(#names),* })),
        Fields::Unnamed(_) => (quote!((#(#names),*)), quote!(#target(#(#names),*))),
        Fields::Unit => (quote!(), target),
    }
}
