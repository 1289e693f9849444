//! STUB until det-decode merges.
#![allow(dead_code)]
pub struct Transform {
    pub kind: TransformKind,
}
pub enum TransformKind {
    Invisible,
}
impl TransformKind {
    pub fn as_str(&self) -> &'static str {
        "invisible"
    }
}
pub struct Decoded {
    pub text: String,
    pub transforms: Vec<Transform>,
}
pub fn decode(text: &str) -> Decoded {
    let t = crate::text::normalize(text);
    let transforms = if t.as_ref() == text { vec![] } else { vec![Transform { kind: TransformKind::Invisible }] };
    Decoded { text: t.into_owned(), transforms }
}
