//! A permit type's flow: the steps an application goes through, in order, with the role that
//! acts at each, its deadline in working days, an optional guard and the effects of advancing.

use serde::{Deserialize, Serialize};

/// What advancing from a step does, from a vocabulary the runtime owns. The levy cycle adds
/// `assess_levy` and `require_payment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Assigns the permit number (the permit type's `[numbering] permit` format).
    IssuePermit,
}

impl Effect {
    /// Every effect with its name in `permit.toml`.
    pub const ALL: &'static [(&'static str, Effect)] = &[("issue_permit", Effect::IssuePermit)];

    pub fn parse(name: &str) -> Option<Effect> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::IssuePermit => "issue_permit",
        }
    }
}

/// One step of a flow (`[[flow]]` in `permit.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Step {
    /// Unique within the permit type: `[a-z0-9_]+`.
    pub step: String,
    pub label: String,
    /// Who may act at this step.
    pub role: String,
    /// Working days the step may take (the application's `step_due_on`).
    pub sla_days: Option<u32>,
    /// `fn <guard>(app, params)` in `flow.rhai`, asked before advancing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    pub effects: Vec<Effect>,
    /// The earlier steps a `return` from this step may go to; `None`: any earlier step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returns_to: Option<Vec<String>>,
}

impl Step {
    pub fn has_effect(&self, effect: Effect) -> bool {
        self.effects.contains(&effect)
    }
}

/// The steps of a permit type, in the order written. Empty when the permit type declares none
/// (it evaluates rules but carries no applications).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Flow {
    steps: Vec<Step>,
}

impl Flow {
    /// The steps as given; the release checks keys, roles and return targets before building
    /// one.
    pub fn new(steps: Vec<Step>) -> Self {
        Self { steps }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Where step `key` is in the flow.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.step == key)
    }

    pub fn step(&self, key: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.step == key)
    }

    /// The step an application starts at.
    pub fn first(&self) -> Option<&Step> {
        self.steps.first()
    }

    /// The step after `key`; `None` after the last step (advancing completes the application)
    /// or when `key` is not in the flow.
    pub fn next_after(&self, key: &str) -> Option<&Step> {
        self.position(key)
            .and_then(|at| at.checked_add(1))
            .and_then(|at| self.steps.get(at))
    }

    /// Whether an application at step `from` may be returned to step `to`: `to` comes before
    /// `from`, and is one of `from`'s `returns_to` when it lists any.
    pub fn may_return(&self, from: &str, to: &str) -> bool {
        let (Some(from_at), Some(to_at)) = (self.position(from), self.position(to)) else {
            return false;
        };
        to_at < from_at
            && self
                .steps
                .get(from_at)
                .and_then(|s| s.returns_to.as_ref())
                .is_none_or(|targets| targets.iter().any(|t| t == to))
    }
}

/// Whether `key` can name a step: `[a-z0-9_]+`.
pub fn valid_step_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(key: &str, returns_to: Option<&[&str]>) -> Step {
        Step {
            step: key.to_owned(),
            label: key.to_owned(),
            role: "front_office".to_owned(),
            sla_days: Some(1),
            guard: None,
            effects: Vec::new(),
            returns_to: returns_to.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn steps_follow_in_the_order_written() {
        let flow = Flow::new(vec![
            step("a", None),
            step("b", None),
            step("c", Some(&["a"])),
        ]);
        assert_eq!(flow.first().map(|s| s.step.as_str()), Some("a"));
        assert_eq!(flow.next_after("a").map(|s| s.step.as_str()), Some("b"));
        assert_eq!(flow.next_after("c"), None);
        assert_eq!(flow.next_after("x"), None);
        assert_eq!(flow.position("c"), Some(2));
        assert!(flow.may_return("b", "a"));
        assert!(
            !flow.may_return("b", "c"),
            "a return goes back, never forward"
        );
        assert!(!flow.may_return("b", "b"));
        assert!(flow.may_return("c", "a"));
        assert!(!flow.may_return("c", "b"), "c lists only a");
        assert!(Flow::default().first().is_none());
    }

    #[test]
    fn effects_and_keys_are_a_closed_vocabulary() {
        assert_eq!(Effect::parse("issue_permit"), Some(Effect::IssuePermit));
        assert_eq!(Effect::parse("assess_levy"), None);
        assert_eq!(
            serde_json::to_value(Effect::IssuePermit).unwrap(),
            "issue_permit"
        );
        assert!(valid_step_key("konsultasi_teknis"));
        assert!(valid_step_key("step2"));
        assert!(!valid_step_key("Konsultasi"));
        assert!(!valid_step_key("entri-data"));
        assert!(!valid_step_key(""));
    }
}
