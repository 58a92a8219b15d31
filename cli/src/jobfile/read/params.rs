//! A typed parameter in `[params]`: `day = { type = "date", default = "2026-11-24" }` or
//! `day = { type = "date", required = true }`, beside the plain `name = "value"` ones; its type,
//! its default's type and the pair required-with-default are problems at their places.

use ferry_jobspec::check::shown;
use ferry_jobspec::fields;
use ferry_jobspec::pipeline::ParamType;
use ferry_proto::v1::ParamDecl;
use toml::de::DeValue;

use super::{Reader, Value};

const PARAM_KEYS: &[&str] = &["type", "default", "required"];

impl Reader<'_> {
    /// The declaration of the typed parameter `name`, whose value is a table; `None` when it
    /// has a problem (noted).
    pub(super) fn param_decl(&mut self, name: &str, value: &Value<'_>) -> Option<ParamDecl> {
        let table = self.table(value, &format!("params.{name}"))?;
        let before = self.problems.len();
        let mut decl = ParamDecl {
            name: name.to_owned(),
            ..<ParamDecl as Default>::default()
        };
        let (mut ty, mut has_type, mut default_at) = (None, false, 0);
        for (key, item) in table.iter() {
            let what = format!("params.{name}.{}", &**key.get_ref());
            match &**key.get_ref() {
                "type" => {
                    has_type = true;
                    let Some(text) = self.string(item, &what) else {
                        continue;
                    };
                    ty = ParamType::parse(&text);
                    if ty.is_none() {
                        self.push(
                            item.span().start,
                            format!(
                                "{what} {} is not a type: use {}",
                                shown(&text),
                                ParamType::NAMES
                            ),
                        );
                    }
                    decl.r#type = text;
                }
                "default" => {
                    if let Some(v) = self.scalar(item, &what) {
                        let problem = fields::param_value(&v);
                        self.limit(item, &what, problem);
                        default_at = item.span().start;
                        decl.default = Some(v);
                    }
                }
                "required" => match item.get_ref() {
                    DeValue::Boolean(b) => decl.required = *b,
                    _ => self.wrong_type(item, &what, "a boolean"),
                },
                _ => self.unknown_key(key, &format!("in params.{name}"), PARAM_KEYS),
            }
        }
        if !has_type {
            self.push(
                value.span().start,
                format!(
                    "params.{name} has no type: add type = \"string\" (or {})",
                    ParamType::NAMES
                ),
            );
        }
        if let (Some(ty), Some(default)) = (ty, &decl.default) {
            if !ty.accepts(default) {
                self.push(
                    default_at,
                    format!(
                        "params.{name}.default {} is not {}",
                        shown(default),
                        ty.described()
                    ),
                );
            }
        }
        if decl.required && decl.default.is_some() {
            self.push(
                value.span().start,
                format!("params.{name} is required and has a default: drop one of them"),
            );
        }
        (self.problems.len() == before).then_some(decl)
    }
}
