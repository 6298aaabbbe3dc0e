//! A typed walk over the YAML tree (marked-yaml keeps a position on every node) that fills the
//! config types and collects every problem instead of stopping at the first: unknown keys, missing
//! keys, wrong types and out-of-range values of every stage.

use std::collections::{HashMap, HashSet};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node, Span};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::checks::CheckValues;
use super::problem::{hint, Problem};
use super::yaml::{resolve, to_json};
use super::*;

/// Positions of what the later checks talk about, keyed by stage id (a stage's name, or
/// `model:NAME` / `judge:NAME`).
#[derive(Debug, Clone)]
pub struct Spans {
    pub root: Span,
    pub sections: HashMap<&'static str, Span>,
    pub stages: HashMap<String, Span>,
    pub fields: HashMap<(String, String), Span>,
    pub inputs: HashMap<(String, usize), Span>,
    /// Stages that exist but did not parse: references to them are not reported again.
    pub broken: HashSet<String>,
    /// Stage names in file order.
    pub order: Vec<String>,
    /// Sections whose key was misspelled at the top level (`sink:`): not reported again as missing.
    pub misspelled: HashSet<&'static str>,
    /// Stage name -> "source", "transform" or "sink" (also for stages that did not parse).
    pub kind_of: HashMap<String, &'static str>,
}

impl Default for Spans {
    fn default() -> Self {
        Self {
            root: Span::new_blank(),
            sections: HashMap::new(),
            stages: HashMap::new(),
            fields: HashMap::new(),
            inputs: HashMap::new(),
            broken: HashSet::new(),
            order: Vec::new(),
            kind_of: HashMap::new(),
            misspelled: HashSet::new(),
        }
    }
}

impl Spans {
    pub fn stage(&self, id: &str) -> Span {
        self.stages.get(id).copied().unwrap_or(self.root)
    }

    /// The field's value, else the stage.
    pub fn field(&self, id: &str, field: &str) -> Span {
        self.fields
            .get(&(id.to_string(), field.to_string()))
            .copied()
            .unwrap_or_else(|| self.stage(id))
    }

    pub fn input(&self, id: &str, index: usize) -> Span {
        self.inputs
            .get(&(id.to_string(), index))
            .copied()
            .unwrap_or_else(|| self.field(id, "inputs"))
    }

    pub fn section(&self, name: &str) -> Span {
        self.sections.get(name).copied().unwrap_or(self.root)
    }
}

pub struct Parsed {
    /// `None` only when the text is not YAML or not a mapping at all.
    pub file: Option<PipelineFile>,
    pub spans: Spans,
    pub problems: Vec<Problem>,
}

const SECTIONS: [&str; 5] = ["models", "judges", "sources", "transforms", "sinks"];
/// Reads one stage's keys as the type its `type` names (`stage_types!` calls it).
pub(crate) trait ReadKeys {
    fn read<T: DeserializeOwned + JsonSchema + CheckValues>(&mut self, kind: &str) -> Option<T>;
}

/// A stage declaration being read: its name, section and mapping.
struct StageKeys<'w, 'a, 'n> {
    walker: &'w mut Walker<'a>,
    name: &'n MarkedScalarNode,
    section: &'static str,
    map: &'n MarkedMappingNode,
}

impl ReadKeys for StageKeys<'_, '_, '_> {
    fn read<T: DeserializeOwned + JsonSchema + CheckValues>(&mut self, kind: &str) -> Option<T> {
        self.walker.typed(self.name, self.section, kind, self.map)
    }
}

pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed {
        file: None,
        spans: Spans::default(),
        problems: Vec::new(),
    };
    let root = Span::new_start(marked_yaml::Marker::new(0, 0, 1, 1));
    out.spans.root = root;
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let node = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(node) => node,
        Err(e) => {
            out.problems.push(load_problem(&e, root));
            return out;
        }
    };
    let Some(top) = node.as_mapping() else {
        out.problems.push(Problem::at(
            &root,
            "a pipeline file is a mapping with sources, transforms and sinks",
        ));
        return out;
    };
    let mut file = PipelineFile::default();
    let mut w = Walker {
        spans: &mut out.spans,
        problems: &mut out.problems,
        names: HashMap::new(),
    };
    for (key, value) in top.iter() {
        let Some(section) = SECTIONS.iter().find(|s| **s == key.as_str()) else {
            if let Some(near) = super::problem::did_you_mean(key.as_str(), SECTIONS) {
                w.spans.misspelled.insert(near);
            }
            w.problems.push(Problem::at(
                key.span(),
                format!(
                    "unknown key `{}` at the top level{}; expected one of: {}",
                    key.as_str(),
                    hint(key.as_str(), SECTIONS),
                    SECTIONS.join(", ")
                ),
            ));
            continue;
        };
        w.spans.sections.insert(section, *key.span());
        if is_null(value) {
            continue;
        }
        let Some(map) = value.as_mapping() else {
            w.problems.push(Problem::at(
                value.span(),
                format!("`{section}` must be a mapping of names to declarations"),
            ));
            continue;
        };
        for (name, decl) in map.iter() {
            match *section {
                "models" => {
                    let id = format!("model:{}", name.as_str());
                    w.spans.stages.insert(id.clone(), *name.span());
                    let what = format!("model `{}`", name.as_str());
                    match w.declaration::<ModelDecl>(&id, &what, decl, &[]) {
                        Some(m) => {
                            file.models.insert(name.as_str().to_string(), m);
                        }
                        // reported; references to it are not reported again
                        None => {
                            w.spans.broken.insert(id);
                        }
                    }
                }
                "judges" => {
                    let id = format!("judge:{}", name.as_str());
                    w.spans.stages.insert(id.clone(), *name.span());
                    let what = format!("judge `{}`", name.as_str());
                    match w.declaration::<JudgeDecl>(&id, &what, decl, &[]) {
                        Some(j) => {
                            file.judges.insert(name.as_str().to_string(), j);
                        }
                        // reported; references to it are not reported again
                        None => {
                            w.spans.broken.insert(id);
                        }
                    }
                }
                "sources" => {
                    if let Some((kind, map)) = w.stage(name, decl, "source", SourceStage::TYPES) {
                        let stage = SourceStage::read(kind, &mut w.keys(name, "source", map));
                        w.keep(name, stage, &mut file.sources);
                    }
                }
                "transforms" => {
                    let types = TransformStage::TYPES;
                    if let Some((kind, map)) = w.stage(name, decl, "transform", types) {
                        let stage = TransformStage::read(kind, &mut w.keys(name, "transform", map));
                        w.keep(name, stage, &mut file.transforms);
                    }
                }
                _ => {
                    if let Some((kind, map)) = w.stage(name, decl, "sink", SinkStage::TYPES) {
                        let stage = SinkStage::read(kind, &mut w.keys(name, "sink", map));
                        w.keep(name, stage, &mut file.sinks);
                    }
                }
            }
        }
    }
    out.file = Some(file);
    out
}

fn load_problem(e: &LoadError, root: Span) -> Problem {
    let at = |m: &marked_yaml::Marker, message: String| {
        Problem::new(m.line().max(1), m.column().max(1), message)
    };
    match e {
        LoadError::TopLevelMustBeMapping(m) => at(
            m,
            "a pipeline file is a mapping with sources, transforms and sinks".into(),
        ),
        LoadError::DuplicateKey(d) => {
            let first = d.prev_key.span().start().map_or(0, |m| m.line());
            match d.key.span().start() {
                Some(m) => at(
                    m,
                    format!("duplicate key `{}` (first on line {first})", d.key.as_str()),
                ),
                None => Problem::at(&root, format!("duplicate key `{}`", d.key.as_str())),
            }
        }
        LoadError::ScanError(m, s) => at(m, format!("not valid YAML: {}", s.info())),
        LoadError::UnexpectedAnchor(m) => {
            at(m, "YAML anchors are not supported in pipeline files".into())
        }
        LoadError::UnexpectedTag(m) => {
            at(m, "YAML tags are not supported in pipeline files".into())
        }
        LoadError::MappingKeyMustBeScalar(m) => at(m, "keys must be plain names".into()),
        LoadError::TopLevelMustBeSequence(m) => at(m, "unexpected YAML structure".into()),
    }
}

