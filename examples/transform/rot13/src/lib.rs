//! A transform plugin: ROT13, its own inverse. It rotates bytes too, with
//! a method of interface 1.1.

use transform_interface::{BoxError, Context, Direction, Info, Transform, export_transform};

/// The plugin; it has no state.
#[derive(Debug)]
pub struct Rot13;

fn rotate(byte: u8) -> u8 {
    match byte {
        b'a'..=b'z' => (byte - b'a' + 13) % 26 + b'a',
        b'A'..=b'Z' => (byte - b'A' + 13) % 26 + b'A',
        other => other,
    }
}

impl Transform for Rot13 {
    fn init(_: &Context<'_>) -> Result<Self, BoxError> {
        Ok(Rot13)
    }

    fn info(&self) -> Info {
        Info {
            summary: "rotates letters by 13 places".to_owned(),
            inverse: Some("rot13".to_owned()),
        }
    }

    // Rotating twice is the identity: both directions are the same.
    fn apply(&self, text: &str, _: Direction) -> Result<String, BoxError> {
        Ok(text
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    rotate(c as u8) as char
                } else {
                    c
                }
            })
            .collect())
    }

    fn apply_bytes(&self, bytes: &[u8], _: Direction) -> Result<Vec<u8>, BoxError> {
        Ok(bytes.iter().copied().map(rotate).collect())
    }
}

export_transform!(Rot13, name = "rot13");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotating_twice_gives_the_text_back() {
        let rot13 = Rot13::init(&Context::new("rot13", ".".as_ref(), "")).unwrap();
        let once = rot13.apply("Hello, World!", Direction::Forward).unwrap();
        assert_eq!(once, "Uryyb, Jbeyq!");
        assert_eq!(
            rot13.apply(&once, Direction::Backward).unwrap(),
            "Hello, World!"
        );
    }
}
