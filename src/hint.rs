//! `breakroom hint SCENARIO`: the scenario's three hints, one more each time it is
//! asked — where to look, what is wrong, the shape of the fix — never the code itself
//! (that is `breakroom explain`). How many an attendee has seen is remembered in the
//! data directory of the machine they ask on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::labs::scenario_named;
use platform::stage::StageError;

#[derive(Debug, Args)]
pub struct HintArgs {
    /// The scenario (`vote/referral`) or its lab (`vote`)
    pub scenario: String,
    /// Print every hint at once (and remember them as seen)
    #[arg(long)]
    pub all: bool,
    /// Forget the hints seen for this scenario and start again from the first
    #[arg(long)]
    pub again: bool,
    /// Where the hints already seen are remembered
    #[arg(long, env = "BREAKROOM_DATA_DIR", default_value_os_t = platform::config::default_data_dir())]
    pub data_dir: PathBuf,
}

const FILE: &str = "hints-seen.json";

/// The hints seen so far, by scenario; a file that cannot be read counts as none seen,
/// with a note saying so.
fn seen(dir: &Path, notes: &mut Vec<String>) -> BTreeMap<String, usize> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(error) => {
            notes.push(format!("{} could not be read ({error}): counting from the first hint", path.display()));
            return BTreeMap::new();
        }
    };
    serde_json::from_str(&text).unwrap_or_else(|_| {
        notes.push(format!("{} is not what breakroom wrote: counting from the first hint", path.display()));
        BTreeMap::new()
    })
}

/// How many of `scenario`'s hints have been seen here, when that is known.
pub fn seen_count(dir: &Path, scenario: &str) -> Option<usize> {
    seen(dir, &mut Vec::new()).get(scenario).copied()
}

/// Remembers the hints seen; a note when it cannot (the hint is still shown).
fn remember(dir: &Path, seen: &BTreeMap<String, usize>, notes: &mut Vec<String>) {
    let write = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(dir.join(FILE), serde_json::to_string_pretty(seen).unwrap_or_default()));
    if let Err(error) = write {
        notes.push(format!(
            "not remembered ({error}): the next ask shows this hint again; set --data-dir to a writable directory"
        ));
    }
}

/// Prints the next hint (or all of them); returns the text.
pub fn run(args: &HintArgs) -> Result<String, StageError> {
    let scenario = scenario_named(&args.scenario)?;
    let mut notes = Vec::new();
    let mut memory = seen(&args.data_dir, &mut notes);
    let before = if args.again { 0 } else { memory.get(scenario.name).copied().unwrap_or(0) };
    let total = scenario.hints.len();
    let mut out = format!("{} — {}\n\n", scenario.name, scenario.title);
    let shown = if args.all {
        for (i, hint) in scenario.hints.iter().enumerate() {
            out.push_str(&format!("Hint {} of {total}: {hint}\n\n", i + 1));
        }
        total
    } else {
        let next = (before + 1).min(total);
        out.push_str(&format!("Hint {next} of {total}: {}\n\n", scenario.hints[next - 1]));
        next
    };
    if shown < total {
        out.push_str(&format!("Stuck still? `breakroom hint {}` again for the next one.\n", scenario.name));
    } else {
        if before >= total && !args.all {
            out.push_str("That was already the last hint.\n");
        }
        out.push_str(&format!(
            "No hints left: `breakroom explain {}` prints the reference fix; `breakroom check {}` tells you when yours works.\n",
            scenario.name, scenario.name
        ));
    }
    memory.insert(scenario.name.to_string(), shown);
    remember(&args.data_dir, &memory, &mut notes);
    for note in notes {
        out.push_str(&format!("Note: {note}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labs::scenarios;

    #[test]
    fn every_scenario_has_three_distinct_hints_that_do_not_give_the_code_away() {
        for s in scenarios() {
            let [a, b, c] = s.hints;
            assert!(a != b && b != c && a != c, "{}: three different hints", s.name);
            for hint in s.hints {
                assert!(hint.len() > 40, "{}: a hint says something: {hint}", s.name);
                assert!(!hint.contains("```") && !hint.contains("fn "), "{}: no code in a hint: {hint}", s.name);
            }
        }
    }

    fn args(dir: &Path, scenario: &str, all: bool, again: bool) -> HintArgs {
        HintArgs { scenario: scenario.into(), all, again, data_dir: dir.to_path_buf() }
    }

    #[test]
    fn each_ask_shows_the_next_hint_and_it_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let hints = scenario_named("vote").unwrap().hints;
        let first = run(&args(dir.path(), "vote", false, false)).unwrap();
        assert!(first.contains(&format!("Hint 1 of 3: {}", hints[0])), "{first}");
        assert!(!first.contains(hints[1]), "only the first: {first}");
        let second = run(&args(dir.path(), "vote/referral", false, false)).unwrap();
        assert!(second.contains(&format!("Hint 2 of 3: {}", hints[1])) && !second.contains(hints[0]), "{second}");
        // Another scenario's hints are counted on their own.
        assert!(run(&args(dir.path(), "items", false, false)).unwrap().contains("Hint 1 of 3"));
        let third = run(&args(dir.path(), "vote", false, false)).unwrap();
        assert!(third.contains("Hint 3 of 3") && third.contains("breakroom explain vote"), "{third}");
        let again = run(&args(dir.path(), "vote", false, false)).unwrap();
        assert!(again.contains("Hint 3 of 3") && again.contains("already the last hint"), "{again}");
        let restart = run(&args(dir.path(), "vote", false, true)).unwrap();
        assert!(restart.contains("Hint 1 of 3"), "--again starts over: {restart}");
        let all = run(&args(dir.path(), "datasets", true, false)).unwrap();
        for (i, hint) in scenario_named("datasets").unwrap().hints.iter().enumerate() {
            assert!(all.contains(&format!("Hint {} of 3: {hint}", i + 1)), "{all}");
        }
        // A data directory that cannot be written: the hint still shows, with a note.
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let unwritable = run(&args(&file, "vote", false, false)).unwrap();
        assert!(unwritable.contains("Hint 1 of 3") && unwritable.contains("not remembered"), "{unwritable}");
        std::fs::write(dir.path().join(FILE), "not json").unwrap();
        let corrupt = run(&args(dir.path(), "vote", false, false)).unwrap();
        assert!(corrupt.contains("Hint 1 of 3") && corrupt.contains("counting from the first hint"), "{corrupt}");
        let error = run(&args(dir.path(), "nope", false, false)).unwrap_err();
        assert!(error.0.contains("unknown scenario 'nope'") && error.0.contains("vote/referral"), "{}", error.0);
    }
}
