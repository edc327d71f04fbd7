//! One model for every problem missionctl reports about a pack repository.
//!
//! A [`Diagnostic`] names a stable [`Code`], the file and the 1-based line and
//! column, a message and a hint on how to fix it. It may point at related
//! places (for a hard-constraint break: the child's line and the policy's
//! line). Renderers in [`render`] turn the same list into a human report with
//! a caret snippet, JSON, or GitHub workflow commands, so the CLI, the gate's
//! evidence and the pull-request annotations always agree.

pub mod render;

use serde::{Deserialize, Serialize};

use crate::yaml::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal ),* $(,)?) => {
        /// Stable diagnostic codes. The text form is what users see and what
        /// tooling may match on; never reuse or rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $( $(#[$doc])* $variant, )* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $text, )* }
            }
        }
    };
}

codes! {
    /// The file is not valid YAML.
    YamlSyntax = "yaml/syntax",
    /// The file hit a parser budget (alias bomb, nesting, size).
    YamlBudget = "yaml/budget",
    /// A required field is missing.
    SchemaRequired = "schema/required",
    /// A field has the wrong type.
    SchemaType = "schema/type",
    /// A field that the format does not know.
    SchemaUnknownKey = "schema/unknown-key",
    /// A value outside the allowed set.
    SchemaEnum = "schema/enum",
    /// A value that does not match the expected pattern (ids, semver).
    SchemaPattern = "schema/pattern",
    /// Any other schema rule (ranges, lengths, counts).
    SchemaValue = "schema/value",
    /// A required repository file is missing (mission.yaml, policies).
    FileMissing = "file/missing",
    /// A file is larger than the cap for its kind.
    FileTooLarge = "file/too-large",
    /// A file is not UTF-8 text.
    FileNotText = "file/not-text",
    /// A file under packs/ or policies/ that missionctl does not recognise.
    FileUnexpected = "file/unexpected",
    /// A referenced file does not exist.
    RefMissing = "ref/missing",
    /// A reference leaves the repository (`..`, absolute path, symlink out).
    RefEscape = "ref/escape",
    /// A reference names a directory or other non-file.
    RefNotFile = "ref/not-file",
    /// Two packs, scopes, sections or cases share an id.
    DuplicateId = "id/duplicate",
    /// A skill's SKILL.md has no valid frontmatter (`name`, `description`),
    /// or its name differs from its folder's.
    SkillInvalid = "skill/invalid",
    /// A layer adds a skill an ancestor on the same chain already adds: the
    /// ancestor's wins, so this one is never served.
    SkillShadowed = "skill/shadowed",
    /// A scope names a parent that does not exist.
    UnknownParent = "scope/unknown-parent",
    /// The declared scope does not match where the file lives.
    ScopeMismatch = "scope/path-mismatch",
    /// A pack allows a tool the global policy forbids.
    ForbiddenTool = "constraint/forbidden-tool",
    /// A pack's autonomy exceeds the policy or tier ceiling.
    AutonomyCeiling = "constraint/autonomy-ceiling",
    /// A pack names an MCP server mission.yaml's `openclaw.mcp_servers`
    /// does not define.
    OpenClawMcpUnknown = "openclaw/mcp-unknown",
    /// A pack names a model the global hard constraints do not allow.
    ModelNotAllowed = "constraint/model",
    /// A required safety clause is missing from the global prompt.
    SafetyClauseMissing = "constraint/safety-clause",
    /// A resolved prompt exceeds the token ceiling.
    PromptTokens = "constraint/prompt-tokens",
    /// A prompt contains a globally banned phrase.
    BannedPhrase = "constraint/banned-phrase",
    /// A child allows a tool its parent does not.
    ToolNotNarrowing = "tools/not-narrowing",
    /// A child raises the autonomy level of its parent.
    AutonomyEscalation = "tools/autonomy-escalation",
    /// A tenant pack reads another tenant's files, or a shared pack reads tenant files.
    TenantIsolation = "isolation/tenant",
    /// A user pack reads another user's files.
    UserIsolation = "isolation/user",
    /// A pack's content changed but its version did not increase.
    VersionNotBumped = "version/not-bumped",
    /// A prompt section id is already defined by an ancestor scope.
    SectionShadow = "prompt/section-shadow",
    /// An eval case file is not valid.
    EvalCase = "eval/case",
    /// An assertion type missionctl does not implement, or a value or
    /// transform promptfoo would refuse.
    EvalUnsupported = "eval/unsupported",
    /// A pack has fewer eval cases than recommended.
    EvalCoverage = "eval/coverage",
    /// A rendered OpenClaw bootstrap file is longer than OpenClaw injects.
    OpenClawFile = "openclaw/bootstrap-file",
    /// A chain gives its agents skills but not the `read` tool, without
    /// which OpenClaw does not list skills to the model.
    OpenClawSkillsUnread = "openclaw/skills-unread",
    /// A chain's rendered OpenClaw bootstrap files are longer in total than
    /// OpenClaw injects.
    OpenClawTotal = "openclaw/bootstrap-total",
    /// A tenant enables a domain more than once or a user has no tenant.
    ScopeConfig = "scope/config",
    /// The repository could not be read.
    Io = "io",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown diagnostic code `{s}`")))
    }
}

/// Another place that explains a diagnostic (e.g. the policy line a child breaks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Related {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

impl Diagnostic {
    pub fn error(
        code: Code,
        file: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            file: file.into(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            help: None,
            related: Vec::new(),
        }
    }

    pub fn warning(
        code: Code,
        file: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, file, pos, message)
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn related(
        mut self,
        file: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) -> Self {
        self.related.push(Related {
            file: file.into(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Order diagnostics by file and position so output is stable across runs
/// (loading is parallel).
pub(crate) fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.col, a.code, a.message.as_str()).cmp(&(
            b.file.as_str(),
            b.line,
            b.col,
            b.code,
            b.message.as_str(),
        ))
    });
}
