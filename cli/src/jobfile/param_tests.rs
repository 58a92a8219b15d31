//! Typed parameters in `[params]`: read beside the plain ones, each problem at its place, and
//! resolved with `--param` when a job file is submitted.

use super::{load, parse, parse_file};

const TYPED: &str = r#"name = "etl"

[params]
region = "eu"
day = { type = "date", required = true }
count = { type = "int", default = 3 }

[[tasks]]
id = "t"
shell = "echo $FERRY_PARAM_DAY"
"#;

#[test]
fn typed_parameters_are_read_beside_plain_ones() {
    let file = parse_file("etl.toml", TYPED).unwrap();
    assert_eq!(file.spec.params.len(), 1, "only the plain one is a default");
    assert_eq!(file.spec.params["region"], "eu");
    let mut names: Vec<(&str, &str, Option<&str>, bool)> = file
        .params
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.r#type.as_str(),
                p.default.as_deref(),
                p.required,
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("count", "int", Some("3"), false),
            ("day", "date", None, true)
        ]
    );
}

#[test]
fn bad_declarations_are_named_at_their_place() {
    let source = r#"name = "etl"
[params]
a = { type = "dat" }
b = { type = "int", default = "many" }
c = { type = "bool", default = true, required = true }
d = { default = "x", colour = "red" }
[[tasks]]
id = "t"
shell = "true"
"#;
    assert_eq!(
        parse("etl.toml", source).unwrap_err().problems,
        vec![
            "etl.toml:3:14: params.a.type \"dat\" is not a type: use string, int, date, timestamp or bool",
            "etl.toml:4:31: params.b.default \"many\" is not an int (a whole number such as 42)",
            "etl.toml:5:5: params.c is required and has a default: drop one of them",
            "etl.toml:6:5: params.d has no type: add type = \"string\" (or string, int, date, timestamp or bool)",
            "etl.toml:6:22: unknown key \"colour\" in params.d; allowed: type, default, required",
        ]
    );
}

#[test]
fn a_submit_resolves_typed_parameters_or_names_the_refused_one() {
    let dir = std::env::temp_dir().join(format!("ferry-param-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("etl.toml");
    std::fs::write(&path, TYPED).unwrap();
    let given = [("day".to_string(), "2026-11-24".to_string())];
    let spec = load(&path, &given).unwrap();
    assert_eq!(spec.params["day"], "2026-11-24");
    assert_eq!(spec.params["count"], "3");
    assert_eq!(spec.params["region"], "eu");
    let err = load(&path, &[]).unwrap_err().to_string();
    assert!(err.contains("missing required parameter \"day\""), "{err}");
    let bad = [
        ("day".to_string(), "2026-11-24".to_string()),
        ("count".to_string(), "x".to_string()),
    ];
    let err = load(&path, &bad).unwrap_err().to_string();
    assert!(
        err.contains("parameter \"count\" is \"x\", which is not an int"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
