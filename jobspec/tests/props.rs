//! Property tests: every pub check of `ferry_jobspec::check` takes any input without panicking,
//! and each problem it names is words (non-empty).

use ferry_jobspec::check::{self, Chars};
use ferry_jobspec::limits as l;
use proptest::prelude::*;

/// Texts a hostile client would send: any characters (NULs, controls, escapes, non-ASCII),
/// the edges of the limits, and sizes far past them.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f} ./a-zA-Z0-9_-]{0,40}",
        1 => prop::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect()),
        1 => (0usize..4, any::<char>(), prop::sample::select(vec![
            l::TASK_ID_MAX, l::PARAM_NAME_MAX, l::OUTPUT_PATH_MAX, l::SHELL_COMMAND_MAX,
        ]))
            .prop_map(|(delta, c, len)| c.to_string().repeat(len / c.len_utf8() + delta)),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just("a/../..".to_owned()),
    ]
}

fn chars() -> impl Strategy<Value = Chars> {
    prop::sample::select(vec![
        Chars::NoNul,
        Chars::NoControl,
        Chars::PrintableAscii,
        Chars::Graphic,
    ])
}

fn words(problem: Option<String>) {
    if let Some(p) = problem {
        assert!(!p.trim().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn text_checks_never_panic(value in text(), max in any::<usize>(), chars in chars(), required: bool) {
        let problem = check::text(&value, max, chars, required);
        if value.len() <= max && !(required && value.trim().is_empty()) {
            // Past the size and emptiness checks, only a refused character is a problem.
            prop_assert_eq!(problem.is_some(), value.chars().any(|c| match chars {
                Chars::NoNul => c == '\0',
                Chars::NoControl => c.is_control(),
                Chars::PrintableAscii => !(c == ' ' || c.is_ascii_graphic()),
                Chars::Graphic => !c.is_ascii_graphic(),
            }));
        }
        words(problem);
    }

    #[test]
    fn id_and_name_checks_never_panic(value in text()) {
        let id = check::task_id(&value);
        prop_assert_eq!(id.is_none(), check::is_task_id(&value)
            && value.len() <= l::TASK_ID_MAX && value != "." && value != "..");
        words(id);
        let name = check::param_name(&value);
        prop_assert_eq!(name.is_none(), check::is_param_name(&value)
            && value.len() <= l::PARAM_NAME_MAX);
        words(name);
        let path = check::output_path(&value);
        if path.is_none() {
            prop_assert!(!value.starts_with('/') && !value.split('/').any(|p| p == ".."));
        }
        words(path);
    }

    #[test]
    fn number_checks_never_panic(ms in any::<u64>(), max in any::<u64>(), n in any::<u64>(), count in any::<usize>(), limit in any::<usize>()) {
        prop_assert_eq!(check::duration_ms(ms, max).is_some(), ms > max);
        words(check::duration_ms(ms, max));
        prop_assert_eq!(check::max_attempts(n).is_some(), n > u64::from(l::MAX_ATTEMPTS_MAX));
        prop_assert_eq!(check::count(count, limit).is_some(), count > limit);
        prop_assert!(!check::human(ms).is_empty());
    }

    #[test]
    fn shown_and_truncate_keep_whole_characters(value in text(), max in prop_oneof![0usize..64, any::<usize>()]) {
        let shown = check::shown(&value);
        prop_assert!(shown.starts_with('"'));
        let mut cut = value.clone();
        check::truncate(&mut cut, max);
        prop_assert!(cut.len() <= max);
        prop_assert!(value.starts_with(&cut));
    }
}

#[test]
fn the_edges_of_the_numbers() {
    for ms in [0, 1, 999, 1_000, 60_000, 86_400_000, u64::MAX - 1, u64::MAX] {
        assert!(!check::human(ms).is_empty());
        assert!(check::duration_ms(ms, 0).is_some() || ms == 0);
    }
    assert_eq!(check::count(usize::MAX, usize::MAX), None);
}
