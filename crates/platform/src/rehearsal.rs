//! One rehearsal engine for every scenario: a lab gives its five typed steps, the
//! engine runs them in the same order every time and collects the verdicts; printing
//! them is the binary's business.

use crate::lab::Boxed;
use crate::stage::StageError;

/// The steps of a rehearsal, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The trigger reproduces the bug.
    Reproduced,
    /// The telemetry the story names shows it.
    Symptom,
    /// `breakroom check` fails while the bug is in.
    CheckFails,
    /// With the fix, the check passes.
    Fixed,
    /// The reset puts the lab back as it was before the talk.
    Reset,
}

impl Step {
    pub const ALL: [Step; 5] = [Step::Reproduced, Step::Symptom, Step::CheckFails, Step::Fixed, Step::Reset];

    /// The column heading of the rehearsal table.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reproduced => "reproduced",
            Step::Symptom => "symptom",
            Step::CheckFails => "check fails",
            Step::Fixed => "fixed",
            Step::Reset => "reset",
        }
    }
}

/// What one step found: passed, failed, or not applicable here (and why).
#[derive(Debug, Clone)]
pub struct Judgement {
    pub ok: Option<bool>,
    pub detail: String,
}

impl Judgement {
    pub fn new(ok: bool, detail: impl Into<String>) -> Judgement {
        Judgement { ok: Some(ok), detail: detail.into() }
    }

    pub fn not_applicable(why: impl Into<String>) -> Judgement {
        Judgement { ok: None, detail: why.into() }
    }

    /// A check's outcome (`Ok(what passed)` or `Err(what failed)`) judged by a step that
    /// expects it to pass (`fix`) or to fail (`check_fails`).
    pub fn of_check(outcome: Result<String, String>, should_pass: bool) -> Judgement {
        match outcome {
            Ok(passed) if should_pass => Judgement::new(true, passed),
            Ok(passed) => Judgement::new(false, format!("the check passed: {passed}")),
            Err(failed) => Judgement::new(!should_pass, failed),
        }
    }
}

/// One step's judgement.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub step: Step,
    pub ok: Option<bool>,
    pub detail: String,
}

/// What a rehearsal step answers.
pub type Judged<'a> = Boxed<'a, Result<Judgement, StageError>>;

/// A scenario's steps on a running lab. Each step may keep what the next needs.
pub trait Rehearsal: Send {
    /// Brings the lab to its pre-talk state before the first step.
    fn prepare(&mut self) -> Boxed<'_, Result<(), StageError>>;
    /// The trigger, and whether it reproduced the bug.
    fn reproduce(&mut self) -> Judged<'_>;
    /// Whether the symptom the story names shows.
    fn symptom(&mut self) -> Judged<'_>;
    /// Whether the check fails while the bug is in.
    fn check_fails(&mut self) -> Judged<'_>;
    /// The fix, and whether the check passes with it.
    fn fix(&mut self) -> Judged<'_>;
    /// The reset, and whether the lab is as before the talk.
    fn reset(&mut self) -> Judged<'_>;
    /// After a step could not run: leaves the lab as a talk needs it.
    fn recover(&mut self) -> Boxed<'_, ()> {
        Box::pin(async {})
    }
}

/// Runs every step of `rehearsal` in order. A step that cannot run ends the
/// rehearsal with its error, after [`Rehearsal::recover`].
pub async fn run(rehearsal: &mut dyn Rehearsal) -> Result<Vec<Verdict>, StageError> {
    let outcome = steps(rehearsal).await;
    if outcome.is_err() {
        rehearsal.recover().await;
    }
    outcome
}

async fn steps(rehearsal: &mut dyn Rehearsal) -> Result<Vec<Verdict>, StageError> {
    rehearsal.prepare().await?;
    let mut verdicts = Vec::new();
    for step in Step::ALL {
        let judgement = match step {
            Step::Reproduced => rehearsal.reproduce().await?,
            Step::Symptom => rehearsal.symptom().await?,
            Step::CheckFails => rehearsal.check_fails().await?,
            Step::Fixed => rehearsal.fix().await?,
            Step::Reset => rehearsal.reset().await?,
        };
        verdicts.push(Verdict { step, ok: judgement.ok, detail: judgement.detail });
    }
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the order its steps ran in; fails the step it is told to.
    struct Recorder {
        ran: Vec<&'static str>,
        error_at: Option<&'static str>,
    }

    impl Recorder {
        fn step(&mut self, name: &'static str) -> Judged<'_> {
            self.ran.push(name);
            let fail = self.error_at == Some(name);
            Box::pin(async move {
                if fail { Err(StageError(format!("{name} could not run"))) } else { Ok(Judgement::new(true, name)) }
            })
        }
    }

    impl Rehearsal for Recorder {
        fn prepare(&mut self) -> Boxed<'_, Result<(), StageError>> {
            self.ran.push("prepare");
            Box::pin(async { Ok(()) })
        }
        fn reproduce(&mut self) -> Judged<'_> {
            self.step("reproduce")
        }
        fn symptom(&mut self) -> Judged<'_> {
            self.step("symptom")
        }
        fn check_fails(&mut self) -> Judged<'_> {
            self.step("check_fails")
        }
        fn fix(&mut self) -> Judged<'_> {
            self.step("fix")
        }
        fn reset(&mut self) -> Judged<'_> {
            self.step("reset")
        }
        fn recover(&mut self) -> Boxed<'_, ()> {
            self.ran.push("recover");
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn every_step_runs_once_in_order_and_is_named_by_its_step() {
        let mut recorder = Recorder { ran: Vec::new(), error_at: None };
        let verdicts = run(&mut recorder).await.unwrap();
        assert_eq!(recorder.ran, ["prepare", "reproduce", "symptom", "check_fails", "fix", "reset"]);
        let steps: Vec<Step> = verdicts.iter().map(|v| v.step).collect();
        assert_eq!(steps, Step::ALL);
        assert_eq!(verdicts[3].detail, "fix");
    }

    #[tokio::test]
    async fn a_step_that_cannot_run_stops_the_rehearsal_and_recovers_the_lab() {
        let mut recorder = Recorder { ran: Vec::new(), error_at: Some("symptom") };
        let error = run(&mut recorder).await.unwrap_err();
        assert_eq!(error.0, "symptom could not run");
        assert_eq!(recorder.ran, ["prepare", "reproduce", "symptom", "recover"]);
    }
}