pub(super) fn is_null(node: &Node) -> bool {
    node.as_scalar()
        .is_some_and(|s| matches!(s.as_str(), "" | "~" | "null"))
}

struct Walker<'a> {
    spans: &'a mut Spans,
    problems: &'a mut Vec<Problem>,
    /// Stage name -> (section, line) of its first declaration.
    names: HashMap<String, (&'static str, usize)>,
}

impl<'a> Walker<'a> {
    /// Checks a stage's name and `type`; returns the type and the mapping.
    fn stage<'n>(
        &mut self,
        name: &MarkedScalarNode,
        decl: &'n Node,
        section: &'static str,
        kinds: &[&'static str],
    ) -> Option<(&'static str, &'n MarkedMappingNode)> {
        let line = name.span().start().map_or(0, |m| m.line());
        if let Some((other, first)) = self.names.get(name.as_str()) {
            self.problems.push(Problem::at(
                name.span(),
                format!("stage name `{}` is already used by the {other} on line {first}; names are unique across sources, transforms and sinks", name.as_str()),
            ));
            return None;
        }
        self.names
            .insert(name.as_str().to_string(), (section, line));
        self.spans
            .stages
            .insert(name.as_str().to_string(), *name.span());
        self.spans.order.push(name.as_str().to_string());
        self.spans
            .kind_of
            .insert(name.as_str().to_string(), section);
        let Some(map) = decl.as_mapping() else {
            self.problems.push(Problem::at(
                decl.span(),
                format!(
                    "{section} `{}` must be a mapping with a `type`",
                    name.as_str()
                ),
            ));
            self.spans.broken.insert(name.as_str().to_string());
            return None;
        };
        let Some(kind) = map.get_node("type") else {
            self.problems.push(Problem::at(
                name.span(),
                format!(
                    "{section} `{}` has no `type`; expected one of: {}",
                    name.as_str(),
                    kinds.join(", ")
                ),
            ));
            self.spans.broken.insert(name.as_str().to_string());
            return None;
        };
        let text = kind.as_scalar().map(|s| s.as_str()).unwrap_or("");
        match kinds.iter().find(|k| **k == text) {
            Some(k) => Some((*k, map)),
            None => {
                self.problems.push(Problem::at(
                    kind.span(),
                    format!(
                        "unknown {section} type `{text}`{}; expected one of: {}",
                        hint(text, kinds.iter().copied()),
                        kinds.join(", ")
                    ),
                ));
                self.spans.broken.insert(name.as_str().to_string());
                None
            }
        }
    }

    fn typed<T: DeserializeOwned + JsonSchema + CheckValues>(
        &mut self,
        name: &MarkedScalarNode,
        section: &str,
        kind: &str,
        map: &MarkedMappingNode,
    ) -> Option<T> {
        let what = format!("{section} `{}` ({kind})", name.as_str());
        let node = Node::Mapping(map.clone());
        let parsed = self.declaration::<T>(name.as_str(), &what, &node, &["type"]);
        if parsed.is_none() {
            self.spans.broken.insert(name.as_str().to_string());
        }
        parsed
    }

