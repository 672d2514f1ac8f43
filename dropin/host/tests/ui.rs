//! What the type system holds an application to: a loader that runs
//! plugins in the application's process is built only inside `unsafe`;
//! one that isolates every plugin needs none.

#[test]
fn running_plugins_in_process_needs_unsafe_and_isolating_them_does_not() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
