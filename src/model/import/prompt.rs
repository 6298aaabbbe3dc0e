//! The machinery families build their input formats with (a manifest prompt, derived as the
//! reference code builds the input): chat families render the checkpoint's own chat template (a real Jinja engine) with
//! sentinel texts in place of the problem and steps, and the rendering is cut at the sentinels.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use super::family::FormatInput;
use super::{files, ImportError};
use crate::model::manifest::{PromptEncoding, PromptSpec};

/// Qwen2.5-Math's system prompt, as the PRM's model card passes it.
pub const QWEN_MATH_SYSTEM: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

const PROBLEM: &str = "\u{E000}PROBLEM\u{E000}";
const ANSWER: &str = "\u{E000}ANSWER\u{E000}";

fn step_sentinel(i: usize) -> String {
    format!("\u{E000}STEP{i}\u{E000}")
}

/// What the manifest and the heads need to know about a family's input.
pub struct InputFormat {
    pub prompt: PromptSpec,
    /// The token each step's score is read at.
    pub marker: String,
    /// Token heads: the (good, bad) token ids.
    pub candidates: Option<(u32, u32)>,
}

/// Qwen-style input (QwenPrm, ActPRM): the chat template, every step followed by the step token
/// (`rr_token` of the config, else `<extra_0>`).
pub(super) fn steps_in_one_turn(input: &FormatInput<'_>) -> Result<InputFormat, ImportError> {
    let (tokenizer, from) = (input.tokenizer, input.from);
    let marker = input
        .config
        .rr_token
        .clone()
        .or_else(|| {
            input
                .config
                .rr_token_id
                .and_then(|id| tokenizer.id_to_token(id))
        })
        .unwrap_or_else(|| "<extra_0>".into());
    if tokenizer.token_to_id(&marker).is_none() {
        return Err(ImportError::Unsupported(format!(
            "{}: the tokenizer has no step token {marker:?}",
            from.display()
        )));
    }
    let config = &input.tokenizer_config;
    let template = config.chat_template(from)?;
    let prompt = one_turn_prompt(&template, config, &marker)?;
    Ok(InputFormat {
        prompt,
        marker,
        candidates: None,
    })
}

/// RLHFlow-style input: the chat template with each step a user turn answered by `answer`.
/// Returns the prompt and the text of the token the score is read at.
pub(super) fn steps_as_turns(
    input: &FormatInput<'_>,
    answer: &str,
) -> Result<(PromptSpec, String), ImportError> {
    let config = &input.tokenizer_config;
    let template = config.chat_template(input.from)?;
    turns_prompt(&template, config, answer)
}

/// Qwen-style PRMs: system, user = problem, assistant = each step followed by the marker.
fn one_turn_prompt(
    template: &str,
    config: &TokenizerConfig,
    marker: &str,
) -> Result<PromptSpec, ImportError> {
    let steps: Vec<String> = (1..=3).map(step_sentinel).collect();
    let answer: String = steps.iter().map(|s| format!("{s}{marker}")).collect();
    let messages = vec![
        ("system", QWEN_MATH_SYSTEM.to_string()),
        ("user", PROBLEM.to_string()),
        ("assistant", answer),
    ];
    let text = config.render(template, &messages)?;
    let [s1, s2, s3] = [0, 1, 2].map(|i| text.find(&steps[i]));
    let (Some(s1), Some(s2), Some(s3)) = (s1, s2, s3) else {
        return Err(config.unexpected("the steps do not appear in the rendered chat"));
    };
    // the text between step i (at a) and the next (at b); None when they are out of order
    let between = |a: usize, i: usize, b: usize| text.get(a + steps[i].len()..b);
    if between(s1, 0, s2).is_none() || between(s2, 1, s3).is_none() {
        return Err(config.unexpected("the steps appear out of order in the rendered chat"));
    }
    if between(s1, 0, s2) != Some(marker) || between(s2, 1, s3) != Some(marker) {
        return Err(config.unexpected("the steps are not separated by the step token alone"));
    }
    Ok(PromptSpec {
        template: text[..s1].replace(PROBLEM, "{problem}"),
        step: format!("{{step}}{marker}"),
        first_step: None,
        step_label: None,
        trim: trims(template, config)?,
        encoding: PromptEncoding::Whole,
        add_special_tokens: false,
    })
}

