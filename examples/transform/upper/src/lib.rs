//! A transform plugin: upper case. It cannot be undone.

use transform_interface::{BoxError, Context, Direction, Info, Transform, export_transform};

/// The plugin; it has no state.
#[derive(Debug)]
pub struct Upper;

impl Transform for Upper {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Upper)
    }

    fn info(&self) -> Info {
        Info {
            summary: "upper-cases text".to_owned(),
            inverse: None,
        }
    }

    fn apply(&self, text: &str, direction: Direction) -> Result<String, BoxError> {
        match direction {
            Direction::Forward => Ok(text.to_uppercase()),
            Direction::Backward => Err("upper case cannot be undone".into()),
        }
    }
}

export_transform!(Upper, name = "upper");
