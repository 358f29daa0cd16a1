//! The poll: its question, its five choices in their fixed order, and a tally of them.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

pub const QUESTION: &str = "What's your go-to debugging strategy?";

/// One of the five choices, by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ChoiceKey)]
pub enum Choice {
    Print,
    Stare,
    Ai,
    Revert,
    Restart,
}

impl Choice {
    pub const ALL: [Choice; 5] = [Choice::Print, Choice::Stare, Choice::Ai, Choice::Revert, Choice::Restart];

    pub fn key(self) -> &'static str {
        match self {
            Choice::Print => "print",
            Choice::Stare => "stare",
            Choice::Ai => "ai",
            Choice::Revert => "revert",
            Choice::Restart => "restart",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Choice::Print => "Add more print statements",
            Choice::Stare => "Stare at the code until it confesses",
            Choice::Ai => "Ask an AI to explain it",
            Choice::Revert => "Revert and pretend it never happened",
            Choice::Restart => "Turn it off and on again",
        }
    }

    pub fn parse(key: &str) -> Option<Choice> {
        Choice::ALL.into_iter().find(|c| c.key() == key)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// "print, stare, ai, revert, restart", for error messages.
    pub fn keys_listed() -> String {
        Choice::ALL.map(Choice::key).join(", ")
    }
}

/// Votes per choice. Serializes as the `/votes` body: every key, always, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally(pub [i64; 5]);

impl Tally {
    pub fn get(&self, choice: Choice) -> i64 {
        self.0[choice.index()]
    }
}

/// One choice's votes.
#[derive(Serialize, ToSchema)]
#[schema(as = CountBody)]
pub struct Entry {
    count: i64,
    label: &'static str,
}

impl Serialize for Tally {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Choice::ALL.len()))?;
        for choice in Choice::ALL {
            map.serialize_entry(choice.key(), &Entry { count: self.get(choice), label: choice.label() })?;
        }
        map.end()
    }
}

/// `GET /votes`: every choice, always, in the ballot's order.
impl PartialSchema for Tally {
    fn schema() -> RefOr<Schema> {
        let mut object =
            ObjectBuilder::new().description(Some("`GET /votes`: every choice, always, in the ballot's order."));
        for choice in Choice::ALL {
            object = object.property(choice.key(), Ref::from_schema_name(Entry::name())).required(choice.key());
        }
        RefOr::T(Schema::Object(object.build()))
    }
}

impl ToSchema for Tally {
    fn name() -> std::borrow::Cow<'static, str> {
        "TallyBody".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Entry::name().into(), Entry::schema()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_serializes_every_choice_in_order() {
        let mut tally = Tally::default();
        tally.0[Choice::Ai.index()] = 3;
        let json = serde_json::to_string(&tally).unwrap();
        assert!(json.starts_with(r#"{"print":{"count":0,"label":"Add more print statements"},"stare":"#), "{json}");
        assert!(json.contains(r#""ai":{"count":3,"label":"Ask an AI to explain it"}"#), "{json}");
        assert!(json.ends_with(r#""restart":{"count":0,"label":"Turn it off and on again"}}"#), "{json}");
    }

    #[test]
    fn choices_parse_only_their_exact_keys() {
        assert_eq!(Choice::parse("ai"), Some(Choice::Ai));
        assert_eq!(Choice::parse("AI"), None);
        assert_eq!(Choice::parse(""), None);
        assert_eq!(Choice::keys_listed(), "print, stare, ai, revert, restart");
    }
}