/// RLHFlow-style PRMs: user = problem + " " + step 1, assistant = `answer`, user = step 2, ...;
/// the score is read at the token before each answer. Returns the prompt and the text of that
/// token (the end of the assistant header).
fn turns_prompt(
    template: &str,
    config: &TokenizerConfig,
    answer: &str,
) -> Result<(PromptSpec, String), ImportError> {
    let steps: Vec<String> = (1..=3).map(step_sentinel).collect();
    let mut messages = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let user = if i == 0 {
            format!("{PROBLEM} {s}")
        } else {
            s.clone()
        };
        messages.push(("user", user));
        messages.push(("assistant", ANSWER.to_string()));
    }
    let text = config.render(template, &messages)?;
    let at = |needle: &str, from: usize| {
        text[from..]
            .find(needle)
            .map(|i| i + from)
            .ok_or_else(|| config.unexpected("a turn does not appear in the rendered chat"))
    };
    let problem = at(PROBLEM, 0)?;
    let a1 = at(ANSWER, problem)?;
    let a2 = at(ANSWER, a1 + ANSWER.len())?;
    let a3 = at(ANSWER, a2 + ANSWER.len())?;
    let second = text[a1 + ANSWER.len()..a2].replace(&steps[1], "{step}");
    let third = text[a2 + ANSWER.len()..a3].replace(&steps[2], "{step}");
    if second != third || !second.contains("{step}") {
        return Err(config.unexpected("the user turns do not repeat one form"));
    }
    // the header before an answer ends with the text the score is read at: its last line break run
    let first = text[problem..a1]
        .replace(PROBLEM, "{problem}")
        .replace(&steps[0], "{step}");
    let marker_text: String = first
        .chars()
        .rev()
        .take_while(|c| c.is_whitespace())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if marker_text.is_empty() {
        return Err(config.unexpected("the assistant header does not end with a line break"));
    }
    Ok((
        PromptSpec {
            template: text[..problem].to_string(),
            step: format!("{answer}{second}"),
            first_step: Some(first),
            step_label: None,
            trim: trims(template, config)?,
            encoding: PromptEncoding::Whole,
            add_special_tokens: false,
        },
        marker_text,
    ))
}

/// Whether the template trims message contents (Llama 3's `| trim`), found by rendering one.
fn trims(template: &str, config: &TokenizerConfig) -> Result<bool, ImportError> {
    let padded = format!(" {PROBLEM} ");
    let text = config.render(template, &[("user", padded.clone())])?;
    Ok(!text.contains(&padded))
}

/// The most a chat template may be, in bytes (real ones are a few kB).
const TEMPLATE_LIMIT: usize = 1 << 20;

/// Instructions a chat template may run while rendering a short chat.
const TEMPLATE_FUEL: u64 = 10_000_000;

/// The most a chat template may write for the few short messages rendered here (real ones
/// write well under a kB).
const RENDER_LIMIT: usize = 1 << 20;

/// How long one rendering may take (real templates take microseconds).
const RENDER_SECONDS: u64 = 5;

/// The parts of `tokenizer_config.json` the input formats use.
pub(super) struct TokenizerConfig {
    /// `tokenizer_config.json`, which the refusals name.
    path: PathBuf,
    pub template: Option<String>,
    pub bos_token: Option<String>,
    eos_token: Option<String>,
}

