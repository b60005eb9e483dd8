//! Publishing a JSON Schema generated from Rust types (feature `schema`):
//! one shape for every committed `*.schema.json`, so their diffs stay
//! readable.

use serde_json::{Map, Value};

/// Which way a type's schema describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// What the type accepts when it is read (input files).
    Deserialize,
    /// What the type writes (output formats, stored records).
    Serialize,
}

/// The draft 2020-12 JSON Schema of `T`, with its identity (`$schema`,
/// `$id`, `title`, `description`) first and then its shape.
pub fn published<T: schemars::JsonSchema>(direction: Direction) -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let settings = match direction {
        Direction::Deserialize => settings.for_deserialize(),
        Direction::Serialize => settings.for_serialize(),
    };
    let generated = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    let Value::Object(mut rest) = generated else {
        return generated;
    };
    let mut ordered = Map::new();
    for key in ["$schema", "$id", "title", "description"] {
        if let Some(value) = rest.shift_remove(key) {
            ordered.insert(key.to_owned(), value);
        }
    }
    ordered.extend(rest);
    Value::Object(ordered)
}
