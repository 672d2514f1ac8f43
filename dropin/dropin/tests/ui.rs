//! Compile-fail tests: every unsupported signature is an error pointing at
//! the offending tokens and saying what to use instead.

#[test]
fn unsupported_interfaces_and_exports_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
