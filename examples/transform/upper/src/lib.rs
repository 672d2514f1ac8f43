//! A transform plugin: upper case, except the words its host protects. It
//! cannot be undone.

use transform_interface::{
    BoxError, Context, Direction, Info, Transform, TransformHostHandle, export_transform,
};

/// The plugin: its handle to the host's services.
#[derive(Debug)]
pub struct Upper {
    host: TransformHostHandle,
}

impl Transform for Upper {
    fn init(context: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Upper {
            host: context.services::<TransformHostHandle>(),
        })
    }

    fn info(&self) -> Info {
        Info {
            summary: "upper-cases text".to_owned(),
            inverse: None,
        }
    }

    fn apply(&self, text: &str, direction: Direction) -> Result<String, BoxError> {
        match direction {
            Direction::Forward => {
                // A host without the service protects nothing.
                let protected = self.host.protected_words().unwrap_or_default();
                let words: Vec<String> = text
                    .split(' ')
                    .map(|word| {
                        let bare = word.trim_matches(|c: char| !c.is_alphanumeric());
                        if protected.iter().any(|kept| kept == bare) {
                            word.to_owned()
                        } else {
                            word.to_uppercase()
                        }
                    })
                    .collect();
                Ok(words.join(" "))
            }
            Direction::Backward => Err("upper case cannot be undone".into()),
        }
    }
}

export_transform!(Upper, name = "upper");