    fn keys<'w, 'n>(
        &'w mut self,
        name: &'n MarkedScalarNode,
        section: &'static str,
        map: &'n MarkedMappingNode,
    ) -> StageKeys<'w, 'a, 'n> {
        StageKeys {
            walker: self,
            name,
            section,
            map,
        }
    }

    fn keep<S>(
        &mut self,
        name: &MarkedScalarNode,
        stage: Option<S>,
        into: &mut BTreeMap<String, S>,
    ) {
        if let Some(s) = stage {
            into.insert(name.as_str().to_string(), s);
        }
    }

    /// Fills `T` from a mapping, reporting every unknown key, missing key, wrongly typed value
    /// and out-of-range value. The allowed keys come from `T`'s JSON Schema, so the check and
    /// `actprm schema` cannot disagree.
    fn declaration<T: DeserializeOwned + JsonSchema + CheckValues>(
        &mut self,
        id: &str,
        what: &str,
        decl: &Node,
        skip: &[&str],
    ) -> Option<T> {
        let Some(map) = decl.as_mapping() else {
            self.problems.push(Problem::at(
                decl.span(),
                format!("{what} must be a mapping"),
            ));
            return None;
        };
        let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
        let props: Vec<&str> = schema["properties"]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let mut clean = map.clone();
        let before = self.problems.len();
        for (key, value) in map.iter() {
            let k = key.as_str();
            if skip.contains(&k) {
                continue;
            }
            self.spans
                .fields
                .insert((id.to_string(), k.to_string()), *value.span());
            if !props.contains(&k) {
                let expected = if props.is_empty() {
                    String::new()
                } else {
                    format!("; expected one of: {}", props.join(", "))
                };
                self.problems.push(Problem::at(
                    key.span(),
                    format!(
                        "unknown key `{k}` in {what}{}{expected}",
                        hint(k, props.iter().copied())
                    ),
                ));
            }
            if k == "inputs" {
                if let Some(seq) = value.as_sequence() {
                    for (i, item) in seq.iter().enumerate() {
                        self.spans.inputs.insert((id.to_string(), i), *item.span());
                    }
                }
            }
        }
        clean.retain(|k, v| props.contains(&k.as_str()) && !is_null(v));
        for r in &required {
            if clean.get_node(r).is_none() {
                self.problems.push(Problem::at(
                    &self.spans.stage(id),
                    format!("{what} is missing the required key `{r}`"),
                ));
            }
        }
        // each value is read as its property's schema says (YAML scalars are text until then),
        // so a wrong type is reported at its value and the key dropped
        let defs = &schema["$defs"];
        let mut object = serde_json::Map::new();
        for (key, node) in clean.iter() {
            let prop = resolve(&schema["properties"][key.as_str()], defs);
            match to_json(node, prop, defs) {
                Ok(v) => {
                    object.insert(key.as_str().to_string(), v);
                }
                Err(expected) => {
                    let got = node
                        .as_scalar()
                        .map_or(String::new(), |s| format!(", got `{}`", s.as_str()));
                    self.problems.push(Problem::at(
                        node.span(),
                        format!("`{}` in {what}: {expected}{got}", key.as_str()),
                    ));
                }
            }
        }
        // what the schema cannot say (a device name, a shard) fails in serde: find the key whose
        // removal lets the rest through, report it there, and go on without it
        let mut value = None;
        for _ in 0..=object.len() {
            match serde_json::from_value::<T>(serde_json::Value::Object(object.clone())) {
                Ok(v) => {
                    value = Some(v);
                    break;
                }
                Err(e) => {
                    let culprit = object.keys().find(|k| {
                        let mut without = object.clone();
                        without.remove(*k);
                        serde_json::from_value::<T>(serde_json::Value::Object(without)).is_ok()
                    });
                    let Some(key) = culprit.cloned() else {
                        if self.problems.len() == before {
                            self.problems
                                .push(Problem::at(&self.spans.stage(id), format!("{what}: {e}")));
                        }
                        break;
                    };
                    let span = clean
                        .get_node(&key)
                        .map_or(self.spans.stage(id), |n| *n.span());
                    self.problems
                        .push(Problem::at(&span, format!("`{key}` in {what}: {e}")));
                    object.remove(&key);
                }
            }
        }
        if let Some(v) = &value {
            for (field, message) in v.check_values() {
                self.problems.push(Problem::at(
                    &self.spans.field(id, &field),
                    format!("`{field}` in {what} {message}"),
                ));
            }
        }
        value.filter(|_| self.problems.len() == before)
    }
}
