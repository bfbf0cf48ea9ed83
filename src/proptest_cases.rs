//! The number of cases each property test runs: `PROPTEST_CASES` when set (a long run: e.g.
//! `PROPTEST_CASES=10000 cargo test props`), else 64, which keeps CI short.

pub(crate) fn bounded() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    proptest::test_runner::Config {
        cases,
        ..proptest::test_runner::Config::default()
    }
}
