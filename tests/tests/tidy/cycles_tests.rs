//! The import-cycle check on small trees written here: it finds a cycle, and only a cycle.

use super::cycles::find;

fn tree(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect()
}

/// The cycles found, printed as the test failure would print them.
fn cycles(files: &[(&str, &str)]) -> Vec<String> {
    let found: Vec<String> = find(&tree(files)).iter().map(ToString::to_string).collect();
    for cycle in &found {
        println!("{cycle}");
    }
    found
}

const ROOT: (&str, &str) = ("k/src/lib.rs", "//! Root.\nmod store;\n");
const STORE: (&str, &str) = ("k/src/store.rs", "//! Store.\nmod a;\nmod b;\nmod c;\n");

#[test]
fn a_cycle_of_two_siblings_is_found_and_named_with_its_files() {
    let found = cycles(&[
        ROOT,
        STORE,
        ("k/src/store/a.rs", "//! A.\nuse super::b::Thing;\n"),
        (
            "k/src/store/b.rs",
            "//! B.\n\nfn f() { crate::store::a::g(); }\n",
        ),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("k/src/store: a → b → a\n"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("a → b: k/src/store/a.rs:2"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("b → a: k/src/store/b.rs:3"),
        "{}",
        found[0]
    );
}

#[test]
fn one_way_dependencies_are_no_cycle() {
    let files = [
        ROOT,
        STORE,
        ("k/src/store/a.rs", "//! A.\nuse super::{b::Thing, c};\n"),
        (
            "k/src/store/b.rs",
            "//! B.\nuse super::c::*;\nuse crate::store::Store;\n",
        ),
        (
            "k/src/store/c.rs",
            "//! C.\npub(super) fn f() { super::super::store::g(); }\n",
        ),
    ];
    assert!(cycles(&files).is_empty());
}

#[test]
fn a_longer_cycle_through_a_submodule_and_a_use_tree_is_found() {
    let found = cycles(&[
        ROOT,
        STORE,
        ("k/src/store/a.rs", "//! A.\nmod deep;\n"),
        (
            "k/src/store/a/deep.rs",
            "//! Deep.\nuse super::super::{b::{self, X}};\n",
        ),
        (
            "k/src/store/b.rs",
            "//! B.\nuse crate::store::{c as other};\n",
        ),
        (
            "k/src/store/c.rs",
            "//! C.\nfn f() -> self::super::a::T { todo!() }\n",
        ),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("k/src/store: a → b → c → a\n"),
        "{}",
        found[0]
    );
}

#[test]
fn a_name_the_parent_imports_counts_as_its_module() {
    let store = "//! Store.\nmod a;\nmod b;\npub(crate) use self::b::Shared;\nuse a::Other;\n";
    let found = cycles(&[
        ROOT,
        ("k/src/store.rs", store),
        ("k/src/store/a.rs", "//! A.\nuse super::Shared;\n"),
        ("k/src/store/b.rs", "//! B.\nfn f(_: super::Other) {}\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn comments_strings_and_test_code_are_not_imports() {
    let b = "//! B.\n// use super::a::X;\n/* super::a::f() /* nested */ super::a::g() */\n\
             const S: &str = \"super::a::X\";\nconst R: &str = r#\"crate::store::a\"#;\n\
             const C: char = '\"'; fn f<'a>(_: &'a str) {}\n\
             #[cfg(test)]\nuse super::a::Y;\n#[cfg(test)]\nmod t { use super::super::a; }\n\
             #[cfg(test)]\nmod more;\n";
    let files = [
        ROOT,
        STORE,
        ("k/src/store/a.rs", "//! A.\nuse super::b::Thing;\n"),
        ("k/src/store/b.rs", b),
        (
            "k/src/store/b/more.rs",
            "//! Test helpers.\nuse crate::store::a;\n",
        ),
        ("k/src/store/b_tests.rs", "//! Tests.\nuse super::a;\n"),
        ("k/src/store/tests.rs", "//! Tests.\nuse super::a;\n"),
    ];
    assert!(cycles(&files).is_empty());
    // The same code outside a comment, a string and a test item is a cycle.
    let files = [
        ROOT,
        STORE,
        ("k/src/store/a.rs", "//! A.\nuse super::b::Thing;\n"),
        (
            "k/src/store/b.rs",
            "//! B.\nmod t { use super::super::a; }\n",
        ),
    ];
    assert_eq!(cycles(&files).len(), 1);
}

#[test]
fn crates_and_test_targets_are_apart() {
    // Two crates' `store` modules, and a test target's modules under `tests/x/`.
    let files = [
        ROOT,
        STORE,
        ("k/src/store/a.rs", "//! A.\nuse super::b::Thing;\n"),
        ("j/src/lib.rs", "//! J.\nmod store;\n"),
        ("j/src/store.rs", "//! Store.\nmod a;\nmod b;\n"),
        ("j/src/store/b.rs", "//! B.\nuse super::a::Thing;\n"),
        (
            "k/tests/x.rs",
            "//! X.\n#[path = \"x/p.rs\"]\nmod p;\n#[path = \"x/q.rs\"]\nmod q;\n",
        ),
        ("k/tests/x/p.rs", "//! P.\nuse crate::q;\n"),
        (
            "k/tests/y.rs",
            "//! Y.\nmod p { use crate::q::Q; }\nmod q {}\n",
        ),
    ];
    assert!(cycles(&files).is_empty());
    let files = [
        ("k/tests/x.rs", "//! X.\n"),
        ("k/tests/x/p.rs", "//! P.\nuse crate::q;\n"),
        ("k/tests/x/q.rs", "//! Q.\nuse super::p;\n"),
    ];
    assert_eq!(cycles(&files).len(), 1);
}