impl TokenizerConfig {
    pub(super) fn read(from: &Path) -> Result<Self, ImportError> {
        let path = from.join("tokenizer_config.json");
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(Self {
                path,
                template: None,
                bos_token: None,
                eos_token: None,
            });
        }
        let v = files::read_json(&path)?;
        let token = |key: &str| match v.get(key) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(o) => o
                .get("content")
                .and_then(|c| c.as_str())
                .map(str::to_string),
            None => None,
        };
        let template = match v.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            // a list of named templates: the default one
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
                .map(str::to_string),
            _ => None,
        };
        if let Some(t) = template.as_ref().filter(|t| t.len() > TEMPLATE_LIMIT) {
            return Err(ImportError::File {
                path,
                message: format!(
                    "chat_template is {} bytes; actprm renders templates of at most {} MiB",
                    t.len(),
                    TEMPLATE_LIMIT >> 20
                ),
            });
        }
        Ok(Self {
            path,
            template,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
        })
    }

    /// A refusal of the template's form.
    fn unexpected(&self, what: &str) -> ImportError {
        self.refuse(format!(
            "the chat template is not of a known PRM form: {what}; pass --format to choose \
             another family"
        ))
    }

    fn refuse(&self, message: String) -> ImportError {
        ImportError::File {
            path: self.path.clone(),
            message,
        }
    }

    fn chat_template(&self, from: &Path) -> Result<String, ImportError> {
        self.template.clone().ok_or_else(|| {
            ImportError::Unsupported(format!(
                "{}: tokenizer_config.json has no chat_template; this family is read through it",
                from.display()
            ))
        })
    }

    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=False)`, bounded:
    /// at most [`RENDER_LIMIT`] bytes of output and [`RENDER_SECONDS`] seconds. The rendering
    /// runs on its own thread; one that runs past the time is told to stop (its output and its
    /// `range` loops end at once) and left behind.
    fn render(&self, template: &str, messages: &[(&str, String)]) -> Result<String, ImportError> {
        let job = Render {
            template: template.to_string(),
            messages: messages
                .iter()
                .map(|(role, content)| (role.to_string(), content.clone()))
                .collect(),
            bos_token: self.bos_token.clone().unwrap_or_default(),
            eos_token: self.eos_token.clone().unwrap_or_default(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let stop = job.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("chat-template".into())
            .spawn(move || {
                let _ = tx.send(job.run());
            })
            .map_err(|e| self.refuse(format!("cannot start rendering the chat template: {e}")))?;
        let outcome = match rx.recv_timeout(Duration::from_secs(RENDER_SECONDS)) {
            Ok(outcome) => outcome,
            Err(RecvTimeoutError::Timeout) => {
                stop.store(true, Ordering::Relaxed);
                Err(format!(
                    "the chat template did not finish rendering in {RENDER_SECONDS} s (real \
                     templates take microseconds)"
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err("the chat template's rendering crashed".to_string())
            }
        };
        outcome.map_err(|message| self.refuse(message))
    }
}

/// One rendering of a chat template, owned so that it runs on its own thread.
struct Render {
    template: String,
    messages: Vec<(String, String)>,
    bos_token: String,
    eos_token: String,
    /// Set when the caller gave up: output and `range` loops stop.
    stop: Arc<AtomicBool>,
}

impl Render {
    fn run(self) -> Result<String, String> {
        let mut env = minijinja::Environment::new();
        env.set_keep_trailing_newline(true);
        // a bound on instructions: ends loops that print nothing, which the output limit
        // cannot see (real chat templates run a few thousand)
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        // the builtin `range`, whose loops end once the caller gave up
        let stop = self.stop.clone();
        env.add_function(
            "range",
            move |lower: isize, upper: Option<isize>, step: Option<isize>| {
                let all = minijinja::functions::range(lower, upper, step)?;
                let stop = stop.clone();
                Ok::<_, minijinja::Error>(minijinja::Value::make_iterable(move || {
                    let stop = stop.clone();
                    all.try_iter()
                        .into_iter()
                        .flatten()
                        .take_while(move |_| !stop.load(Ordering::Relaxed))
                }))
            },
        );
        let bad = |e: minijinja::Error| {
            if e.kind() == minijinja::ErrorKind::OutOfFuel {
                format!(
                    "the chat template ran more than {TEMPLATE_FUEL} instructions for a chat of {} \
                     short messages (real templates run a few thousand)",
                    self.messages.len()
                )
            } else {
                format!("the chat template does not render: {e:#}")
            }
        };
        env.add_template("chat", &self.template).map_err(bad)?;
        let messages: Vec<minijinja::Value> = self
            .messages
            .iter()
            .map(|(role, content)| {
                minijinja::context! { role => role.as_str(), content => content.as_str() }
            })
            .collect();
        let mut out = BoundedOutput {
            text: Vec::new(),
            overflow: false,
            stop: &self.stop,
        };
        let rendered = env.get_template("chat").and_then(|t| {
            t.render_captured_to(
                minijinja::context! {
                    messages => messages,
                    add_generation_prompt => false,
                    bos_token => self.bos_token.as_str(),
                    eos_token => self.eos_token.as_str(),
                },
                &mut out,
            )
            .map(|_| ())
        });
        if out.overflow {
            return Err(format!(
                "the chat template writes more than {} MiB for a chat of {} short messages",
                RENDER_LIMIT >> 20,
                self.messages.len()
            ));
        }
        rendered.map_err(bad)?;
        String::from_utf8(out.text).map_err(|e| format!("the chat template writes no text: {e}"))
    }
}

/// The rendered text, refused past [`RENDER_LIMIT`] bytes or once the caller gave up.
struct BoundedOutput<'a> {
    text: Vec<u8>,
    overflow: bool,
    stop: &'a AtomicBool,
}

impl std::io::Write for BoundedOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped"));
        }
        if self.text.len() + buf.len() > RENDER_LIMIT {
            self.overflow = true;
            return Err(std::io::Error::other("too much output"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
